"""Hardness scores h: an EMA of each example's post-meta weight (method.md section 1, step 8)."""

from __future__ import annotations

import numpy as np

GLOBAL_DECAY_FLOOR = 1e-8  # added to every score before renormalising (authors' code keeps h > 0)


def initial_hardness(n: int, rule: str) -> np.ndarray:
    """Uniform: 1 (the mean weight) for ``per_example``; 1/N (a distribution) for ``global_decay``."""
    return np.full(n, 1.0 if rule == "per_example" else 1.0 / n, dtype=np.float64)


def update_per_example(h: np.ndarray, index: np.ndarray, w_post: np.ndarray, gamma: float) -> np.ndarray:
    """The paper: h_i <- γ h_i + (1 - γ) w_i for the batch's examples, in batch order (an example
    drawn twice is updated twice). Returns a new array."""
    h = h.copy()
    for i, w in zip(index.tolist(), w_post.tolist()):
        h[i] = gamma * h[i] + (1 - gamma) * w
    return h


def update_global_decay(h: np.ndarray, index: np.ndarray, w_post: np.ndarray, gamma: float) -> np.ndarray:
    """The authors' code: every score decays by γ each step, the batch's examples add
    (1 - γ) w_i, a small floor is added, and the vector is renormalised to sum 1."""
    h = gamma * h
    np.add.at(h, index, (1 - gamma) * w_post)
    h += GLOBAL_DECAY_FLOOR
    return h / h.sum()


UPDATE_RULES = {"per_example": update_per_example, "global_decay": update_global_decay}
