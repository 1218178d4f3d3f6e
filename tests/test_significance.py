"""The paired bootstrap's Macro-F1 from counts equals hamr.metrics on every resample."""

from __future__ import annotations

import numpy as np
import pytest

from hamr.metrics import classification_scores, ner_scores
from hamr.significance import item_counts, macro_f1_from_counts, paired_bootstrap, resample_weights

NER_LABELS = ["O", "B-DNA", "I-DNA", "B-protein", "I-protein", "B-RNA", "I-RNA"]


def random_cls(rng, n=60, classes=4):
    gold = rng.integers(0, classes, n)
    pred = np.where(rng.random(n) < 0.6, gold, rng.integers(0, classes, n))
    return gold, pred


def random_ner(rng, sentences=40):
    lengths = rng.integers(1, 9, sentences)
    gold = rng.choice(len(NER_LABELS), lengths.sum(), p=[0.5, 0.15, 0.1, 0.1, 0.05, 0.05, 0.05])
    pred = np.where(rng.random(lengths.sum()) < 0.7, gold, rng.integers(0, len(NER_LABELS), lengths.sum()))
    return gold, pred, lengths


def split_tags(ids, lengths):
    ends = np.cumsum(lengths)
    return [[NER_LABELS[i] for i in ids[e - n : e]] for n, e in zip(lengths, ends)]


def test_counts_reproduce_sklearn_macro_f1_on_resamples():
    rng = np.random.default_rng(0)
    gold, pred = random_cls(rng)
    names = ["a", "b", "c", "d"]
    counts, classes = item_counts(gold, pred, names, "cls")
    assert classes == names
    assert macro_f1_from_counts(counts.sum(0)) == pytest.approx(classification_scores(gold, pred, names)["macro_f1"])
    weights = resample_weights(len(gold), 5, seed=1)
    for w in weights:
        items = np.repeat(np.arange(len(gold)), w)
        expected = classification_scores(gold[items], pred[items], names)["macro_f1"]
        assert macro_f1_from_counts(np.einsum("i,ikc->kc", w, counts)) == pytest.approx(expected)


def test_counts_reproduce_seqeval_macro_f1_on_resamples():
    rng = np.random.default_rng(1)
    gold, pred, lengths = random_ner(rng)
    counts, types = item_counts(gold, pred, NER_LABELS, "ner", lengths)
    assert types == ["DNA", "RNA", "protein"]
    true_tags, pred_tags = split_tags(gold, lengths), split_tags(pred, lengths)
    assert macro_f1_from_counts(counts.sum(0)) == pytest.approx(ner_scores(true_tags, pred_tags)["macro_f1"])
    for w in resample_weights(len(lengths), 5, seed=2):
        items = np.repeat(np.arange(len(lengths)), w)
        expected = ner_scores([true_tags[i] for i in items], [pred_tags[i] for i in items])["macro_f1"]
        assert macro_f1_from_counts(np.einsum("i,ikc->kc", w, counts)) == pytest.approx(expected)


def test_paired_bootstrap_separates_a_clear_win_from_a_tie():
    rng = np.random.default_rng(3)
    names = ["a", "b", "c"]
    gold = rng.integers(0, 3, 300)
    good = np.where(rng.random(300) < 0.9, gold, (gold + 1) % 3)
    poor = np.where(rng.random(300) < 0.5, gold, (gold + 1) % 3)
    a = [item_counts(gold, good, names, "cls")[0]] * 2
    b = [item_counts(gold, poor, names, "cls")[0]] * 2
    win = paired_bootstrap(a, b, n_resamples=1000, seed=0)
    assert win["delta"] > 0.3 and win["ci_low"] > 0 and win["p_value"] < 0.01
    tie = paired_bootstrap(a, a, n_resamples=200, seed=0)
    assert tie["delta"] == 0 and tie["p_value"] == 1.0 and len(tie["per_seed_p_value"]) == 2


def test_a_resample_without_a_class_averages_over_the_classes_it_has():
    """As scikit-learn and seqeval do, a class absent from gold and predictions is not averaged."""
    gold, pred, names = np.array([0, 0, 1]), np.array([0, 1, 1]), ["a", "b"]
    counts, _ = item_counts(gold, pred, names, "cls")
    for w in (np.array([1, 2, 0]), np.array([0, 0, 3]), np.array([1, 1, 1])):
        items = np.repeat(np.arange(3), w)
        expected = classification_scores(gold[items], pred[items], names)["macro_f1"]
        assert macro_f1_from_counts(np.einsum("i,ikc->kc", w, counts)) == pytest.approx(expected)
    assert macro_f1_from_counts(np.einsum("i,ikc->kc", np.array([3, 0, 0]), counts)) == 1.0  # "b" absent


def test_paired_bootstrap_interval_and_two_sided_p_against_a_hand_computed_reference():
    """A small difference, so the p-value lies strictly between 0 and 1: the pooled interval is the
    2.5/97.5 percentiles, and p twice the smaller tail, of Macro-F1(a) - Macro-F1(b) computed on the
    same resample of the items for both systems."""
    rng = np.random.default_rng(4)
    names = ["a", "b", "c"]
    gold = rng.integers(0, 3, 200)
    a = item_counts(gold, np.where(rng.random(200) < 0.62, gold, (gold + 1) % 3), names, "cls")[0]
    b = item_counts(gold, np.where(rng.random(200) < 0.58, gold, (gold + 2) % 3), names, "cls")[0]
    weights = resample_weights(200, 500, seed=7)
    deltas = np.array(
        [
            macro_f1_from_counts(np.einsum("i,ikc->kc", w, a)) - macro_f1_from_counts(np.einsum("i,ikc->kc", w, b))
            for w in weights
        ]
    )
    smaller_tail = min((deltas <= 0).mean(), (deltas >= 0).mean())
    assert 0.01 < smaller_tail < 0.45  # the case this test is about
    result = paired_bootstrap([a], [b], n_resamples=500, seed=7)
    assert result["p_value"] == pytest.approx(2 * smaller_tail)
    assert [result["ci_low"], result["ci_high"]] == pytest.approx(np.percentile(deltas, [2.5, 97.5]).tolist())
    assert paired_bootstrap([b], [a], n_resamples=500, seed=7)["p_value"] == pytest.approx(result["p_value"])
