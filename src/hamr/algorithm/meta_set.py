"""The balanced meta-validation set (docs/method.md section 1)."""

from __future__ import annotations

import logging
from collections import Counter

import numpy as np

from hamr.data.records import entity_types

log = logging.getLogger(__name__)


def example_classes(target, task: str) -> list[str]:
    """Classes an example counts for: its class (cls) or one entry per entity span (ner)."""
    return [target] if task == "cls" else entity_types(target)


def balanced_meta_indices(
    train_targets: list, dev_targets: list, task: str, seed: int, max_share: float = 0.5, min_train_count: int = 0
) -> tuple[list[int], dict, dict]:
    """Training examples to move into the meta set: the dev split plus these reaches, for every
    class, the median class count of dev (NER: entity spans), taking at most ``max_share`` of a
    class's training examples (a rare class keeps most of its training data) and none of a class
    with fewer than ``min_train_count`` training examples (it keeps all of them).

    Returns (sorted train indices to move, dev counts, meta-set counts after the move).
    """
    dev_counts = Counter(c for t in dev_targets for c in example_classes(t, task))
    train_classes = sorted({c for t in train_targets for c in example_classes(t, task)})
    target = float(np.median([dev_counts.get(c, 0) for c in train_classes]))
    counts = Counter({c: dev_counts.get(c, 0) for c in train_classes})
    rng = np.random.default_rng(seed)
    moved: set[int] = set()
    holders = {c: [i for i, t in enumerate(train_targets) if c in example_classes(t, task)] for c in train_classes}
    for c in sorted(train_classes, key=lambda c: (counts[c], c)):  # rarest first
        budget = int(max_share * len(holders[c])) if len(holders[c]) >= min_train_count else 0
        taken = sum(1 for i in holders[c] if i in moved)
        for i in rng.permutation(holders[c]):
            if counts[c] >= target or taken >= budget:
                break
            if int(i) in moved:
                continue
            moved.add(int(i))
            taken += 1
            counts.update(example_classes(train_targets[i], task))
        if counts[c] < target:
            log.warning(
                "meta set: class %r reaches %d of the target %.0f (%d of its %d training examples are moved)",
                c,
                counts[c],
                target,
                taken,
                len(holders[c]),
            )
    return sorted(moved), dict(dev_counts), dict(counts)
