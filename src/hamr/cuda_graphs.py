"""A whole training step replayed as one CUDA graph (issue 15; measured by scripts/bench_step.py).

On a GPU the exact HAMR step is bound by host work per operator call (about 6 µs each, some
30,000 calls per step against CE's 7,400), not by the kernels: a batch four times larger takes
the same time. A CUDA graph records the step's kernels once and replays them with one host call.

What capture requires, and what these step functions therefore do differently from the loop's
``train_step`` + ``HamrMethod.batch_loss``:
- fixed shapes: every batch is padded to one length (:func:`pad_batch`);
- no host reads inside: no skipping of non-finite steps (the loop's ``bool(isfinite(...))``),
  no hardness records keyed by host-side indices (the caller keeps them from the returned tensors);
- capturable optimisers (``torch.optim.AdamW(..., capturable=True)``), whose state exists before
  capture (the warm-up steps create it);
- autocast without its weight cache (``cache_enabled=False``).
A prototype for the benchmark: not wired into the training loop.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import torch
import torch.nn.functional as F

from hamr.algorithm.meta_step import meta_step
from hamr.algorithm.weights import WeightNet, example_weights
from hamr.data.encode import IGNORE_INDEX

StepFn = Callable[..., tuple[torch.Tensor, ...]]


def pad_batch(batch: dict, length: int, pad_token_id: int = 0) -> dict:
    """``batch`` (collated tensors, (B, T) or (B,)) with every (B, T) tensor right-padded to
    (B, length): input ids with ``pad_token_id``, token labels with -100, the rest with 0.
    Raises ValueError when a tensor is longer than ``length``."""
    out = {}
    for key, value in batch.items():
        if value.dim() != 2:
            out[key] = value
            continue
        if value.shape[1] > length:
            raise ValueError(f"pad_batch: '{key}' has length {value.shape[1]} > {length}")
        fill = pad_token_id if key == "input_ids" else IGNORE_INDEX if key == "labels" else 0
        out[key] = F.pad(value, (0, length - value.shape[1]), value=fill)
    return out


def _autocast(device: torch.device, precision: str):
    # the cache of cast weights is not allowed inside a capture (it would outlive the graph's pool)
    if precision == "bf16" and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16, cache_enabled=False)
    return contextlib.nullcontext()


def _inputs(batch: dict) -> dict:
    # transformers (5.1 and later) skips its host read of the attention mask while a stream is
    # captured (utils.import_utils.is_tracing) and builds the full mask instead
    return {k: v for k, v in batch.items() if k not in ("labels", "index")}


def _update(model: torch.nn.Module, loss: torch.Tensor, optimizer: torch.optim.Optimizer, grad_clip: float) -> None:
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)  # no host read: the norm stays on the device
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


def ce_step(model: torch.nn.Module, loss_fn, optimizer: torch.optim.Optimizer, *, grad_clip: float = 1.0,
            precision: str = "fp32") -> StepFn:
    """The baselines' step as a function of one batch (device tensors, labels included);
    returns (loss,)."""
    device = next(model.parameters()).device

    def step(batch: dict) -> tuple[torch.Tensor, ...]:
        with _autocast(device, precision):
            logits = model(**_inputs(batch)).logits
        loss = loss_fn(logits, batch["labels"])
        _update(model, loss, optimizer, grad_clip)
        return (loss.detach(),)

    return step


def hamr_step(model: torch.nn.Module, weight_net: WeightNet, weight_optimizer: torch.optim.Optimizer,
              optimizer: torch.optim.Optimizer, *, example_loss, meta_loss, inner_lr: float,
              clip: tuple[float, float], grad_clip: float = 1.0, precision: str = "fp32") -> StepFn:
    """HAMR's exact step (``HamrMethod.batch_loss`` with a meta step, ablation ``full``, then the
    real update) as a function of (batch, meta batch); returns (loss, signal (B,), w_post (B,)):
    what the loop keeps for the hardness EMA and the diagnostics."""
    device = next(model.parameters()).device

    def step(batch: dict, meta_batch: dict) -> tuple[torch.Tensor, ...]:
        with _autocast(device, precision):
            result = meta_step(model, weight_net, _inputs(batch), batch["labels"], _inputs(meta_batch),
                               meta_batch["labels"], example_loss=example_loss, meta_loss=meta_loss,
                               inner_lr=inner_lr, clip=clip)
        for parameter, grad in zip(weight_net.parameters(), result.weight_net_grads):
            parameter.grad = grad
        weight_optimizer.step()
        weight_optimizer.zero_grad(set_to_none=True)
        with torch.no_grad():
            w_post = example_weights(weight_net, result.z, *clip)
        loss = (w_post * result.example_losses).mean()
        _update(model, loss, optimizer, grad_clip)
        return loss.detach(), result.signal, w_post

    return step


class GraphedStep:
    """``step`` captured as a CUDA graph on static copies of ``example_batches`` (dicts of CUDA
    tensors of the shapes every later call will have), after ``warmup`` eager calls on a side
    stream (they update the model and create the optimisers' state, as real steps). Calling it
    copies the batches into the static tensors, replays the graph and returns the step's outputs
    (static tensors, overwritten by the next call: clone what must be kept).

    Seed torch before capturing, not after: with a ``torch.manual_seed`` after a capture, the
    replay of a graph with dropout crashed (an illegal memory access, H200, torch 2.11)."""

    def __init__(self, step: StepFn, *example_batches: dict, warmup: int = 3):
        self.static = [{k: v.clone() for k, v in b.items()} for b in example_batches]
        # warm-up and capture on a stream of this graph's own: graphs captured on one stream share
        # its cuBLAS workspace, and freeing one of them clears it under the others
        # (pytorch/pytorch#193402; on 2026-11-28 the second benchmark's graphs, captured on
        # torch.cuda.graph's shared default stream, gave NaN once the first one's were freed)
        self.stream = torch.cuda.Stream()
        self.stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(self.stream):
            for _ in range(warmup):
                step(*self.static)
        torch.cuda.current_stream().wait_stream(self.stream)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph, stream=self.stream):
            self.outputs = step(*self.static)

    def __call__(self, *batches: dict) -> tuple[torch.Tensor, ...]:
        for static, batch in zip(self.static, batches, strict=True):
            for key, value in static.items():
                value.copy_(batch[key], non_blocking=True)
        self.graph.replay()
        return self.outputs
