"""Rerun a committed run folder with today's code and compare it digit for digit with its record.

The run's recorded config (metrics.json "config", fully resolved) is trained again as it is, with
only the paths moved (data from ``data_dir``, outputs into a scratch folder) and W&B off; then the
dev and test scores, the per-epoch history and the test predictions are compared for equality.
On the same machine type, torch version and thread count a CPU run reproduces exactly.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from omegaconf import OmegaConf

EXACT_KEYS = ("dev_macro_f1", "test_macro_f1", "selected_epoch")
# The only objects a record may name for instantiation: a received metrics.json is data, and a
# `_target_` elsewhere (torch.load, os.system, ...) would run code when the record is retrained.
RECORD_TARGETS = frozenset(
    {
        "hamr.losses.CrossEntropyLoss",
        "hamr.losses.FocalLoss",
        "hamr.losses.SelfAdjustingDiceLoss",
        "hamr.losses.InverseClassFrequencyLoss",
        "hamr.loop.BaselineMethod.from_context",
        "hamr.algorithm.method.HamrMethod.from_context",
    }
)


class UntrustedRecord(ValueError):
    """A run record that names code outside the project's own losses and methods."""


def check_targets(config, where: str = "config") -> None:
    """Raise UntrustedRecord if any ``_target_`` in a recorded config is not in RECORD_TARGETS."""
    if isinstance(config, dict):
        for key, value in config.items():
            if key == "_target_" and value not in RECORD_TARGETS:
                raise UntrustedRecord(
                    f"{where}._target_={value!r} is not one of the project's losses or methods: "
                    "a record may not name other code (edit the record, or train it with "
                    "python -m hamr.train if you trust that code)"
                )
            check_targets(value, f"{where}.{key}")
    elif isinstance(config, list):
        for i, value in enumerate(config):
            check_targets(value, f"{where}[{i}]")


HISTORY_KEYS = ("train_loss", "dev_macro_f1", "dev_micro_f1")


def rerun(run_dir: Path, scratch: Path, data_dir: Path | None = None) -> Path:
    """Train the recorded config of ``run_dir`` again into ``scratch``; returns the new run folder."""
    from hamr.config import register_configs
    from hamr.train import run

    register_configs()
    path = Path(run_dir) / "metrics.json"
    recorded = json.loads(path.read_text())
    config = recorded["config"]
    try:
        check_targets(config)
    except UntrustedRecord as err:
        raise UntrustedRecord(f"{path}: {err}") from None
    name = config["dataset"]["name"]
    new_run = Path(scratch) / "runs" / name / config["method"]["name"] / f"seed={config['trainer']['seed']}"
    config["paths"].update(
        {
            "results_dir": str(scratch),
            "run_dir": str(new_run),
            "output_dir": str(scratch / "out"),
            "cache_dir": str(scratch / "cache"),
            "checkpoint_dir": str(scratch / "checkpoints"),
        }
    )
    if data_dir is not None:
        config["paths"]["data_dir"] = str(data_dir)
        config["dataset"]["dir"] = str(Path(data_dir) / name)
    # where the files would be downloaded from does not change a result (train.VOLATILE_DATASET_KEYS),
    # and older records spell it in an older schema: the rerun reads the data folder only
    config["dataset"].pop("hub", None)
    config.update({"force": True, "resume": False, "objective_seeds": []})
    config["logger"] = {**config["logger"], "backend": "none"}
    config["trainer"]["progress_bar"] = False
    run(OmegaConf.create(config))
    return new_run


def differences(recorded_dir: Path, new_dir: Path) -> list[str]:
    """What differs between two run folders' scores, histories and test predictions (empty: the same)."""
    a, b = (json.loads((Path(d) / "metrics.json").read_text()) for d in (recorded_dir, new_dir))
    found = [f"{k}: {a[k]!r} != {b[k]!r}" for k in EXACT_KEYS if a[k] != b[k]]
    if len(a["history"]) != len(b["history"]):
        found.append(f"history: {len(a['history'])} epochs != {len(b['history'])}")
    for ra, rb in zip(a["history"], b["history"]):
        found += [f"epoch {ra['epoch']} {k}: {ra[k]!r} != {rb[k]!r}" for k in HISTORY_KEYS if ra.get(k) != rb.get(k)]
    pa, pb = (np.load(Path(d) / "predictions.npz") for d in (recorded_dir, new_dir))
    found += [f"predictions {k} differ" for k in pa.files if k not in pb.files or not np.array_equal(pa[k], pb[k])]
    return found
