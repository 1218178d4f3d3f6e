"""The training step replayed as CUDA graphs: ``trainer.cuda_graphs=true``, and the
benchmark variants ``ce_graphed`` / ``hamr_exact_graphed`` of scripts/bench_step.py.

On a GPU the exact HAMR step is bound by host work per operator call (about 6 µs each, some
30,000 calls per step against CE's 7,400), not by the kernels: a batch four times larger takes
the same time. A CUDA graph records the step's kernels once and replays them with one host call.

The step itself is the method's own (``hamr.steps``: written once, run eagerly by the loop too). What
capture requires of it, and what this module adds:
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

import logging
from collections import Counter

import torch
import torch.nn.functional as F

from hamr.data.encode import IGNORE_INDEX
from hamr.steps import StepFn, graph_ready_optimizer, lr_on_device

__all__ = ["GraphedStep", "GraphedTraining", "graph_ready_optimizer", "lr_on_device", "pad_batch"]

log = logging.getLogger(__name__)


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
    and result) with the method's step function (``method.step_function``) captured and replayed.

    Each batch, and each extra batch the method draws for the step (HAMR: its meta batch), is
    padded to the first of ``lengths`` that holds it. A step whose batches have the full sizes
    (``batch_size`` and the method's ``extra_batch_sizes``) and fit the lengths is replayed
    from the graph of its shapes (captured after ``warmup`` eager steps of those shapes); any other
    step (the last, smaller batch of an epoch; a longer batch) runs the same function eagerly.
    After each step the flags are read once (the loop's one host sync per step), the method records
    the step (``method.record_step``) and the scheduler steps. ``capture=False`` runs every
    step eagerly: the same arithmetic, on any device (the CPU tests compare it with the loop)."""

    def __init__(
        self,
        model: torch.nn.Module,
        method,
        optimizer: torch.optim.Optimizer,
        *,
        grad_clip: float,
        batch_size: int,
        lengths: list[int],
        pad_token_id: int,
        device: torch.device,
        capture: bool = True,
        warmup: int = 2,
    ):
        if getattr(optimizer, "found_inf", None) is None:
            raise ValueError("GraphedTraining needs an optimiser from graph_ready_optimizer (fused, with found_inf)")
        method.make_graph_ready()  # its own optimisers fused and capturable (HAMR: f_θ's)
        self.step = method.step_function(model, optimizer, grad_clip=grad_clip)
        self.full_sizes = (batch_size, *method.extra_batch_sizes)
        self.lengths, self.pad_token_id, self.device = sorted(lengths), pad_token_id, device
        self.capture, self.warmup = capture, warmup
        self.graphs: dict[tuple, GraphedStep] = {}
        self.steps_by_kind: Counter = Counter()  # replayed / eager: how the steps ran (logged by the loop's caller)

    def _padded(self, batch: dict) -> dict:
        length = batch["input_ids"].shape[1]
        target = next((n for n in self.lengths if n >= length), length)
        return {
            k: v.to(self.device, non_blocking=True)
            for k, v in pad_batch(batch, target, self.pad_token_id).items()
            if k != "index"
        }

    def __call__(self, model, method, batch: dict, optimizer, scheduler, grad_clip: float) -> torch.Tensor | None:
        lr_on_device(optimizer, self.device)  # after a resume; a no-op once the rate is a device tensor
        batches = [self._padded(b) for b in (batch, *method.next_extra_batches())]
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
        method.record_step(batch, outputs, flags)
        if scheduler is not None:
            scheduler.step()  # the schedule keeps its length whether or not the step was skipped
        if not flags[0]:
            log.warning("non-finite step skipped on the device: loss %s", outputs[0].item())
            return None
        return outputs[0].clone()
