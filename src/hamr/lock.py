"""A lock on a run folder, so that two sweeps (or a requeued job and its predecessor) never train
the same configuration at once.

The rule: a job that finds the folder locked by a live holder waits (polling) until the lock is
released, then looks again: the holder's metrics.json of the same configuration is reused, otherwise
(the holder failed or was stopped) the job takes the lock and trains. A lock is stale, and taken over
with a warning, when its holder is a dead process on this host, or when its heartbeat (the lock
file's mtime, refreshed after every epoch) is older than ``stale_after`` seconds (a holder on
another host that was killed without releasing it).
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
from pathlib import Path

log = logging.getLogger(__name__)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, another user's
        return True
    return True


class RunLock:
    """``run.lock`` in a run folder: {"host", "pid", "started"} of the holder, created atomically."""

    def __init__(self, folder: Path, stale_after: float = 3600.0, poll: float | None = None):
        self.path = Path(folder) / "run.lock"
        # seconds between looks at a held lock; HAMR_LOCK_POLL overrides the default of 10
        self.stale_after, self.poll = stale_after, poll if poll is not None else float(os.environ.get("HAMR_LOCK_POLL", 10))
        self.held = False

    def holder(self) -> dict | None:
        try:
            return json.loads(self.path.read_text())
        except (FileNotFoundError, json.JSONDecodeError):  # released, or being written right now
            return None

    def _stale(self, holder: dict) -> str | None:
        """Why the lock is stale, or None while its holder may still be working."""
        if holder.get("host") == socket.gethostname() and not _alive(int(holder.get("pid", -1))):
            return f"its process {holder.get('pid')} on this host is gone"
        try:
            age = time.time() - self.path.stat().st_mtime
        except FileNotFoundError:
            return None
        return f"no heartbeat for {age:.0f} s" if age > self.stale_after else None

    def _create(self) -> bool:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            return False
        with os.fdopen(fd, "w") as f:
            json.dump({"host": socket.gethostname(), "pid": os.getpid(),
                       "started": time.strftime("%Y-%m-%d %H:%M:%S %Z")}, f)
        self.held = True
        return True

    def acquire(self) -> bool:
        """Take the lock; returns True at once if it was free, False if this job had to wait for
        another holder first (then the caller should look for that holder's result)."""
        waited = False
        while not self._create():
            holder = self.holder()
            if holder is None:
                continue
            reason = self._stale(holder)
            if reason:
                log.warning("%s: taking over the lock of %s:%s (started %s): %s", self.path.parent,
                            holder.get("host"), holder.get("pid"), holder.get("started"), reason)
                self.path.unlink(missing_ok=True)
                continue
            if not waited:
                log.warning("%s is being trained by %s:%s (since %s): waiting for it", self.path.parent,
                            holder.get("host"), holder.get("pid"), holder.get("started"))
            waited = True
            time.sleep(self.poll)
        return not waited

    def heartbeat(self) -> None:
        if self.held:
            os.utime(self.path)

    def release(self) -> None:
        if self.held:
            self.path.unlink(missing_ok=True)
            self.held = False
