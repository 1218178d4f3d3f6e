"""Loss objects for the baselines (chosen by the ``baseline_loss`` config group).

Shapes: logits (B, C) with labels (B,) for sequence classification, or logits (B, T, C) with
labels (B, T) for token classification, where label -100 marks padding and sub-word
continuations. ``element_losses`` returns a loss per labelled element (shape of ``labels``,
0 where ignored); ``forward`` is their mean over labelled elements; ``example_losses`` reduces
them to one value per example (sentence) for per-example weighting.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from hamr.data.encode import IGNORE_INDEX


def _upcast(logits: torch.Tensor) -> torch.Tensor:
    """Losses are computed in at least fp32 (bf16/fp16 logits under autocast are upcast)."""
    return logits.float() if logits.dtype in (torch.float16, torch.bfloat16) else logits


def reduce_tokens(losses: torch.Tensor, labels: torch.Tensor, how: str) -> torch.Tensor:
    """Per-element losses (B,) or (B, T) -> one per example (B,): identity for (B,); for (B, T)
    over each sentence's labelled tokens the ``mean`` or ``max`` (0 for a sentence without one),
    or ``tokens``: the sentence's summed token loss x B / (labelled tokens in the batch), so that
    the batch mean of these is the token-averaged loss the baselines optimise, and weighting a
    sentence weights each of its tokens."""
    if losses.dim() == 1:
        return losses
    valid = labels != IGNORE_INDEX
    if how == "max":
        return losses.masked_fill(~valid, float("-inf")).amax(dim=1).clamp_min(0.0)
    if how == "mean":
        return losses.sum(dim=1) / valid.sum(dim=1).clamp_min(1)
    if how == "tokens":
        return losses.sum(dim=1) * len(losses) / valid.sum().clamp_min(1)
    raise ValueError(f"token reduction must be 'mean', 'max' or 'tokens', got {how!r}")


class ElementwiseLoss(nn.Module):
    """Base class: subclasses implement ``_loss(logits (N, C), targets (N,)) -> (N,)``."""

    def _loss(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def prepare(self, class_counts: torch.Tensor) -> None:
        """Hook for losses that need training-split statistics; ``class_counts`` is (C,)."""

    def element_losses(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        # Every position is scored (ignored ones as class 0) and then masked with torch.where:
        # boolean-mask indexing would make the host wait for the device on every call.
        valid = labels != IGNORE_INDEX
        values = self._loss(_upcast(logits.reshape(-1, logits.shape[-1])), labels.reshape(-1).clamp_min(0))
        return torch.where(valid, values.view(labels.shape), values.new_zeros(()))

    def example_losses(self, logits: torch.Tensor, labels: torch.Tensor, token_reduce: str = "mean") -> torch.Tensor:
        """One loss per example, (B,). Token tasks reduce over labelled tokens as
        :func:`reduce_tokens` says; a sentence with no labelled token gets 0."""
        return reduce_tokens(self.element_losses(logits, labels), labels, token_reduce)

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        valid = labels != IGNORE_INDEX
        return self.element_losses(logits, labels).sum() / valid.sum().clamp_min(1)


class CrossEntropyLoss(ElementwiseLoss):
    """Plain cross-entropy (the CE baseline)."""

    def _loss(self, logits, targets):
        return F.cross_entropy(logits, targets, reduction="none")


class FocalLoss(ElementwiseLoss):
    """Focal loss (Lin et al., 2017): -alpha_y (1 - p_y)^gamma log p_y.

    Args:
        gamma: focusing parameter (0 gives cross-entropy).
        alpha: null, one weight for every class, or a list of C per-class weights.
    """

    def __init__(self, gamma: float = 2.0, alpha: float | Sequence[float] | None = None):
        super().__init__()
        if gamma < 0:
            raise ValueError(f"focal gamma must be >= 0, got {gamma} (set baseline_loss.gamma, e.g. 2.0)")
        self.gamma = gamma
        self.alpha = None if alpha is None else torch.as_tensor(alpha, dtype=torch.float32)

    def _loss(self, logits, targets):
        log_p = F.log_softmax(logits, dim=-1).gather(1, targets[:, None]).squeeze(1)
        loss = -((1 - log_p.exp()) ** self.gamma) * log_p
        if self.alpha is not None:
            alpha = self.alpha.to(loss.device)
            loss = loss * (alpha[targets] if alpha.dim() else alpha)
        return loss


class SelfAdjustingDiceLoss(ElementwiseLoss):
    """Self-adjusting Dice loss (Li et al., ACL 2020), one-vs-rest over classes: per element, the
    mean over classes c of 1 - (2 q_c y_c + s) / (q_c + y_c + s), q_c = (1 - p_c)^a p_c, or with
    ``square_denominator`` 1 - (2 q_c y_c + s) / (q_c^2 + y_c^2 + s) (their released code's
    ``--dice_square``, used in their NER scripts).

    Why the square: with the plain denominator, s = 1 and a = 1 (docs/method.md's form) the true
    class's term is smallest at p = 0.5 (not 1), and a wrong class's term is smallest at p = 0
    *or* 1, so the loss barely separates classes (6.4 test Macro-F1 on Cyclone-Idai, results/cyclone_minilm). With
    the squared denominator and a small a the true class's term falls monotonically to 0 at p = 1.

    Args:
        alpha: the exponent a of the self-adjusting factor (1 - p)^a.
        smooth: the smoothing s added to numerator and denominator.
        square_denominator: square q and y in the denominator.
    """

    def __init__(self, alpha: float = 1.0, smooth: float = 1.0, square_denominator: bool = False):
        super().__init__()
        if alpha < 0:
            raise ValueError(f"dice alpha must be >= 0, got {alpha} (set baseline_loss.alpha, e.g. 0.01)")
        if smooth <= 0:
            raise ValueError(f"dice smooth must be > 0, got {smooth} (set baseline_loss.smooth, e.g. 1.0)")
        self.alpha, self.smooth, self.square_denominator = alpha, smooth, square_denominator

    def _loss(self, logits, targets):
        p = F.softmax(logits, dim=-1)
        y = F.one_hot(targets, p.shape[-1]).float()
        adjusted = (1 - p) ** self.alpha * p
        denominator = adjusted**2 + y + self.smooth if self.square_denominator else adjusted + y + self.smooth
        dice = (2 * adjusted * y + self.smooth) / denominator  # y ** 2 == y for one-hot targets
        return (1 - dice).mean(dim=-1)


class InverseClassFrequencyLoss(ElementwiseLoss):
    """Cross-entropy weighted by inverse class frequency of the training split, the weights
    normalised to average 1 over classes (a class absent from train counts as seen once)."""

    def __init__(self):
        super().__init__()
        self.register_buffer("class_weights", torch.empty(0))

    def prepare(self, class_counts: torch.Tensor) -> None:
        inverse = 1.0 / class_counts.float().clamp_min(1)
        self.class_weights = inverse * len(inverse) / inverse.sum()

    def _loss(self, logits, targets):
        if self.class_weights.numel() == 0:
            raise RuntimeError("InverseClassFrequencyLoss.prepare(class_counts) was not called")
        ce = F.cross_entropy(logits, targets, reduction="none")
        return ce * self.class_weights.to(ce.device)[targets]
