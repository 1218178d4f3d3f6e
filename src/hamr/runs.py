"""What identifies a run and what it records: which parts of a config decide its result (so that a
finished run is reused and a checkpoint resumed only for the same configuration), the record a run
writes (``metrics.json``) or leaves when it fails (``error.json``), and the reader of run folders
that the tables and summaries share."""

from __future__ import annotations

import json
import logging
import resource
import time
import traceback
import warnings
from pathlib import Path

import pandas as pd
import torch
from omegaconf import DictConfig, OmegaConf

from hamr.config import is_baseline_method
from hamr.metrics import collapsed, zero_f1_classes
from hamr.results import atomic_write_json

log = logging.getLogger(__name__)

# Keys that do not change a run's result: a finished run whose config differs only here is reused.
# `tuned` only holds values to pick from; the values picked (trainer.lr, ...) are compared.
VOLATILE_KEYS = ("paths", "logger", "force", "resume", "experiment_name", "tags", "objective_seeds", "tuned")
VOLATILE_TRAINER_KEYS = ("progress_bar", "num_threads", "device", "eval_batch_size")
# Where the dataset's files live (HAMR_DATA_DIR, absolute or relative, or the Hub repository they
# would be fetched from) is not what they hold; the run folder is keyed by the dataset's name already.
VOLATILE_DATASET_KEYS = ("dir", "hub")
# Options added after runs were recorded, with the value that reproduces the code before them: a
# recorded config without the key is read as having that value.
LATER_KEYS = {
    ("hamr", "weight_normalisation"): "detached_mean",
    ("trainer", "cuda_graphs"): False,
    ("trainer", "graph_lengths"): None,
}
# Sections a baseline run never reads: a change of HAMR's defaults does not make it another configuration.
BASELINE_UNUSED_KEYS = ("hamr", "ablation")


def result_relevant(config: dict) -> dict:
    """The parts of a resolved config that decide the result (for resuming sweeps)."""
    kept = {k: v for k, v in config.items() if k not in VOLATILE_KEYS}
    if is_baseline_method(kept.get("method", {})):
        kept = {k: v for k, v in kept.items() if k not in BASELINE_UNUSED_KEYS}
    for (section, key), before in LATER_KEYS.items():
        if isinstance(kept.get(section), dict) and key not in kept[section]:
            kept[section] = {**kept[section], key: before}
    kept["trainer"] = {k: v for k, v in kept.get("trainer", {}).items() if k not in VOLATILE_TRAINER_KEYS}
    kept["dataset"] = {k: v for k, v in kept.get("dataset", {}).items() if k not in VOLATILE_DATASET_KEYS}
    return kept


def read_metrics(path: Path) -> dict | None:
    """A run's metrics.json as a dict, or None when it is not one (cut short, not JSON, not an object
    with the scores): the callers name the file and go on."""
    try:
        metrics = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    needed = ("dev_macro_f1", "test_macro_f1")
    return metrics if isinstance(metrics, dict) and all(k in metrics for k in needed) else None


def run_collapsed(metrics: dict) -> bool:
    """:func:`hamr.metrics.collapsed` of a record's dev scores (False for a record without per-class
    dev scores, which no training run writes)."""
    dev = metrics.get("dev")
    return isinstance(dev, dict) and "per_class_f1" in dev and collapsed(dev)


def dev_curve(metrics: dict) -> list[float]:
    """A record's dev Macro-F1 x100 per epoch (``history``), cut at the first epoch without a dev
    score (a record from before dev was scored every epoch)."""
    curve = []
    for epoch in metrics.get("history", []):
        if "dev_macro_f1" not in epoch:
            break
        curve.append(100 * epoch["dev_macro_f1"])
    return curve


def last_epoch_dev_gain(metrics: dict) -> float | None:
    """The last epoch's dev Macro-F1 minus the one before's, x100 (near 0: the run had stopped
    improving); None when fewer than two epochs have a dev score or the last one has none."""
    curve = dev_curve(metrics)
    if len(curve) < 2 or len(curve) < len(metrics.get("history", [])):
        return None
    return curve[-1] - curve[-2]


def finished_run(run_dir: Path, resolved: dict) -> dict | None:
    """The metrics of a finished run of the same configuration in ``run_dir``, if there is one (an
    unreadable metrics.json is named in a warning and counts as no finished run: it is replaced)."""
    path = run_dir / "metrics.json"
    if not path.is_file():
        return None
    metrics = read_metrics(path)
    if metrics is None:
        log.warning(
            "%s is not a readable metrics.json (cut short or edited): the run is trained again and the file replaced",
            path,
        )
        return None
    if result_relevant(metrics.get("config", {})) != result_relevant(resolved):
        log.warning("%s holds a run of another configuration: it is rerun and replaced", path)
        return None
    return metrics


def run_record(
    settings,
    resolved: dict,
    task_data,
    result,
    dev_scores: dict,
    test_scores: dict,
    *,
    loss,
    method,
    step_fn,
    device: torch.device,
    commit: str | None,
    started: float,
    override_dirname: str | None,
) -> dict:
    """What metrics.json holds: the scores of the checkpoint chosen on dev, whether the run
    collapsed, the per-epoch history, costs, where and with what it ran, and the resolved config."""
    ds, tr = settings.dataset, settings.trainer
    return {
        "dataset": ds.name,
        "method": settings.method.name,
        "model": settings.model.name,
        "seed": tr.seed,
        "loss": type(loss).__name__,  # the loss object the run built (HAMR: the per-example loss it weights)
        "dev_macro_f1": dev_scores["macro_f1"],
        "test_macro_f1": test_scores["macro_f1"],
        # the run did not learn (hamr.metrics.collapsed, from dev alone): counted in the tables, rejected by tuning
        "collapsed": collapsed(dev_scores),
        "dev_zero_f1_classes": zero_f1_classes(dev_scores),
        "selected_epoch": result.best_epoch if tr.select == "best" else tr.epochs,
        "select": tr.select,
        "train_class_counts": task_data.class_counts("train"),
        "n_train": len(task_data.train),
        "label_names": task_data.label_names,
        "dev": dev_scores,
        "test": test_scores,
        "history": result.history,
        "train_seconds": result.train_seconds,
        "steps": result.steps,
        "skipped_steps": result.skipped_steps,
        "skipped_meta_steps": getattr(method, "skipped_meta_steps", 0),
        # trainer.cuda_graphs: how many steps replayed a graph and how many ran eagerly (warm-up, odd shapes)
        "cuda_graph_steps": dict(step_fn.steps_by_kind) if tr.cuda_graphs else None,
        "train_examples_per_second": result.train_examples / max(result.train_seconds, 1e-9),
        "wall_seconds": time.time() - started,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "peak_cuda_mb": torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None,
        "device": str(device),
        "torch": torch.__version__,
        "git_commit": commit,
        "finished_at": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "config": resolved,
        # the command line's overrides as Hydra names output folders (in full: a folder name may be shortened)
        "override_dirname": override_dirname,
    }


def record_failure(cfg: DictConfig, err: Exception) -> Path | None:
    """Write ``error.json`` (config, exception, traceback tail) into the run folder, so that a
    sweep's table shows the cell as failed; metrics.json is never written for a failed run."""
    try:
        resolved = OmegaConf.to_container(cfg, resolve=True)
        path = Path(resolved["paths"]["run_dir"]) / "error.json"
        atomic_write_json(
            path,
            {
                "exception": f"{type(err).__name__}: {err}",
                "traceback": traceback.format_exc().splitlines()[-30:],
                "failed_at": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
                "config": resolved,
            },
        )
        return path
    except Exception:  # noqa: BLE001 - never hide the original error
        return None


def load_runs(results_dir: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The runs under ``<results_dir>/runs/<dataset>/<method>/seed=<s>/``.

    Returns (finished, failed): one row per metrics.json with columns dataset, method, seed, dev
    and test (Macro-F1 in [0, 1]), collapsed (:func:`hamr.metrics.collapsed` of its dev scores, so
    runs recorded before the rule have it too), steps, folder and metrics (the parsed file); and one
    row per run that left error.json but no metrics.json, or an unreadable metrics.json (dataset,
    method, seed).
    """
    rows, failed = [], []
    for folder in sorted(p for p in Path(results_dir).glob("runs/*/*/seed=*") if p.is_dir()):
        dataset, method, seed = folder.parts[-3], folder.parts[-2], int(folder.name.split("=")[1])
        if (folder / "metrics.json").is_file():
            m = read_metrics(folder / "metrics.json")
            if m is None:
                warnings.warn(
                    f"{folder / 'metrics.json'} is not a readable metrics.json: counted as failed "
                    "(rerun that configuration, or delete the file)",
                    stacklevel=2,
                )
                failed.append({"dataset": dataset, "method": method, "seed": seed})
                continue
            rows.append(
                {
                    "dataset": dataset,
                    "method": method,
                    "seed": seed,
                    "dev": m["dev_macro_f1"],
                    "test": m["test_macro_f1"],
                    "collapsed": run_collapsed(m),
                    "steps": m.get("steps"),
                    "folder": folder,
                    "metrics": m,
                }
            )
        elif (folder / "error.json").is_file():
            failed.append({"dataset": dataset, "method": method, "seed": seed})
    columns = ["dataset", "method", "seed", "dev", "test", "collapsed", "steps", "folder", "metrics"]
    return pd.DataFrame(rows, columns=columns), pd.DataFrame(failed, columns=["dataset", "method", "seed"])
