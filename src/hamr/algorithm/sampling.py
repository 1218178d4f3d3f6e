"""Hardness-aware sampling (method.md section 2)."""

from __future__ import annotations

import math

import numpy as np
import torch


def sampling_probabilities(h: np.ndarray, b: np.ndarray, tau: float, lambda_: float, epsilon: float) -> np.ndarray:
    """p_i ∝ (h_i + ε)^τ (1 + λ b_i); h and b of shape (N,); returns (N,) summing to 1."""
    scores = (h + epsilon) ** tau * (1.0 + lambda_ * b)
    return scores / scores.sum()


def draw(p: np.ndarray, oversample: float, generator: torch.Generator) -> torch.Tensor:
    """ceil(oversample * N) indices drawn with replacement from p."""
    count = math.ceil(oversample * len(p))
    return torch.multinomial(torch.as_tensor(p, dtype=torch.float64), count, replacement=True, generator=generator)
