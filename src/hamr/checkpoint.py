"""Checkpoints that let a killed or preempted run continue exactly where it stopped.

A checkpoint holds everything the loop needs at a step boundary: the model, optimiser and
scheduler, the training method's own state (HAMR: weight network and its optimiser, hardness and
neighbourhood scores, meta-batch position), the epoch's example order and how far into it the
run got, the generator that draws epoch orders, the global RNG states, the history so far and the
best-dev model state. It is written atomically at every epoch end and when SIGTERM, SIGINT or
SIGUSR2 arrives (at the next step boundary), and deleted when the run has written its metrics.
After such a stop the signal's handler from before the run is called (submitit's under
``hydra/launcher=slurm``), so that the scheduler requeues the job, which resumes from here.
"""

from __future__ import annotations

import hashlib
import io
import logging
import random
import signal
from pathlib import Path

import numpy as np
import torch

from hamr.results import atomic_write_bytes

log = logging.getLogger(__name__)


class Stopped(Exception):
    """A stop signal arrived; the checkpoint is saved and the run should exit."""

    def __init__(self, signum: int, path: Path):
        super().__init__(f"stopped by signal {signal.Signals(signum).name}; checkpoint saved at {path}: "
                         "run the same command again to resume")
        self.signum, self.path = signum, path


def rng_states() -> dict:
    states = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_rng_states(states: dict) -> None:
    random.setstate(states["python"])
    np.random.set_state(states["numpy"])
    torch.set_rng_state(states["torch"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


class Checkpointer:
    """Saves and restores a run's state under ``root/<hash of the run folder>/last.pt``.

    ``identity`` is what must match for a checkpoint to be resumed (the result-relevant config):
    a checkpoint of another configuration is ignored with a warning. While ``watch_signals()`` is
    active, SIGTERM and SIGINT set ``stop_signal`` instead of killing the process; the loop saves
    and raises :class:`Stopped` at the next step boundary.
    """

    def __init__(self, root: Path, run_dir: Path, identity: dict, resume: bool = True):
        key = hashlib.sha1(str(Path(run_dir).resolve()).encode()).hexdigest()[:16]
        self.folder = Path(root) / key
        self.path = self.folder / "last.pt"
        self.run_dir, self.identity, self.resume = Path(run_dir), identity, resume
        self.stop_signal: int | None = None
        self._previous_handlers: dict = {}

    def load(self) -> dict | None:
        if not self.resume or not self.path.is_file():
            return None
        state = torch.load(self.path, map_location="cpu", weights_only=False)
        if state.get("identity") != self.identity:
            log.warning("checkpoint %s belongs to another configuration: starting afresh", self.path)
            return None
        log.info("resuming from %s (epoch %d, batch %d of that epoch)", self.path, state["epoch"] + 1,
                 state["batch_in_epoch"])
        return state

    def save(self, state: dict) -> Path:
        buffer = io.BytesIO()
        torch.save({**state, "identity": self.identity}, buffer)
        atomic_write_bytes(self.path, buffer.getvalue())
        (self.folder / "run_dir.txt").write_text(f"{self.run_dir}\n")
        return self.path

    def remove(self) -> None:
        for path in (self.path, self.folder / "run_dir.txt"):
            path.unlink(missing_ok=True)
        if self.folder.is_dir() and not any(self.folder.iterdir()):
            self.folder.rmdir()

    def _handle(self, signum, frame) -> None:
        if self.stop_signal is not None and signum == signal.SIGINT:  # a second Ctrl-C: stop now
            raise KeyboardInterrupt
        self.stop_signal = signum
        log.warning("%s received: saving a checkpoint at the next step boundary", signal.Signals(signum).name)

    def watch_signals(self) -> None:
        """SIGTERM, SIGINT and SIGUSR2 (a scheduler's preemption or time-limit warning: SLURM with
        submitit) stop the run at the next step boundary with a checkpoint."""
        for signum in (signal.SIGTERM, signal.SIGINT, *([signal.SIGUSR2] if hasattr(signal, "SIGUSR2") else [])):
            try:
                self._previous_handlers[signum] = signal.signal(signum, self._handle)
            except ValueError:  # not the main thread (some launchers): signals stay as they are
                return

    def restore_signals(self) -> None:
        for signum, handler in self._previous_handlers.items():
            signal.signal(signum, handler)
        self._previous_handlers = {}
