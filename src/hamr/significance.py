"""Paired bootstrap over test items for Macro-F1 differences (the table's significance column).

Macro-F1 (hamr.metrics) is a function of per-class true-positive, false-positive and
false-negative counts; each test item (a sentence for NER, an example for classification) adds
its own counts. Resampling items with replacement is then a matrix product, so thousands of
resamples cost milliseconds and equal recomputing hamr.metrics on each resample (tested).
"""

from __future__ import annotations

import numpy as np


def item_counts(
    gold: np.ndarray, pred: np.ndarray, label_names: list[str], task: str, lengths: np.ndarray | None = None
) -> tuple[np.ndarray, list[str]]:
    """Per-item counts (n_items, 3, n_classes): tp, fp, fn; and the class names.

    Classification: classes are ``label_names``. NER: classes are entity types, entities as
    seqeval's default (conlleval-compatible) mode reads them from the word-level tags; ``gold`` and
    ``pred`` are the flattened tag ids of predictions.npz and ``lengths`` the sentence lengths.
    """
    if task == "cls":
        n_classes = len(label_names)
        gold_1h, pred_1h = np.eye(n_classes, dtype=np.int64)[gold], np.eye(n_classes, dtype=np.int64)[pred]
        tp = gold_1h * pred_1h
        return np.stack([tp, pred_1h - tp, gold_1h - tp], axis=1), list(label_names)
    from seqeval.metrics.sequence_labeling import get_entities

    types = sorted({name[2:] for name in label_names if name != "O"})
    index = {t: i for i, t in enumerate(types)}
    ends = np.cumsum(lengths)
    counts = np.zeros((len(lengths), 3, len(types)), dtype=np.int64)
    for i, (start, end) in enumerate(zip(ends - lengths, ends)):
        true = set(get_entities([label_names[j] for j in gold[start:end]]))
        found = set(get_entities([label_names[j] for j in pred[start:end]]))
        for kind, entities in ((0, true & found), (1, found - true), (2, true - found)):
            for entity_type, _, _ in entities:
                counts[i, kind, index[entity_type]] += 1
    return counts, types


def macro_f1_from_counts(totals: np.ndarray) -> np.ndarray:
    """Macro-F1 from summed counts (..., 3, n_classes): the mean over classes that occur in gold or
    predictions (tp + fp + fn > 0) of 2tp / (2tp + fp + fn), as scikit-learn and seqeval average."""
    tp, fp, fn = totals[..., 0, :], totals[..., 1, :], totals[..., 2, :]
    denominator = 2 * tp + fp + fn
    present = denominator > 0
    f1 = np.where(present, 2 * tp / np.maximum(denominator, 1), 0.0)
    return f1.sum(-1) / np.maximum(present.sum(-1), 1)


def resample_weights(n_items: int, n_resamples: int, seed: int) -> np.ndarray:
    """(n_resamples, n_items) how often each item is drawn in each bootstrap resample."""
    rng = np.random.default_rng(seed)
    return rng.multinomial(n_items, np.full(n_items, 1.0 / n_items), size=n_resamples)


def paired_bootstrap(
    counts_a: list[np.ndarray], counts_b: list[np.ndarray], n_resamples: int = 1000, seed: int = 0
) -> dict:
    """Macro-F1(a) - Macro-F1(b) over bootstrap resamples of the test items, paired: the same
    resample for both systems and for every seed. ``counts_a[s]``/``counts_b[s]``: item counts of
    seed s (same items in the same order). Returns the observed per-seed and pooled (mean over
    seeds) differences, the pooled 95% percentile interval, and two-sided p-values (twice the
    smaller tail of the resampled difference around 0), per seed and pooled."""
    per_seed_observed, per_seed_deltas = [], []
    for a, b in zip(counts_a, counts_b):
        # the same resamples for every seed when the test items are the same (always, unless capped)
        weights = resample_weights(a.shape[0], n_resamples, seed)
        observed = macro_f1_from_counts(a.sum(0)) - macro_f1_from_counts(b.sum(0))
        deltas = macro_f1_from_counts(np.einsum("ri,ikc->rkc", weights, a)) - macro_f1_from_counts(
            np.einsum("ri,ikc->rkc", weights, b)
        )
        per_seed_observed.append(float(observed))
        per_seed_deltas.append(deltas)
    pooled = np.mean(per_seed_deltas, axis=0)

    def p_value(deltas: np.ndarray) -> float:
        return float(min(1.0, 2 * min((deltas <= 0).mean(), (deltas >= 0).mean())))

    low, high = np.percentile(pooled, [2.5, 97.5])
    return {
        "delta": float(np.mean(per_seed_observed)),
        "ci_low": float(low),
        "ci_high": float(high),
        "p_value": p_value(pooled),
        "per_seed_delta": per_seed_observed,
        "per_seed_p_value": [p_value(d) for d in per_seed_deltas],
        "n_resamples": n_resamples,
        "n_items": [a.shape[0] for a in counts_a],
    }
