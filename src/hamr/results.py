"""Write a run's results atomically: a run folder is complete exactly when metrics.json exists."""

from __future__ import annotations

import io
import json
import os
import subprocess
import tempfile
import warnings
from pathlib import Path

import numpy as np
import pandas as pd


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
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True,
                                text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=cwd,
                               capture_output=True, text=True, check=True).stdout.strip()
        return commit + ("-dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return None


def read_metrics(path: Path) -> dict | None:
    """A run's metrics.json as a dict, or None when it is not one (cut short, not JSON, not an object
    with the scores): the callers name the file and go on."""
    try:
        metrics = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    needed = ("dev_macro_f1", "test_macro_f1", "dev")
    return metrics if isinstance(metrics, dict) and all(k in metrics for k in needed) else None


def load_runs(results_dir: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The runs under ``<results_dir>/runs/<dataset>/<method>/seed=<s>/``.

    Returns (finished, failed): one row per metrics.json with columns dataset, method, seed, dev
    and test (Macro-F1 in [0, 1]), collapsed (:func:`hamr.metrics.collapsed` of its dev scores, so
    runs recorded before the rule have it too), steps, folder and metrics (the parsed file); and one
    row per run that left error.json but no metrics.json (dataset, method, seed).
    """
    from hamr.metrics import collapsed

    rows, failed = [], []
    for folder in sorted(p for p in Path(results_dir).glob("runs/*/*/seed=*") if p.is_dir()):
        dataset, method, seed = folder.parts[-3], folder.parts[-2], int(folder.name.split("=")[1])
        if (folder / "metrics.json").is_file():
            m = read_metrics(folder / "metrics.json")
            if m is None:
                warnings.warn(f"{folder / 'metrics.json'} is not a readable metrics.json: counted as failed "
                              "(rerun that configuration, or delete the file)", stacklevel=2)
                failed.append({"dataset": dataset, "method": method, "seed": seed})
                continue
            rows.append({"dataset": dataset, "method": method, "seed": seed, "dev": m["dev_macro_f1"],
                         "test": m["test_macro_f1"], "collapsed": collapsed(m["dev"]), "steps": m.get("steps"),
                         "folder": folder, "metrics": m})
        elif (folder / "error.json").is_file():
            failed.append({"dataset": dataset, "method": method, "seed": seed})
    columns = ["dataset", "method", "seed", "dev", "test", "collapsed", "steps", "folder", "metrics"]
    return pd.DataFrame(rows, columns=columns), pd.DataFrame(failed, columns=["dataset", "method", "seed"])
