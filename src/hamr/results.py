"""Write a run's results atomically: a run folder is complete exactly when metrics.json exists.
(Reading run folders back: :mod:`hamr.runs`.)"""

from __future__ import annotations

import io
import json
import os
import subprocess
import tempfile
from pathlib import Path

import numpy as np


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write to a temporary file in the same folder, then rename (atomic on POSIX). The file gets
    the permissions a plain open() would give (mkstemp's are 0600: unreadable to a group sharing
    a results folder)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: Path, obj) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n").encode())


def write_run(run_dir: Path, metrics: dict, predictions: dict[str, np.ndarray]) -> Path:
    """``predictions.npz`` (compressed label ids) first, ``metrics.json`` last."""
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **predictions)
    atomic_write_bytes(run_dir / "predictions.npz", buffer.getvalue())
    atomic_write_json(run_dir / "metrics.json", metrics)
    return run_dir / "metrics.json"


def git_commit(cwd: Path | None = None) -> str | None:
    """The checked-out commit (with ``-dirty`` when the tree has changes), or None outside git."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=cwd,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        return commit + ("-dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return None
