"""The training loop: epochs of batches chosen by a training method, dev evaluation each epoch.

A *training method* decides which examples an epoch visits and what loss a batch back-propagates;
the plain baselines and HAMR are both methods, so the loop has no branch on the method's name.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from hamr.checkpoint import Checkpointer, Stopped, rng_states, set_rng_states
from hamr.data.encode import EncodedSplit
from hamr.losses import ElementwiseLoss
from hamr.steps import ce_step

log = logging.getLogger(__name__)


class TrainingMethod(Protocol):
    name: str

    def epoch_size(self, n_train: int) -> int:
        """How many examples one epoch draws."""

    def epoch_order(self, epoch: int, n_train: int, generator: torch.Generator) -> torch.Tensor:
        """Indices (into the training split) that epoch ``epoch`` visits, in order."""

    extra_batch_sizes: tuple[int, ...]  # sizes of the extra batches a step draws (HAMR: its meta batch)

    def step_function(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer, *, grad_clip: float):
        """The method's training step (hamr.steps), a function of (batch, *extra batches) on the
        device returning (loss, flags, *records) with no host read of its own."""

    def next_extra_batches(self) -> list[dict]:
        """The extra batches (collated, on the host) the next step uses; empty for none."""

    def record_step(self, batch: dict, outputs: tuple, flags: list[bool]) -> None:
        """Keep what the method needs of a step's outputs (they may be a graph's static tensors:
        clone what is kept); ``flags`` the host copy of outputs[1]."""

    def make_graph_ready(self) -> None:
        """trainer.cuda_graphs only: make the method's own optimisers capturable (or refuse)."""

    def end_epoch(self, epoch: int) -> dict:
        """Work between epochs; returns diagnostics to log."""

    def state_dict(self) -> dict:
        """The method's own state for checkpoints (empty when it has none)."""

    def load_state_dict(self, state: dict) -> None:
        """Restore :meth:`state_dict`'s output."""


@dataclass
class RunContext:
    """What a training method may need to build itself (see ``conf/method/``)."""

    settings: Any  # hamr.config.TrainConfig
    task_data: Any  # hamr.data.records.TaskData (train already capped)
    encoded: dict[str, EncodedSplit]  # train, dev, test
    collate: Callable
    model: torch.nn.Module
    loss: ElementwiseLoss
    device: torch.device
    cache_dir: Path | None = None


class BaselineMethod:
    """Shuffled epochs and a loss object (CE, focal, Dice, ICF)."""

    extra_batch_sizes: tuple[int, ...] = ()

    def __init__(self, loss: ElementwiseLoss, name: str, device: torch.device, precision: str = "fp32"):
        self.loss, self.name, self.device, self.precision = loss, name, device, precision

    @classmethod
    def from_context(cls, context: RunContext, name: str) -> BaselineMethod:
        return cls(context.loss, name, context.device, context.settings.trainer.precision)

    def epoch_size(self, n_train: int) -> int:
        return n_train

    def epoch_order(self, epoch, n_train, generator):
        return torch.randperm(n_train, generator=generator)

    def step_function(self, model, optimizer, *, grad_clip):
        return ce_step(model, self.loss, optimizer, grad_clip=grad_clip, precision=self.precision)

    def next_extra_batches(self) -> list[dict]:
        return []

    def record_step(self, batch, outputs, flags) -> None:
        pass

    def make_graph_ready(self) -> None:
        pass  # no optimiser of its own

    def end_epoch(self, epoch):
        return {}

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


@dataclass
class FitResult:
    history: list[dict] = field(default_factory=list)  # one row per epoch
    best_epoch: int = -1
    best_state: dict | None = None  # CPU copy of the model's state at best_epoch
    best_dev_scores: dict | None = None  # dev scores at best_epoch (its macro_f1 is the best so far)
    last_dev_scores: dict | None = None
    train_seconds: float = 0.0
    train_examples: int = 0
    steps: int = 0
    skipped_steps: int = 0  # non-finite loss or gradient: no update


class NumericalError(RuntimeError):
    """Too many training steps had a non-finite loss or gradient."""


def on_device(batch: dict, device: torch.device) -> dict:
    """A collated batch's tensors on ``device``, without its ``index`` (the method reads that on the host)."""
    return {k: v.to(device, non_blocking=True) for k, v in batch.items() if k != "index"}


def train_step(
    model: torch.nn.Module,
    method: TrainingMethod,
    batch: dict,
    optimizer: torch.optim.Optimizer,
    scheduler,
    grad_clip: float,
) -> torch.Tensor | None:
    """One optimiser step on ``batch`` with the method's step function (hamr.steps), run eagerly;
    returns the detached loss, or None when the loss or the gradient norm was not finite and the
    update was skipped (one host read of the step's flags, as torch.amp's GradScaler does)."""
    device = next(model.parameters()).device
    outputs = method.step_function(model, optimizer, grad_clip=grad_clip)(
        *(on_device(b, device) for b in (batch, *method.next_extra_batches()))
    )
    flags = outputs[1].tolist()
    method.record_step(batch, outputs, flags)
    if scheduler is not None:
        scheduler.step()  # the schedule keeps its length whether or not the step was skipped
    if not flags[0]:
        largest = max((p.detach().abs().max().item() for p in model.parameters()), default=float("nan"))
        log.warning("non-finite step skipped: loss %s, largest |parameter| %.3g", outputs[0].item(), largest)
        return None
    return outputs[0]


def _fit_state(
    model,
    optimizer,
    scheduler,
    method,
    generator,
    result: FitResult,
    *,
    epoch: int,
    batch_in_epoch: int,
    order: torch.Tensor | None,
    running,
    seen: int,
    epoch_seconds: float,
) -> dict:
    """Everything :func:`fit` needs to continue from this step boundary (see hamr.checkpoint)."""
    return {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "method": method.state_dict(),
        "generator": generator.get_state(),
        "rng": rng_states(),
        "result": vars(result),
        "epoch": epoch,
        "batch_in_epoch": batch_in_epoch,
        "order": order,
        "running": running,
        "seen": seen,
        "epoch_seconds": epoch_seconds,
    }


def fit(
    model: torch.nn.Module,
    method: TrainingMethod,
    train_data: EncodedSplit,
    collate,
    optimizer: torch.optim.Optimizer,
    scheduler,
    *,
    epochs: int,
    batch_size: int,
    grad_clip: float,
    seed: int,
    evaluate_dev: Callable[[], dict],
    log_metrics: Callable[[dict, int], None],
    progress_bar: bool = True,
    max_skip_share: float = 0.05,
    min_steps_before_abort: int = 20,
    checkpointer: Checkpointer | None = None,
    step_fn: Callable = train_step,
) -> FitResult:
    """Train for ``epochs``; after each, score dev with ``evaluate_dev`` (returns scores with
    ``macro_f1``) and keep a copy of the best-dev model state. Steps with a non-finite loss or
    gradient are skipped and counted; when more than ``max_skip_share`` of the steps so far (at
    least ``min_steps_before_abort`` counted) were skipped, :class:`NumericalError` stops the run.

    With a ``checkpointer`` the state is saved at every epoch end and, after SIGTERM/SIGINT, at the
    next step boundary (then :class:`hamr.checkpoint.Stopped` is raised); a saved state of the same
    configuration is resumed, giving the same result as an uninterrupted run.

    ``step_fn``: one training step with :func:`train_step`'s signature and result; with
    ``trainer.cuda_graphs``, a :class:`hamr.cuda_graphs.GraphedTraining`."""
    result = FitResult()
    generator = torch.Generator().manual_seed(seed)
    start_epoch, start_batch, resumed_order, resumed = 0, 0, None, None
    if checkpointer is not None and (resumed := checkpointer.load()) is not None:
        model.load_state_dict(resumed["model"])
        optimizer.load_state_dict(resumed["optimizer"])
        if scheduler is not None:
            scheduler.load_state_dict(resumed["scheduler"])
        method.load_state_dict(resumed["method"])
        generator.set_state(resumed["generator"])
        set_rng_states(resumed["rng"])
        result = FitResult(**resumed["result"])
        start_epoch, start_batch, resumed_order = resumed["epoch"], resumed["batch_in_epoch"], resumed["order"]
    step = result.steps
    model.train()

    def save_state(**position) -> Path:
        """Checkpoint this step boundary (``position``: where in the epoch, see :func:`_fit_state`)."""
        return checkpointer.save(_fit_state(model, optimizer, scheduler, method, generator, result, **position))

    if checkpointer is not None:
        checkpointer.watch_signals()
    try:
        for epoch in range(start_epoch, epochs):
            mid_epoch = resumed_order is not None and epoch == start_epoch
            order = resumed_order if mid_epoch else method.epoch_order(epoch, len(train_data), generator)
            first_batch = start_batch if mid_epoch else 0
            # Its own generator: a DataLoader without one draws a seed from the global RNG, which
            # would shift dropout's random stream after a mid-epoch resume.
            loader = DataLoader(
                torch.utils.data.Subset(train_data, order[first_batch * batch_size :].tolist()),
                batch_size=batch_size,
                shuffle=False,
                collate_fn=collate,
                generator=torch.Generator().manual_seed(seed + epoch),
            )
            running, seen, previous_seconds = (
                (resumed["running"], resumed["seen"], resumed["epoch_seconds"]) if mid_epoch else (None, 0, 0.0)
            )
            start = time.perf_counter()
            bar = tqdm(
                loader,
                desc=f"epoch {epoch + 1}/{epochs}",
                disable=not progress_bar,
                dynamic_ncols=True,
                leave=False,
                initial=first_batch,
                total=first_batch + len(loader),
            )
            for batch_in_epoch, batch in enumerate(bar, start=first_batch + 1):
                detached = step_fn(model, method, batch, optimizer, scheduler, grad_clip)
                step += 1
                result.steps = step
                if detached is None:
                    result.skipped_steps += 1
                    if result.skipped_steps > max_skip_share * max(step, min_steps_before_abort):
                        raise NumericalError(
                            f"{result.skipped_steps} of {step} training steps had a non-finite loss or gradient "
                            f"(more than trainer.max_skip_share={max_skip_share}); lower trainer.lr "
                            f"(the learning rate is {optimizer.param_groups[0]['lr']:.3g} now) or check the data"
                        )
                else:
                    running = detached if running is None else 0.98 * running + 0.02 * detached
                    seen += len(batch["labels"])
                    if step % 10 == 0:  # the progress bar's loss: a host read every 10 steps only
                        bar.set_postfix(loss=f"{running.item():.4f}")
                if checkpointer is not None and checkpointer.stop_signal is not None:
                    path = save_state(
                        epoch=epoch,
                        batch_in_epoch=batch_in_epoch,
                        order=order,
                        running=running,
                        seen=seen,
                        epoch_seconds=previous_seconds + time.perf_counter() - start,
                    )
                    raise Stopped(checkpointer.stop_signal, path)
            epoch_seconds = previous_seconds + time.perf_counter() - start
            result.train_seconds += epoch_seconds
            result.train_examples += seen
            diagnostics = method.end_epoch(epoch)
            dev = evaluate_dev()
            row = {
                "epoch": epoch + 1,
                "train_loss": float(running) if running is not None else float("nan"),
                "dev_macro_f1": dev["macro_f1"],
                "dev_micro_f1": dev["micro_f1"],
                "epoch_seconds": epoch_seconds,
                "examples_per_second": seen / max(epoch_seconds, 1e-9),
                "skipped_steps": result.skipped_steps,
                **diagnostics,
            }
            result.history.append(row)
            log_metrics(row, step)
            log.info(
                "epoch %d/%d: train loss %.4f, dev Macro-F1 %.4f (%.0f s)",
                epoch + 1,
                epochs,
                row["train_loss"],
                dev["macro_f1"],
                epoch_seconds,
            )
            result.last_dev_scores = dev
            if result.best_dev_scores is None or dev["macro_f1"] > result.best_dev_scores["macro_f1"]:
                result.best_epoch, result.best_dev_scores = epoch + 1, dev
                result.best_state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
            if checkpointer is not None:
                path = save_state(
                    epoch=epoch + 1, batch_in_epoch=0, order=None, running=None, seen=0, epoch_seconds=0.0
                )
                if checkpointer.stop_signal is not None:  # it came during the dev evaluation: stop here too
                    raise Stopped(checkpointer.stop_signal, path)
    finally:
        if checkpointer is not None:
            checkpointer.restore_signals()
    return result
