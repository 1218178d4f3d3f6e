"""The bi-level meta step (docs/method.md section 1, steps 1-5) as one function on tensors.

    l_i(φ)          per-example losses of the training batch
    w_pre(θ)        weights from f_θ on the batch z-scores of l
    φ'(θ)           φ - α ∇_φ mean_i w_pre_i(θ) l_i(φ)           (virtual step, create_graph)
    L_meta(θ)       mean CE of the model at φ' on a meta batch
    ∂L_meta/∂θ      returned; nothing is written into the model, no gradient reaches φ

The training batch's graph is kept, so the caller's real update (with post-meta weights) reuses
the forward pass instead of running the encoder again.

``scope`` (the cheaper ``hamr.meta.scope`` mode) restricts the virtual step to a subset of the
parameters (the classifier head and the top encoder layers, see :func:`scope_parameter_names`):
the others keep φ and run without a graph in the meta forward.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch.func import functional_call
from torch.nn.attention import SDPBackend, sdpa_kernel

from hamr.algorithm.weights import WeightNet, batch_zscore, example_weights

# every SDPA kernel, fused ones first: what the meta forward may use with fused_meta_forward
ANY_ATTENTION_KERNEL = [
    SDPBackend.FLASH_ATTENTION,
    SDPBackend.EFFICIENT_ATTENTION,
    SDPBackend.CUDNN_ATTENTION,
    SDPBackend.MATH,
]
# (logits, labels) -> (hardness signal (B,), optimised per-example loss (B,))
ExampleLossFn = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


@dataclass
class MetaStepResult:
    example_losses: torch.Tensor  # (B,) optimised per-example loss, graph to the model kept
    signal: torch.Tensor  # (B,) hardness signal (classification: the loss; NER: max token loss), detached
    z: torch.Tensor  # (B,) batch z-scores of the hardness signal
    w_pre: torch.Tensor  # (B,) pre-meta weights, detached
    meta_loss: torch.Tensor  # scalar, detached
    weight_net_grads: list[torch.Tensor]  # ∂L_meta/∂θ, one per weight_net parameter

    def finite(self) -> torch.Tensor:
        """0-dim bool on the device: the meta loss and every θ-gradient are finite (else the
        caller leaves f_θ as it is for this step)."""
        return finite_meta_step(self.meta_loss, self.weight_net_grads)


def finite_meta_step(meta_loss: torch.Tensor, weight_net_grads: list[torch.Tensor]) -> torch.Tensor:
    """0-dim bool: the meta loss and every θ-gradient are finite."""
    return torch.isfinite(meta_loss) & torch.stack([torch.isfinite(g).all() for g in weight_net_grads]).all()


def meta_step(
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
    fused_meta_forward: bool = False,
    functional_model: torch.nn.Module | None = None,
) -> MetaStepResult:
    """One meta step; see the module docstring. ``train_inputs``/``meta_inputs`` are the encoder's
    keyword inputs (input_ids, attention_mask, ...) already on the model's device; ``scope`` the
    names of the parameters the virtual step moves (None: every trainable parameter, exact).
    ``fused_meta_forward``: the meta forward at φ' is differentiated only once, so it may use the
    fused attention kernels (fewer operators on a GPU; on a CPU the same math kernel); being
    measured by ``scripts/bench_step.py`` (variant ``hamr_exact_fused``) before it becomes a default.
    ``functional_model``: the bare module whose parameters φ are (default ``model``); ``model`` may
    wrap it (DDP), and runs the training forward, so that the real backward through that graph
    synchronises gradients, while the virtual step's functional_call runs on the bare module."""
    bare = model if functional_model is None else functional_model
    trainable = [(n, p) for n, p in bare.named_parameters() if p.requires_grad]
    names, params = zip(*[(n, p) for n, p in trainable if scope is None or n in scope])
    # Out-of-scope parameters enter the meta forward detached: no graph is recorded for them.
    frozen = {} if scope is None else {n: p.detach() for n, p in trainable if n not in scope}
    # Double backward through attention needs the math SDPA kernel (fused kernels lack it).
    with sdpa_kernel([SDPBackend.MATH]):
        logits = model(**train_inputs).logits
        signal, losses = example_loss(logits, train_labels)
        z = batch_zscore(signal)
        w_pre = example_weights(weight_net, z, *clip)
        inner = (w_pre * losses).mean()
        grads = torch.autograd.grad(inner, params, create_graph=True, retain_graph=True)
        # one multi-tensor op over every parameter (and one in its backward) instead of two per tensor
        virtual = {**frozen, **dict(zip(names, torch._foreach_add(list(params), list(grads), alpha=-inner_lr)))}
        kernels = contextlib.nullcontext() if not fused_meta_forward else sdpa_kernel(ANY_ATTENTION_KERNEL)
        with kernels, without_activation_checkpointing(bare):
            meta_logits = functional_call(bare, virtual, args=(), kwargs=meta_inputs, strict=False)
        loss_meta = meta_loss(meta_logits.logits, meta_labels)
        theta_grads = torch.autograd.grad(loss_meta, list(weight_net.parameters()), retain_graph=True)
    return MetaStepResult(losses, signal.detach(), z, w_pre.detach(), loss_meta.detach(), list(theta_grads))


@contextlib.contextmanager
def without_activation_checkpointing(model: torch.nn.Module):
    """Turn off HF activation checkpointing (``gradient_checkpointing`` flags) inside the block. The
    meta forward runs at φ' through functional_call, which puts φ back when it returns; a
    checkpointed layer recomputes its forward during the backward, after that, so at φ, and θ's
    gradient comes out wrong without any error. The training forward keeps its checkpointing."""
    flagged = [m for m in model.modules() if getattr(m, "gradient_checkpointing", False) is True]
    for module in flagged:
        module.gradient_checkpointing = False
    try:
        yield
    finally:
        for module in flagged:
            module.gradient_checkpointing = True


_LAYER_INDEX = re.compile(r"\.layers?\.(\d+)\.")


def scope_parameter_names(model: torch.nn.Module, top_layers: int) -> set[str]:
    """Names of the parameters in the virtual step of ``hamr.meta.scope = top_layers``: the head
    (everything outside the encoder body: classifier, pooler) plus encoder layers
    ``L - top_layers .. L - 1`` (names with ``.layer.<i>.`` or ``.layers.<i>.``). Embeddings and
    lower layers are left out. Raises ValueError when the model has no numbered layers."""
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    layer_of = {n: int(m.group(1)) for n in names if (m := _LAYER_INDEX.search(n))}
    if not layer_of:
        raise ValueError(f"hamr.meta.scope: no '.layer.<i>.' parameters in {type(model).__name__}; use scope=null")
    n_layers = max(layer_of.values()) + 1
    prefix = getattr(model, "base_model_prefix", "") + "."
    head = {n for n in names if not n.startswith(prefix) or ".pooler." in n}
    return head | {n for n, layer in layer_of.items() if layer >= n_layers - top_layers}
