"""Hardness-aware sampling (docs/method.md section 2)."""

from __future__ import annotations

import math

import numpy as np
import torch


def sampling_probabilities(h: np.ndarray, b: np.ndarray, tau: float, lambda_: float, epsilon: float) -> np.ndarray:
    """p_i ∝ (h_i + ε)^τ (1 + λ b_i); h and b of shape (N,); returns (N,) summing to 1."""
    scores = (h + epsilon) ** tau * (1.0 + lambda_ * b)
    return scores / scores.sum()


def draws_per_epoch(n: int, oversample: float) -> int:
    """How many examples a resampled epoch draws from N = ``n``: ceil(oversample * N)."""
    return math.ceil(oversample * n)


def draw(p: np.ndarray, oversample: float, generator: torch.Generator) -> torch.Tensor:
    """:func:`draws_per_epoch` indices drawn with replacement from p (N,)."""
    count = draws_per_epoch(len(p), oversample)
    return torch.multinomial(torch.as_tensor(p, dtype=torch.float64), count, replacement=True, generator=generator)
