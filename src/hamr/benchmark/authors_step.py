"""The authors' NER trainer's meta step, kept beside the step benchmark as its reference (variant
``authors``): the same θ-gradient as :func:`hamr.algorithm.meta_step.meta_step`, computed their way."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch.func import functional_call
from torch.nn.attention import SDPBackend, sdpa_kernel

from hamr.algorithm.meta_step import ExampleLossFn, MetaStepResult
from hamr.algorithm.weights import WeightNet, batch_zscore, example_weights


def meta_step_authors(
    model: torch.nn.Module,
    weight_net: WeightNet,
    train_inputs: dict,
    train_labels: torch.Tensor,
    meta_inputs: dict,
    meta_labels: torch.Tensor,
    *,
    example_loss: ExampleLossFn,
    meta_loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    inner_lr: float,
    clip: tuple[float, float],
    scope: set[str] | None = None,
) -> MetaStepResult:
    """The authors' NER trainer's step, kept only as the benchmark's reference (same θ-gradient):
    the meta loss is back-propagated with ``backward()`` into every model parameter as well as θ,
    the model's share is then thrown away, and the training batch is run through the encoder a
    second time for the real update (the returned losses come from that second forward)."""
    if scope is not None:
        raise ValueError("meta_step_authors: the authors' step has no scope")
    names, params = zip(*[(n, p) for n, p in model.named_parameters() if p.requires_grad])
    with sdpa_kernel([SDPBackend.MATH]):
        signal, losses = example_loss(model(**train_inputs).logits, train_labels)
        z = batch_zscore(signal)
        w_pre = example_weights(weight_net, z, *clip)
        grads = torch.autograd.grad((w_pre * losses).mean(), params, create_graph=True)
        virtual = {n: p - inner_lr * g for n, p, g in zip(names, params, grads)}
        loss_meta = meta_loss(
            functional_call(model, virtual, args=(), kwargs=meta_inputs, strict=False).logits, meta_labels
        )
        theta = list(weight_net.parameters())
        for parameter in theta:
            parameter.grad = None
        loss_meta.backward()  # into θ and, wastefully, into every model parameter
        theta_grads = [parameter.grad for parameter in theta]
        model.zero_grad(set_to_none=True)
        _, losses = example_loss(model(**train_inputs).logits, train_labels)
    return MetaStepResult(losses, signal.detach(), z, w_pre.detach(), loss_meta.detach(), theta_grads)
