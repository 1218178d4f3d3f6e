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
