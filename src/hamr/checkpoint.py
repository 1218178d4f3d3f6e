"""Checkpoints that let a killed or preempted run continue exactly where it stopped.

A checkpoint holds everything the loop needs at a step boundary: the model, optimiser and
scheduler, the training method's own state (HAMR: weight network and its optimiser, hardness and
neighbourhood scores, meta-batch position), the epoch's example order and how far into it the
run got, the generator that draws epoch orders, the global RNG states, the history so far and the
best-dev model state. It is written atomically at every epoch end and when SIGTERM, SIGINT or
SIGUSR2 arrives (at the next step boundary), and deleted when the run has written its metrics.
After such a stop the signal's handler from before the run is called (submitit's under
``hydra/launcher=slurm``), so that the scheduler requeues the job, which resumes from here.

Loading a checkpoint is reading data, never running code: the file is ``HEADER <sha256 of the
payload>\n`` then a ``torch.save`` payload of tensors, dicts, lists, tuples and plain values only
(numpy arrays travel as tensors), read with ``torch.load(weights_only=True)``. A file without the
header, whose checksum does not match, or that does not load, is named in one warning, renamed
``last.pt.unreadable-<time>`` and the run starts afresh.
"""

from __future__ import annotations

import hashlib
import io
import logging
import random
import signal
import time
from pathlib import Path

import numpy as np
import torch

from hamr.results import atomic_write_bytes

log = logging.getLogger(__name__)


class Stopped(Exception):
    """A stop signal arrived; the checkpoint is saved and the run should exit."""

    def __init__(self, signum: int, path: Path):
        super().__init__(
            f"stopped by signal {signal.Signals(signum).name}; checkpoint saved at {path}: "
            "run the same command again to resume"
        )
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


HEADER = b"HAMR-CHECKPOINT-1 "
_NDARRAY = "__ndarray__"  # {_NDARRAY: tensor}: a numpy array stored as a tensor (weights_only cannot hold numpy)


def to_plain(obj):
    """``obj`` with every numpy array as ``{_NDARRAY: tensor}`` and numpy scalars as Python numbers,
    so that ``torch.load(weights_only=True)`` can read it back."""
    if isinstance(obj, np.ndarray):
        return {_NDARRAY: torch.from_numpy(np.ascontiguousarray(obj).copy())}
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, dict):
        return {k: to_plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(to_plain(v) for v in obj)
    return obj


def from_plain(obj):
    """The inverse of :func:`to_plain`."""
    if isinstance(obj, dict):
        if set(obj) == {_NDARRAY}:
            return obj[_NDARRAY].numpy()
        return {k: from_plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(from_plain(v) for v in obj)
    return obj


def encode_checkpoint(state: dict) -> bytes:
    """The bytes of a checkpoint file: header, checksum, payload."""
    buffer = io.BytesIO()
    torch.save(to_plain(state), buffer)
    payload = buffer.getvalue()
    return HEADER + hashlib.sha256(payload).hexdigest().encode() + b"\n" + payload


class UnreadableCheckpoint(ValueError):
    """A checkpoint file that is not one this project wrote whole."""


def decode_checkpoint(data: bytes) -> dict:
    """A checkpoint's state from its bytes, checked before anything is unpickled, unpickled with
    ``weights_only=True``; raises UnreadableCheckpoint saying why."""
    if not data.startswith(HEADER):
        raise UnreadableCheckpoint("it is not a checkpoint of this project (no header)")
    digest, _, payload = data[len(HEADER) :].partition(b"\n")
    if hashlib.sha256(payload).hexdigest().encode() != digest:
        raise UnreadableCheckpoint("its checksum does not match (truncated or damaged)")
    try:
        state = torch.load(io.BytesIO(payload), map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any failure to read it is the same verdict
        raise UnreadableCheckpoint(
            f"it does not load as data ({type(err).__name__}: {str(err).splitlines()[0]})"
        ) from None
    if not isinstance(state, dict):
        raise UnreadableCheckpoint(f"it holds a {type(state).__name__}, not a state")
    return from_plain(state)


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
        """The saved state of this configuration, or None (none saved, resume=false, another
        configuration's, or unreadable: that file is set aside with a warning naming it)."""
        if not self.resume or not self.path.is_file():
            return None
        try:
            state = decode_checkpoint(self.path.read_bytes())
        except UnreadableCheckpoint as err:
            aside = self.path.with_name(f"{self.path.name}.unreadable-{time.strftime('%Y%m%d-%H%M%S')}")
            self.path.rename(aside)
            log.warning(
                "checkpoint %s cannot be resumed: %s; moved to %s, the run starts afresh", self.path, err, aside
            )
            return None
        if state.get("identity") != self.identity:
            log.warning("checkpoint %s belongs to another configuration: starting afresh", self.path)
            return None
        log.info(
            "resuming from %s (epoch %d, batch %d of that epoch)",
            self.path,
            state["epoch"] + 1,
            state["batch_in_epoch"],
        )
        return state

    def save(self, state: dict) -> Path:
        atomic_write_bytes(self.path, encode_checkpoint({**state, "identity": self.identity}))
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
