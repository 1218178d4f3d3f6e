"""Each training method's step, written once: a function of batches already on the device that
runs the forward pass(es), the updates and their finiteness checks, and returns what the method
records. The loop calls it eagerly (``hamr.loop.train_step``) and ``trainer.cuda_graphs`` captures
and replays it (``hamr.cuda_graphs.GraphedTraining``); the only difference is how an optimiser
learns that a step was not finite (:func:`guarded_step`): a graph-ready optimiser reads the flag on
the device, any other on the host.

Step functions return ``(loss, flags, *records)``: the detached loss, a bool tensor whose first
entry says the step was finite (HAMR: the second, its meta step), then the method's records.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from hamr.algorithm.meta_step import finite_meta_step, meta_step
from hamr.algorithm.weights import WeightNet, batch_zscore, example_weights
from hamr.data.encode import model_inputs
from hamr.evaluation import autocast

StepFn = Callable[..., tuple[torch.Tensor, ...]]


def graph_ready_optimizer(
    optimizer_class: type[torch.optim.Optimizer], params, *, lr: float, device: torch.device, **options
) -> torch.optim.Optimizer:
    """``optimizer_class`` (torch.optim.Adam or AdamW) as a graph needs it: fused, so that a step
    whose ``optimizer.found_inf`` (a device scalar, set by :func:`guarded_step`) is 1 leaves the
    parameters and the state untouched, as the loop's skipped step does; capturable on CUDA; the
    learning rate a device tensor, written in place by the scheduler. ``options``: weight_decay, ..."""
    optimizer = optimizer_class(
        params, lr=torch.tensor(lr, device=device), fused=True, capturable=device.type == "cuda", **options
    )
    optimizer.found_inf = torch.zeros((), device=device)
    return optimizer


def lr_on_device(optimizer: torch.optim.Optimizer, device: torch.device) -> None:
    """Make every group's learning rate a tensor on ``device``: a resumed optimiser's comes back from
    the checkpoint (loaded to the CPU) as a CPU tensor, and a captured fused step must read it on the
    device (call before the first capture, so that the graph reads the tensor the scheduler writes)."""
    for group in optimizer.param_groups:
        # compared by type: a tensor made on device "cuda" reports "cuda:0", and replacing the rate
        # after a capture would leave the graph reading the old tensor
        if not torch.is_tensor(group["lr"]) or group["lr"].device.type != device.type:
            group["lr"] = torch.tensor(float(group["lr"]), device=device)


def guarded_step(optimizer: torch.optim.Optimizer, finite: torch.Tensor) -> None:
    """Step ``optimizer`` only if ``finite`` (0-dim bool), then clear its gradients. A graph-ready
    optimiser (``found_inf``) is told on the device and skips the step itself (no host sync, so the
    step can be captured); any other is stepped after one host read of the flag."""
    found_inf = getattr(optimizer, "found_inf", None)
    if found_inf is not None:
        found_inf.copy_((~finite).to(found_inf.dtype))
        optimizer.step()
    elif bool(finite):
        optimizer.step()
    optimizer.zero_grad(set_to_none=True)


def update(
    model: torch.nn.Module, loss: torch.Tensor, optimizer: torch.optim.Optimizer, grad_clip: float
) -> torch.Tensor:
    """θ's real update: backward, clip (``grad_clip`` 0: no clipping), step unless the loss or the
    gradient norm is not finite; returns that finiteness (0-dim bool, on the device)."""
    loss.backward()
    grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip if grad_clip > 0 else math.inf)
    finite = torch.isfinite(loss.detach()) & torch.isfinite(grad_norm)
    guarded_step(optimizer, finite)
    return finite


def ce_step(
    model: torch.nn.Module,
    loss_fn,
    optimizer: torch.optim.Optimizer,
    *,
    grad_clip: float = 1.0,
    precision: str = "fp32",
) -> StepFn:
    """The baselines' step as a function of one batch (device tensors, labels included);
    returns (loss, flags (1,) bool: the step was finite)."""
    device = next(model.parameters()).device

    def step(batch: dict) -> tuple[torch.Tensor, ...]:
        with autocast(device, precision, cache_enabled=False):
            logits = model(**model_inputs(batch)).logits
        loss = loss_fn(logits, batch["labels"])
        finite = update(model, loss, optimizer, grad_clip)
        return loss.detach(), finite.reshape(1)

    return step


def hamr_loss(
    model: torch.nn.Module,
    weight_net: WeightNet,
    weight_optimizer: torch.optim.Optimizer,
    *,
    example_loss,
    meta_loss,
    inner_lr: float,
    clip: tuple[float, float],
    precision: str = "fp32",
    scope: set[str] | None = None,
    weighted_update: bool = True,
    meta_step_fn: Callable = meta_step,
    functional_model: torch.nn.Module | None = None,
    reduce_weight_net_grads: Callable[[list[torch.Tensor]], list[torch.Tensor]] | None = None,
) -> StepFn:
    """HAMR's step up to the real update, as a function of (batch, meta batch): the meta step on
    f_θ (``meta_step_fn``), f_θ's update and the post-meta weights; or of (batch) alone, between
    meta steps (``hamr.meta.every`` > 1): one forward and the weights of the current f_θ. Returns
    (loss to back-propagate, meta step finite (0-dim bool; True without one), signal (B,), w_post
    (B,), meta loss (None without a meta step)). ``weighted_update`` False: the ablation without
    meta-weights in the real update (f_θ is still trained).

    For a caller that owns the backward (``hamr.hf.HamrTrainer``): ``model`` runs the training
    forward (a DDP wrapper, so that the real backward synchronises gradients) and
    ``functional_model`` (the bare module; default ``model``) the virtual step's functional_call;
    ``reduce_weight_net_grads`` averages f_θ's gradients over processes before its update."""
    device = next(model.parameters()).device

    def loss_of(batch: dict, meta_batch: dict | None = None) -> tuple:
        labels = batch["labels"]
        if meta_batch is not None:
            options = {} if functional_model is None else {"functional_model": functional_model}
            with autocast(device, precision, cache_enabled=False):
                result = meta_step_fn(
                    model,
                    weight_net,
                    model_inputs(batch),
                    labels,
                    model_inputs(meta_batch),
                    meta_batch["labels"],
                    example_loss=example_loss,
                    meta_loss=meta_loss,
                    inner_lr=inner_lr,
                    clip=clip,
                    scope=scope,
                    **options,
                )
            grads = result.weight_net_grads
            if reduce_weight_net_grads is not None:
                grads = reduce_weight_net_grads(grads)
            meta_finite = finite_meta_step(result.meta_loss, grads)
            for parameter, grad in zip(weight_net.parameters(), grads):
                parameter.grad = grad
            guarded_step(weight_optimizer, meta_finite)  # else f_θ keeps its parameters (counted)
            losses, z, signal, meta_value = result.example_losses, result.z, result.signal, result.meta_loss
        else:
            with autocast(device, precision, cache_enabled=False):
                signal, losses = example_loss(model(**model_inputs(batch)).logits, labels)
            signal = signal.detach()
            z, meta_finite, meta_value = batch_zscore(signal), torch.ones((), dtype=torch.bool, device=device), None
        with torch.no_grad():
            w_post = example_weights(weight_net, z, *clip)
        loss = (w_post * losses).mean() if weighted_update else losses.mean()
        return loss, meta_finite, signal, w_post, meta_value

    return loss_of


def hamr_step(
    model: torch.nn.Module,
    weight_net: WeightNet,
    weight_optimizer: torch.optim.Optimizer,
    optimizer: torch.optim.Optimizer,
    *,
    grad_clip: float = 1.0,
    **options,
) -> StepFn:
    """HAMR's whole step as a function of (batch, meta batch) or (batch): :func:`hamr_loss`
    (``options``: its keyword arguments) then the real update. Returns (loss, flags (2,) bool: [the
    step was finite, the meta step was finite (True without one)], signal (B,), w_post (B,), meta
    loss (None without a meta step)): what the method keeps for the hardness EMA and the diagnostics."""
    loss_of = hamr_loss(model, weight_net, weight_optimizer, **options)

    def step(batch: dict, meta_batch: dict | None = None) -> tuple[torch.Tensor, ...]:
        loss, meta_finite, signal, w_post, meta_value = loss_of(batch, meta_batch)
        finite = update(model, loss, optimizer, grad_clip)
        return loss.detach(), torch.stack([finite, meta_finite]), signal, w_post, meta_value

    return step
