"""The weight network f_θ and the per-example weights it gives (docs/method.md section 1, steps 2-3, 6)."""

from __future__ import annotations

import torch
from torch import nn

ACTIVATIONS = ("sigmoid", "exp")
NORMALISATIONS = ("detached_mean", "mean")
_MAX_EXP_SCORE = 20.0  # exp activation: scores capped at e^20 (weights are clipped far below anyway)


def batch_zscore(losses: torch.Tensor) -> torch.Tensor:
    """z_i = (l_i - mean) / max(std, 1e-6) of detached losses (B,); population std, so a batch
    of one gives z = 0."""
    losses = losses.detach()
    return (losses - losses.mean()) / losses.std(unbiased=False).clamp_min(1e-6)


class WeightNet(nn.Module):
    """f_θ: MLP 1 -> hidden -> 1 with ReLU, output bias initialised to 0.1 (authors' code).

    ``activation`` maps its output to a positive score: ``sigmoid`` (the paper; scores in (0, 1),
    so after division by the batch mean the weights spread only as far as the curve spans (0, 1))
    or ``exp`` (scores in (0, ∞); after the batch-mean division the weights are B·softmax(f_θ(z)),
    whose spread is not bounded by the activation).

    ``normalisation`` says what the meta gradient sees of the division by the batch mean:
    ``detached_mean`` (paper and authors' code: the mean is a constant, so θ's gradient also moves
    the curve's level, which the division then removes; a common push to raise every weight
    drives a sigmoid towards 1, where its slope and so the spread vanish) or ``mean`` (the gradient
    passes through the mean, as in Meta-Weight-Net's normalisation: only the curve's shape, the
    weights relative to each other, is learned). It has no default here: HamrConfig holds the one
    default (``mean``).
    """

    def __init__(self, hidden: int = 100, activation: str = "sigmoid", *, normalisation: str):
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"WeightNet: activation={activation!r}; allowed: {' | '.join(ACTIVATIONS)}")
        if normalisation not in NORMALISATIONS:
            raise ValueError(f"WeightNet: normalisation={normalisation!r}; allowed: {' | '.join(NORMALISATIONS)}")
        self.activation, self.normalisation = activation, normalisation
        self.net = nn.Sequential(nn.Linear(1, hidden), nn.ReLU(), nn.Linear(hidden, 1))
        nn.init.constant_(self.net[2].bias, 0.1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """Raw scores in (0, 1) (sigmoid) or (0, e^20] (exp) for z of shape (B,); returns (B,)."""
        out = self.net(z[:, None].to(self.net[0].weight.dtype)).squeeze(1)
        return torch.sigmoid(out) if self.activation == "sigmoid" else out.clamp(max=_MAX_EXP_SCORE).exp()


def example_weights(weight_net: WeightNet, z: torch.Tensor, low: float, high: float) -> torch.Tensor:
    """Weights (B,): the scores divided by their batch mean (so they average 1; detached or not
    per ``weight_net.normalisation``), then clipped to [low, high]. Differentiable in θ."""
    scores = weight_net(z)
    mean = scores.mean() if weight_net.normalisation == "mean" else scores.detach().mean()
    return (scores / mean).clamp(low, high)


@torch.no_grad()
def weight_curve(weight_net: WeightNet, z_grid: torch.Tensor) -> torch.Tensor:
    """The learned loss -> weight map: raw scores of f_θ on a grid of z values (no batch mean)."""
    return weight_net(z_grid)
