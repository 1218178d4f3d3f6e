"""A stratified, seeded cap on the number of training examples (for CPU-sized runs)."""

from __future__ import annotations

from collections import Counter, defaultdict

import numpy as np

from hamr.data.records import Split, entity_types


def stratum_of(target, task: str, type_counts: Counter | None = None) -> str:
    """The stratum of one example: its class (cls), or the rarest entity type it holds (ner;
    ``"O"`` for sentences without entities), so that rare types survive the cap."""
    if task == "cls":
        return target
    types = entity_types(target)
    if not types:
        return "O"
    return min(types, key=lambda t: (type_counts[t], t))


def stratified_indices(strata: list[str], n: int, seed: int) -> list[int]:
    """Pick ``n`` indices whose strata keep their shares (largest remainder), at least one per
    stratum while ``n`` allows; returns sorted indices. ``n >= len(strata)`` keeps everything."""
    if n >= len(strata):
        return list(range(len(strata)))
    by_stratum: dict[str, list[int]] = defaultdict(list)
    for i, s in enumerate(strata):
        by_stratum[s].append(i)
    names = sorted(by_stratum, key=lambda s: (len(by_stratum[s]), s))  # rarest first
    exact = {s: n * len(by_stratum[s]) / len(strata) for s in names}
    quota = {s: min(len(by_stratum[s]), max(1, int(exact[s]))) for s in names}
    while sum(quota.values()) > n:  # too many minimum quotas: trim the largest strata
        largest = max(names, key=lambda s: (quota[s], s))
        quota[largest] -= 1
    remainders = sorted(names, key=lambda s: (-(exact[s] - int(exact[s])), s))
    while sum(quota.values()) < n:
        for s in remainders:
            if sum(quota.values()) == n:
                break
            if quota[s] < len(by_stratum[s]):
                quota[s] += 1
    rng = np.random.default_rng(seed)
    chosen = [i for s in names for i in rng.choice(by_stratum[s], quota[s], replace=False)]
    return sorted(int(i) for i in chosen)


def cap_split(split: Split, task: str, n: int | None, seed: int) -> Split:
    """The split restricted to a stratified sample of ``n`` examples (all of it when n is None)."""
    if n is None or n >= len(split):
        return split
    type_counts = Counter(t for tags in split.targets for t in entity_types(tags)) if task == "ner" else None
    strata = [stratum_of(t, task, type_counts) for t in split.targets]
    keep = stratified_indices(strata, n, seed)
    return Split(split.name, split.path, [split.inputs[i] for i in keep], [split.targets[i] for i in keep])
