"""Hardness scores h: an EMA of each example's post-meta weight (docs/method.md section 1, step 8), or
of its relative loss, and the conversions that make the EMA's decay independent of the run length."""

from __future__ import annotations

import numpy as np
import torch


def initial_hardness(n: int, rule: str) -> np.ndarray:
    """Uniform: 1 (the mean weight) for ``per_example``; 1/N (a distribution) for ``global_decay``."""
    return np.full(n, 1.0 if rule == "per_example" else 1.0 / n, dtype=np.float64)


def decay_for_half_life(half_life: float) -> float:
    """The EMA decay γ after whose ``half_life`` applications an old value keeps half its weight:
    γ = 0.5 ** (1 / half_life). The unit is whatever one application is: a visit of the example
    (per-example rule) or a training step (global rule; half-life in epochs x steps per epoch)."""
    return 0.5 ** (1.0 / half_life)


def relative_loss(signal: torch.Tensor) -> torch.Tensor:
    """ℓ_i / mean_batch ℓ of the detached hardness signal (B,): positive, mean 1 like w_post, and
    free of the loss's downward drift during training; a batch with zero mean loss gives ones."""
    signal = signal.detach()
    mean = signal.mean()
    return torch.where(mean > 0, signal / mean.clamp_min(1e-12), torch.ones_like(signal))


def update_per_example(h: np.ndarray, index: np.ndarray, values: np.ndarray, gamma: float) -> np.ndarray:
    """The paper: h_i <- γ h_i + (1 - γ) v_i for the batch's examples, in batch order (an example
    drawn twice is updated twice). Returns a new array."""
    h = h.copy()
    for i, v in zip(index.tolist(), values.tolist()):
        h[i] = gamma * h[i] + (1 - gamma) * v
    return h


def update_global_decay(h: np.ndarray, index: np.ndarray, values: np.ndarray, gamma: float, floor: float) -> np.ndarray:
    """The authors' code: every score decays by γ each step, the batch's examples add
    (1 - γ) v_i, ``floor`` is added to every score (their classification trainer 1e-6, NER 1e-4),
    and the vector is renormalised to sum 1. With N examples the floor mixes N·floor of uniform
    mass into a distribution of mass 1 at every step."""
    h = gamma * h
    np.add.at(h, index, (1 - gamma) * values)
    h += floor
    return h / h.sum()
