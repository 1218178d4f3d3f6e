"""The Macro-F1 definitions against hand-computed examples."""

import pytest

from hamr.metrics import classification_scores, ner_scores


def test_classification_macro_differs_from_micro():
    # class 0: 4 gold, all right; class 1: 1 gold, predicted as 0; class 2: 1 gold, right.
    gold = [0, 0, 0, 0, 1, 2]
    pred = [0, 0, 0, 0, 0, 2]
    s = classification_scores(gold, pred, ["a", "b", "c"])
    f1_a = 2 * (4 / 5) * 1.0 / (4 / 5 + 1.0)  # precision 4/5, recall 1
    assert s["per_class_f1"] == pytest.approx({"a": f1_a, "b": 0.0, "c": 1.0})
    assert s["macro_f1"] == pytest.approx((f1_a + 0.0 + 1.0) / 3)
    assert s["micro_f1"] == pytest.approx(5 / 6)
    assert s["accuracy"] == pytest.approx(5 / 6)
    assert s["macro_f1"] != pytest.approx(s["micro_f1"])
    assert s["support"] == {"a": 4, "b": 1, "c": 1}


def test_ner_entity_level_macro_and_micro():
    gold = [["B-PER", "I-PER", "O", "B-LOC"], ["B-PER", "O", "B-ORG"]]
    pred = [["B-PER", "I-PER", "O", "B-LOC"], ["B-PER", "O", "O"]]
    s = ner_scores(gold, pred)
    # PER: 2/2 found, LOC: 1/1, ORG: 0/1 -> macro = (1 + 1 + 0) / 3; micro: tp 3, fp 0, fn 1.
    assert s["per_class_f1"] == pytest.approx({"LOC": 1.0, "ORG": 0.0, "PER": 1.0})
    assert s["macro_f1"] == pytest.approx(2 / 3)
    assert s["micro_f1"] == pytest.approx(2 * 1.0 * 0.75 / 1.75)
    assert s["accuracy"] == pytest.approx(6 / 7)


def test_ner_partial_span_is_wrong_and_strict_mode_rejects_lone_inside_tag():
    gold = [["B-PER", "I-PER", "O"]]
    assert ner_scores(gold, [["B-PER", "O", "O"]])["macro_f1"] == 0.0
    # conlleval (default) reads a lone I-PER as the start of a span; strict IOB2 does not.
    lone_inside = [["I-PER", "I-PER", "O"]]
    assert ner_scores(gold, lone_inside)["macro_f1"] == pytest.approx(1.0)
    assert ner_scores(gold, lone_inside, mode="strict")["macro_f1"] == 0.0


def test_a_run_collapsed_when_more_than_half_of_its_classes_have_dev_f1_zero():
    from hamr.metrics import collapsed, zero_f1_classes

    stuck = {"per_class_f1": {"a": 0.0, "b": 0.0, "c": 0.51, "d": 0.0, "e": 0.51}}  # 3 of 5 at 0
    healthy_with_rare_misses = {"per_class_f1": {"a": 0.0, "b": 0.0, "c": 0.7, "d": 0.8}}  # exactly half
    assert zero_f1_classes(stuck) == 3 and collapsed(stuck)
    assert not collapsed(healthy_with_rare_misses)
    assert collapsed({"per_class_f1": {"a": 0.0, "b": 0.0}}) and not collapsed({"per_class_f1": {"a": 0.2, "b": 0.0}})


def test_the_committed_runs_that_were_stuck_from_epoch_one_are_collapsed_and_healthy_ones_not():
    """The rule on committed runs (dev scores only): the runs that predicted one or two classes from
    epoch 1 on, against healthy seeds of the same cells (Cyclone-Idai: half its classes at 0)."""
    import json

    from hamr.metrics import collapsed
    from tests.conftest import ROOT

    runs = ROOT / "results" / "table_cpu" / "runs"
    stuck = [
        "cyclone_idai_2019/icf/seed=1",
        "sst5/icf/seed=3",
        "sst5/hamr_full/seed=2",
        "hurricane_irma_2017/hamr_no_resampling/seed=3",
    ]
    healthy = [
        "cyclone_idai_2019/icf/seed=2",
        "cyclone_idai_2019/ce/seed=1",
        "sst5/hamr_full/seed=1",
        "hurricane_irma_2017/hamr_no_resampling/seed=1",
        "bionlp2004/ce/seed=1",
    ]
    dev = {name: json.loads((runs / name / "metrics.json").read_text())["dev"] for name in stuck + healthy}
    assert [name for name in dev if collapsed(dev[name])] == stuck
