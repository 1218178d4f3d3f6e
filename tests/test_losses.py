"""Every baseline loss against values computed by hand (math on scalars, not torch)."""

import math

import pytest
import torch

from hamr.losses import (
    CrossEntropyLoss,
    FocalLoss,
    InverseClassFrequencyLoss,
    SelfAdjustingDiceLoss,
    reduce_tokens,
)

LOGITS = torch.tensor([[2.0, 0.0, -1.0], [0.5, 1.5, 0.0]])  # (B=2, C=3)
LABELS = torch.tensor([0, 2])


def softmax_row(row):
    exps = [math.exp(v) for v in row]
    return [e / sum(exps) for e in exps]


P = [softmax_row(r) for r in LOGITS.tolist()]
P_GOLD = [P[0][0], P[1][2]]


def test_cross_entropy_matches_negative_log_probability():
    expected = [-math.log(p) for p in P_GOLD]
    got = CrossEntropyLoss().element_losses(LOGITS, LABELS)
    assert got.tolist() == pytest.approx(expected, rel=1e-6)
    assert CrossEntropyLoss()(LOGITS, LABELS).item() == pytest.approx(sum(expected) / 2, rel=1e-6)


def test_focal_loss_down_weights_easy_examples():
    expected = [-((1 - p) ** 2) * math.log(p) for p in P_GOLD]
    got = FocalLoss(gamma=2.0).element_losses(LOGITS, LABELS)
    assert got.tolist() == pytest.approx(expected, rel=1e-6)
    alpha = [0.25, 1.0, 2.0]
    got_alpha = FocalLoss(gamma=2.0, alpha=alpha).element_losses(LOGITS, LABELS)
    assert got_alpha.tolist() == pytest.approx([0.25 * expected[0], 2.0 * expected[1]], rel=1e-6)
    assert FocalLoss(gamma=0.0).element_losses(LOGITS, LABELS).tolist() == pytest.approx(
        [-math.log(p) for p in P_GOLD], rel=1e-6
    )


@pytest.mark.parametrize("a,square", [(1.0, False), (1.0, True), (0.01, True)])
def test_self_adjusting_dice_per_class_formula(a, square):
    s = 1.0
    expected = []
    for probs, gold in zip(P, LABELS.tolist()):
        terms = []
        for c, p in enumerate(probs):
            y = 1.0 if c == gold else 0.0
            q = (1 - p) ** a * p
            denominator = q * q + y * y + s if square else q + y + s
            terms.append(1 - (2 * q * y + s) / denominator)
        expected.append(sum(terms) / len(terms))
    got = SelfAdjustingDiceLoss(alpha=a, smooth=s, square_denominator=square).element_losses(LOGITS, LABELS)
    assert got.tolist() == pytest.approx(expected, rel=1e-6)


def test_squared_dice_with_small_a_is_lowest_for_a_confident_correct_prediction():
    logits = torch.tensor([[0.0, 0.0], [8.0, -8.0]])  # p_gold = 0.5, then about 1
    labels = torch.tensor([0, 0])
    squared = SelfAdjustingDiceLoss(alpha=0.01, smooth=1.0, square_denominator=True).element_losses(logits, labels)
    assert squared[1] < squared[0] and squared[1] < 0.01


def test_inverse_class_frequency_weights_average_one():
    loss = InverseClassFrequencyLoss()
    loss.prepare(torch.tensor([6, 3, 1]))
    inv = [1 / 6, 1 / 3, 1.0]
    weights = [w * 3 / sum(inv) for w in inv]
    assert loss.class_weights.tolist() == pytest.approx(weights, rel=1e-6)
    assert loss.class_weights.mean().item() == pytest.approx(1.0)
    expected = [weights[0] * -math.log(P_GOLD[0]), weights[2] * -math.log(P_GOLD[1])]
    assert loss.element_losses(LOGITS, LABELS).tolist() == pytest.approx(expected, rel=1e-6)


def test_inverse_class_frequency_needs_prepare():
    with pytest.raises(RuntimeError, match="prepare"):
        InverseClassFrequencyLoss()(LOGITS, LABELS)


@pytest.mark.parametrize(
    "loss", [CrossEntropyLoss(), FocalLoss(2.0), SelfAdjustingDiceLoss(), InverseClassFrequencyLoss()]
)
def test_token_shape_ignores_minus_100_and_reduces_per_sentence(loss):
    loss.prepare(torch.tensor([6, 3, 1]))
    # (B=2, T=3, C=3): sentence 0 = [row0, pad, row1]; sentence 1 = [row1, row0, pad]
    logits = torch.stack(
        [
            torch.stack([LOGITS[0], torch.zeros(3), LOGITS[1]]),
            torch.stack([LOGITS[1], LOGITS[0], torch.full((3,), 9.0)]),
        ]
    )
    labels = torch.tensor([[0, -100, 2], [2, 0, -100]])
    flat = loss.element_losses(LOGITS, LABELS).tolist()  # the (B, C) values computed above
    per_token = loss.element_losses(logits, labels)
    assert per_token.flatten().tolist() == pytest.approx([flat[0], 0.0, flat[1], flat[1], flat[0], 0.0], rel=1e-6)
    assert loss(logits, labels).item() == pytest.approx(sum(flat) / 2, rel=1e-6)
    assert loss.example_losses(logits, labels, "mean").tolist() == pytest.approx([sum(flat) / 2] * 2, rel=1e-6)
    assert loss.example_losses(logits, labels, "max").tolist() == pytest.approx([max(flat)] * 2, rel=1e-6)
    # tokens: each sentence's sum x B / (labelled tokens in the batch, 4): their mean is the token mean
    assert loss.example_losses(logits, labels, "tokens").tolist() == pytest.approx([sum(flat) * 2 / 4] * 2, rel=1e-6)


@pytest.mark.parametrize("how", ["mean", "max", "tokens"])
def test_sequence_example_losses_are_each_examples_own_loss(how):
    """(B, C) logits: one loss per example whatever the token reduction, -log p of its class."""
    expected = [-math.log(p) for p in P_GOLD]
    assert CrossEntropyLoss().example_losses(LOGITS, LABELS, how).tolist() == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("how", ["mean", "max", "tokens"])
def test_a_sentence_without_a_labelled_token_gets_zero(how):
    """A sentence whose every token is -100 (all sub-words, or truncated away) adds nothing:
    not -inf from the max over no tokens, nor NaN from a mean over none."""
    losses = torch.tensor([[0.5, 2.0, 0.0], [0.0, 0.0, 0.0]])
    labels = torch.tensor([[1, 0, -100], [-100, -100, -100]])
    reduced = reduce_tokens(losses, labels, how)
    assert reduced[1].item() == 0.0 and torch.isfinite(reduced).all()
