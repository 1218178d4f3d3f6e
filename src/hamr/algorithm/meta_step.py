"""The bi-level meta step (method.md section 1, steps 1-5) as one function on tensors.

    l_i(φ)          per-example losses of the training batch
    w_pre(θ)        weights from f_θ on the batch z-scores of l
    φ'(θ)           φ - α ∇_φ mean_i w_pre_i(θ) l_i(φ)           (virtual step, create_graph)
    L_meta(θ)       mean CE of the model at φ' on a meta batch
    ∂L_meta/∂θ      returned; nothing is written into the model, no gradient reaches φ

The training batch's graph is kept, so the caller's real update (with post-meta weights) reuses
the forward pass instead of running the encoder again.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch.func import functional_call
from torch.nn.attention import SDPBackend, sdpa_kernel

from hamr.algorithm.weights import WeightNet, batch_zscore, example_weights

# (logits, labels) -> (hardness signal (B,), optimised per-example loss (B,))
ExampleLossFn = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


@dataclass
class MetaStepResult:
    example_losses: torch.Tensor  # (B,) optimised per-example loss, graph to the model kept
    z: torch.Tensor  # (B,) batch z-scores of the hardness signal
    w_pre: torch.Tensor  # (B,) pre-meta weights, detached
    meta_loss: torch.Tensor  # scalar, detached
    weight_net_grads: list[torch.Tensor]  # ∂L_meta/∂θ, one per weight_net parameter


def meta_step(model: torch.nn.Module, weight_net: WeightNet, train_inputs: dict, train_labels: torch.Tensor,
              meta_inputs: dict, meta_labels: torch.Tensor, *, example_loss: ExampleLossFn,
              meta_loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], inner_lr: float,
              clip: tuple[float, float]) -> MetaStepResult:
    """One meta step; see the module docstring. ``train_inputs``/``meta_inputs`` are the encoder's
    keyword inputs (input_ids, attention_mask, ...) already on the model's device."""
    names, params = zip(*[(n, p) for n, p in model.named_parameters() if p.requires_grad])
    # Double backward through attention needs the math SDPA kernel (fused kernels lack it).
    with sdpa_kernel([SDPBackend.MATH]):
        logits = model(**train_inputs).logits
        signal, losses = example_loss(logits, train_labels)
        z = batch_zscore(signal)
        w_pre = example_weights(weight_net, z, *clip)
        inner = (w_pre * losses).mean()
        grads = torch.autograd.grad(inner, params, create_graph=True, retain_graph=True)
        virtual = {n: p - inner_lr * g for n, p, g in zip(names, params, grads)}
        meta_logits = functional_call(model, virtual, args=(), kwargs=meta_inputs, strict=False)
        loss_meta = meta_loss(meta_logits.logits, meta_labels)
        theta_grads = torch.autograd.grad(loss_meta, list(weight_net.parameters()), retain_graph=True)
    return MetaStepResult(losses, z, w_pre.detach(), loss_meta.detach(), list(theta_grads))
