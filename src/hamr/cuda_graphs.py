"""The training step replayed as CUDA graphs: ``trainer.cuda_graphs=true``, and the
benchmark variants ``ce_graphed`` / ``hamr_exact_graphed`` of scripts/bench_step.py.

On a GPU the exact HAMR step is bound by host work per operator call (about 6 µs each, some
30,000 calls per step against CE's 7,400), not by the kernels: a batch four times larger takes
the same time. A CUDA graph records the step's kernels once and replays them with one host call.

What capture requires, and what these step functions therefore do differently from the loop's
``train_step`` + ``TrainingMethod.batch_loss``:
- fixed shapes: batches are padded to one of a few lengths (:func:`pad_batch`), one graph each;
- no host reads inside: a non-finite step is skipped on the device (a fused optimiser's
  ``found_inf``, as torch.amp's GradScaler does) and the loop reads the flags after the replay;
  the hardness records keyed by host-side indices are kept by the method from the returned tensors;
- capturable, fused optimisers whose learning rate is a device tensor (the scheduler writes the
  new rate into it, the replayed graph reads it) and whose state exists before capture (the
  warm-up steps, real training steps, create it);
- autocast without its weight cache (``cache_enabled=False``).
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections import Counter
from collections.abc import Callable

import torch
import torch.nn.functional as F

from hamr.algorithm.meta_step import meta_step
from hamr.algorithm.weights import WeightNet, example_weights
from hamr.data.encode import IGNORE_INDEX

log = logging.getLogger(__name__)
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


def graph_ready_optimizer(optimizer_class: type[torch.optim.Optimizer], params, *, lr: float, device: torch.device,
                          **options) -> torch.optim.Optimizer:
    """``optimizer_class`` (torch.optim.Adam or AdamW) as a graph needs it: fused, so that a step
    whose ``optimizer.found_inf`` (a device scalar, set by the step functions) is 1 leaves the
    parameters and the state untouched, as the loop's skipped step does; capturable on CUDA; the
    learning rate a device tensor, written in place by the scheduler. ``options``: weight_decay, ..."""
    optimizer = optimizer_class(params, lr=torch.tensor(lr, device=device), fused=True,
                                capturable=device.type == "cuda", **options)
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


def _skip_unless(optimizer: torch.optim.Optimizer, finite: torch.Tensor) -> None:
    # a fused optimiser reads found_inf on the device (no host sync); others step regardless
    found_inf = getattr(optimizer, "found_inf", None)
    if found_inf is not None:
        found_inf.copy_((~finite).to(found_inf.dtype))


def _update(model: torch.nn.Module, loss: torch.Tensor, optimizer: torch.optim.Optimizer, grad_clip: float) -> torch.Tensor:
    """Backward, clip, step, as hamr.loop.train_step without its host read; returns whether the
    loss and the gradient norm were finite (0-dim bool, on the device; if not, the step was skipped
    by a graph-ready optimiser)."""
    loss.backward()
    grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip if grad_clip > 0 else math.inf)
    finite = torch.isfinite(loss.detach()) & torch.isfinite(grad_norm)
    _skip_unless(optimizer, finite)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return finite


def ce_step(model: torch.nn.Module, loss_fn, optimizer: torch.optim.Optimizer, *, grad_clip: float = 1.0,
            precision: str = "fp32") -> StepFn:
    """The baselines' step as a function of one batch (device tensors, labels included);
    returns (loss, flags (1,) bool: the step was finite)."""
    device = next(model.parameters()).device

    def step(batch: dict) -> tuple[torch.Tensor, ...]:
        with _autocast(device, precision):
            logits = model(**_inputs(batch)).logits
        loss = loss_fn(logits, batch["labels"])
        finite = _update(model, loss, optimizer, grad_clip)
        return loss.detach(), finite.reshape(1)

    return step


def hamr_step(model: torch.nn.Module, weight_net: WeightNet, weight_optimizer: torch.optim.Optimizer,
              optimizer: torch.optim.Optimizer, *, example_loss, meta_loss, inner_lr: float,
              clip: tuple[float, float], grad_clip: float = 1.0, precision: str = "fp32",
              scope: set[str] | None = None, weighted_update: bool = True) -> StepFn:
    """HAMR's step with a meta step (``HamrMethod.batch_loss`` at hamr.meta.every=1, then the real
    update) as a function of (batch, meta batch); returns (loss, flags (2,) bool: [the step was
    finite, the meta step was finite], signal (B,), w_post (B,), meta loss): what the loop keeps
    for the hardness EMA and the diagnostics. ``weighted_update`` False: the ablation without
    meta-weights in the real update (f_θ is still trained)."""
    device = next(model.parameters()).device

    def step(batch: dict, meta_batch: dict) -> tuple[torch.Tensor, ...]:
        with _autocast(device, precision):
            result = meta_step(model, weight_net, _inputs(batch), batch["labels"], _inputs(meta_batch),
                               meta_batch["labels"], example_loss=example_loss, meta_loss=meta_loss,
                               inner_lr=inner_lr, clip=clip, scope=scope)
        meta_finite = result.finite()
        for parameter, grad in zip(weight_net.parameters(), result.weight_net_grads):
            parameter.grad = grad
        _skip_unless(weight_optimizer, meta_finite)  # else f_θ keeps its parameters, as in the loop
        weight_optimizer.step()
        weight_optimizer.zero_grad(set_to_none=True)
        with torch.no_grad():
            w_post = example_weights(weight_net, result.z, *clip)
        losses = result.example_losses
        loss = (w_post * losses).mean() if weighted_update else losses.mean()
        finite = _update(model, loss, optimizer, grad_clip)
        return loss.detach(), torch.stack([finite, meta_finite]), result.signal, w_post, result.meta_loss

    return step


class GraphedStep:
    """``step`` (a function of batches of CUDA tensors) replayed as a CUDA graph. Its first
    ``warmup`` calls run eagerly on a stream of its own (real steps: they create the optimisers'
    state); the next call captures the graph on static copies of its batches, and every call from
    then on copies its batches (of the same shapes) into them and replays. Returns the step's
    outputs (after capture: static tensors, overwritten by the next call; clone what must be kept).

    With ``example_batches`` (the benchmark), the warm-up calls run on copies of them and the graph
    is captured at once. Seed torch before capturing, not after: with a ``torch.manual_seed`` after
    a capture, the replay of a graph with dropout crashed (an illegal memory access, H200, torch 2.11)."""

    def __init__(self, step: StepFn, *example_batches: dict, warmup: int = 3):
        self.step, self.warmup, self.calls = step, warmup, 0
        self.graph: torch.cuda.CUDAGraph | None = None
        # warm-up and capture on a stream of this graph's own: graphs captured on one stream share
        # its cuBLAS workspace, and freeing one of them clears it under the others
        # (pytorch/pytorch#193402; on 2026-11-28 the second benchmark's graphs, captured on
        # torch.cuda.graph's shared default stream, gave NaN once the first one's were freed)
        self.stream = torch.cuda.Stream()
        if example_batches:
            static = [{k: v.clone() for k, v in b.items()} for b in example_batches]
            while self.calls < warmup:
                self(*static)
            self._capture(static)

    def _capture(self, batches: list[dict]) -> None:
        self.static = [{k: v.clone() for k, v in b.items()} for b in batches]
        self.graph = torch.cuda.CUDAGraph()
        self.stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.graph(self.graph, stream=self.stream):
            self.outputs = self.step(*self.static)

    def __call__(self, *batches: dict) -> tuple[torch.Tensor, ...]:
        if self.graph is None and self.calls < self.warmup:
            self.calls += 1
            self.stream.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(self.stream):
                outputs = self.step(*batches)
            torch.cuda.current_stream().wait_stream(self.stream)
            return outputs
        if self.graph is None:
            self._capture(list(batches))
        for static, batch in zip(self.static, batches, strict=True):
            for key, value in static.items():
                value.copy_(batch[key], non_blocking=True)
        self.graph.replay()
        return self.outputs


class GraphedTraining:
    """``trainer.cuda_graphs``: the loop's training step (:func:`hamr.loop.train_step`'s signature
    and result) run through the method's capturable step function (``method.capturable_step``).

    Each batch, and each extra batch the method draws for the step (HAMR: its meta batch), is
    padded to the first of ``lengths`` that holds it. A step whose batches have the full sizes
    (``batch_size`` and the method's ``capturable_batch_sizes``) and fit the lengths is replayed
    from the graph of its shapes (captured after ``warmup`` eager steps of those shapes); any other
    step (the last, smaller batch of an epoch; a longer batch) runs the same function eagerly.
    After each step the flags are read once (the loop's one host sync per step), the method records
    the step (``method.record_captured``) and the scheduler steps. ``capture=False`` runs every
    step eagerly: the same arithmetic, on any device (the CPU tests compare it with the loop)."""

    def __init__(self, model: torch.nn.Module, method, optimizer: torch.optim.Optimizer, *, grad_clip: float,
                 batch_size: int, lengths: list[int], pad_token_id: int, device: torch.device,
                 capture: bool = True, warmup: int = 2):
        if getattr(optimizer, "found_inf", None) is None:
            raise ValueError("GraphedTraining needs an optimiser from graph_ready_optimizer (fused, with found_inf)")
        self.step = method.capturable_step(model, optimizer, grad_clip=grad_clip)
        self.full_sizes = (batch_size, *method.capturable_batch_sizes)
        self.lengths, self.pad_token_id, self.device = sorted(lengths), pad_token_id, device
        self.capture, self.warmup = capture, warmup
        self.graphs: dict[tuple, GraphedStep] = {}
        self.steps_by_kind: Counter = Counter()  # replayed / eager: how the steps ran (logged by the loop's caller)

    def _padded(self, batch: dict) -> dict:
        length = batch["input_ids"].shape[1]
        target = next((n for n in self.lengths if n >= length), length)
        return {k: v.to(self.device, non_blocking=True)
                for k, v in pad_batch(batch, target, self.pad_token_id).items() if k != "index"}

    def __call__(self, model, method, batch: dict, optimizer, scheduler, grad_clip: float) -> torch.Tensor | None:
        lr_on_device(optimizer, self.device)  # after a resume; a no-op once the rate is a device tensor
        batches = [self._padded(b) for b in (batch, *method.capturable_inputs())]
        shapes = tuple(b["input_ids"].shape for b in batches)
        fits = all(s[1] <= self.lengths[-1] for s in shapes)
        if self.capture and fits and tuple(s[0] for s in shapes) == self.full_sizes:
            if shapes not in self.graphs:
                self.graphs[shapes] = GraphedStep(self.step, warmup=self.warmup)
            graphed = self.graphs[shapes]
            outputs = graphed(*batches)
            self.steps_by_kind["replayed" if graphed.graph is not None else "eager"] += 1
        else:
            self.steps_by_kind["eager"] += 1
            outputs = self.step(*batches)
        flags = outputs[1].tolist()  # one host read per step
        method.record_captured(batch, outputs, flags)
        if scheduler is not None:
            scheduler.step()  # the schedule keeps its length whether or not the step was skipped
        if not flags[0]:
            log.warning("non-finite step skipped on the device: loss %s", outputs[0].item())
            return None
        return outputs[0].clone()
