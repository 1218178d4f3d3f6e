"""A lock on a run folder, so that two sweeps (or a requeued job and its predecessor) never train
the same configuration at once.

The rule: a job that finds the folder locked by a live holder waits (polling) until the lock is
released, then looks again: the holder's metrics.json of the same configuration is reused, otherwise
(the holder failed or was stopped) the job takes the lock and trains. A lock is stale, and taken over
with a warning, when its holder is a dead process on this host or ran on this host before it last
booted (after a restart the holder's pid may belong to another, live process), or when its
heartbeat (the lock file's mtime, refreshed after every epoch) is older than ``stale_after`` seconds
(a holder on another host that was killed without releasing it). A lock file that cannot be read (empty or cut
short: its writer died between creating and filling it, which the atomic creation below prevents
for this code, or the disk was full) is stale once it is ``unreadable_stale_after`` seconds old;
until then the job polls it too, never spinning.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
from pathlib import Path

log = logging.getLogger(__name__)


BOOT_ID = Path("/proc/sys/kernel/random/boot_id")  # Linux: a new random id at every boot


def boot_id() -> str | None:
    """This host's boot id, or None where the system has none (not Linux)."""
    try:
        return BOOT_ID.read_text().strip() or None
    except OSError:
        return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, another user's
        return True
    return True


class RunLock:
    """``run.lock`` in a run folder: {"host", "boot", "pid", "started"} of the holder, created atomically."""

    def __init__(
        self, folder: Path, stale_after: float = 3600.0, poll: float | None = None, unreadable_stale_after: float = 60.0
    ):
        self.path = Path(folder) / "run.lock"
        # seconds between looks at a held lock; HAMR_LOCK_POLL overrides the default of 10
        self.stale_after, self.poll = (
            stale_after,
            poll if poll is not None else float(os.environ.get("HAMR_LOCK_POLL", 10)),
        )
        self.unreadable_stale_after = unreadable_stale_after
        self.held = False

    def holder(self) -> dict | None:
        """The lock's content, or None: released, or unreadable (being written, cut short, or not
        this code's {"host", "pid", ...} object)."""
        try:
            content = json.loads(self.path.read_text())
        except (FileNotFoundError, json.JSONDecodeError, UnicodeDecodeError):
            return None
        return content if isinstance(content, dict) else None

    def _stale(self, holder: dict) -> str | None:
        """Why the lock is stale, or None while its holder may still be working."""
        if holder.get("host") == socket.gethostname():
            if holder.get("boot") and boot_id() and holder["boot"] != boot_id():
                return "this host has restarted since"
            if not _alive(int(holder.get("pid", -1))):
                return f"its process {holder.get('pid')} on this host is gone"
        try:
            age = time.time() - self.path.stat().st_mtime
        except FileNotFoundError:
            return None
        return f"no heartbeat for {age:.0f} s" if age > self.stale_after else None

    def live_holder(self) -> dict | None:
        """The holder of the lock while it may still be working (an unreadable lock file younger than
        ``unreadable_stale_after`` counts as held, as :meth:`acquire` treats it), else None: free or stale."""
        holder = self.holder()
        if holder is None:
            age = self._unreadable_age()
            return {} if age is not None and age <= self.unreadable_stale_after else None
        return None if self._stale(holder) else holder

    def _create(self) -> bool:
        """Create the lock with its content in one step: the content goes to a private file that is
        then hard-linked to ``run.lock`` (fails if that exists), so no reader ever sees it half-written."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.{socket.gethostname()}.{os.getpid()}.tmp")
        tmp.write_text(
            json.dumps(
                {
                    "host": socket.gethostname(),
                    "boot": boot_id(),
                    "pid": os.getpid(),
                    "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
                }
            )
        )
        try:
            os.link(tmp, self.path)
        except FileExistsError:
            return False
        finally:
            tmp.unlink(missing_ok=True)
        self.held = True
        return True

    def _unreadable_age(self) -> float | None:
        try:
            return time.time() - self.path.stat().st_mtime
        except FileNotFoundError:
            return None

    def acquire(self) -> bool:
        """Take the lock; returns True at once if it was free, False if this job had to wait for
        another holder first (then the caller should look for that holder's result)."""
        waited = False
        while not self._create():
            holder = self.holder()
            if holder is None:  # released just now (take it), or unreadable (stale after a minute)
                age = self._unreadable_age()
                if age is None:
                    continue
                if age > self.unreadable_stale_after:
                    log.warning(
                        "%s: taking over an unreadable lock file %s (%.0f s old, empty or cut short)",
                        self.path.parent,
                        self.path,
                        age,
                    )
                    self.path.unlink(missing_ok=True)
                    continue
                time.sleep(min(self.poll, 1.0))
                continue
            reason = self._stale(holder)
            if reason:
                log.warning(
                    "%s: taking over the lock of %s:%s (started %s): %s",
                    self.path.parent,
                    holder.get("host"),
                    holder.get("pid"),
                    holder.get("started"),
                    reason,
                )
                self.path.unlink(missing_ok=True)
                continue
            if not waited:
                log.warning(
                    "%s is being trained by %s:%s (since %s): waiting for it",
                    self.path.parent,
                    holder.get("host"),
                    holder.get("pid"),
                    holder.get("started"),
                )
            waited = True
            time.sleep(self.poll)
        return not waited

    def heartbeat(self) -> None:
        if self.held:
            os.utime(self.path)

    def release(self) -> None:
        """Remove the lock; never raises (it runs in a ``finally``, where it would hide the real error)."""
        if self.held:
            try:
                self.path.unlink(missing_ok=True)
            except OSError as err:
                log.warning("could not remove %s (%s): remove it by hand if no job holds it", self.path, err)
            self.held = False
