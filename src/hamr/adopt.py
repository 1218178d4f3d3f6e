"""A tuning study's runs reused as the grid's runs of the same configuration.

A tuning trial at the value the profile's ``tuned`` block chose *is* a grid cell's run of the
same seed: same data, model, loss, method, steps and seed, so the grid command would train it
again to the same digits (``make check-reproduce``). This module finds those runs and copies each
into the grid folder that the grid command would write, so that the grid skips them. "The same
configuration" is the one test by which a sweep skips a finished run
(:func:`hamr.runs.result_relevant`), so a run copied here is one the grid would have skipped
anyway, and a wrong copy is retrained and replaced.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from pathlib import Path

from omegaconf import OmegaConf

from hamr.config import CONF_DIR, compose_train
from hamr.lock import RunLock
from hamr.results import atomic_write_bytes, atomic_write_json
from hamr.runs import read_metrics, result_relevant
from hamr.tuning import parse_overrides

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Adoption:
    """One tuning run and the grid run folder it is copied to (``reason`` why not, if it is not)."""

    source: Path  # the tuning run's folder (holding metrics.json and predictions.npz)
    target: Path  # the grid run's folder, as the grid command names it
    reason: str | None = None  # None: copied (or to be copied)


def grid_overrides(override_dirname: str, conf_dir: Path = CONF_DIR) -> list[str]:
    """The config-group choices of a tuning run's ``override_dirname``: ``baseline_loss=ce,
    dataset=sst5,method=baseline,trainer.lr=1e-4`` -> ``["baseline_loss=ce", "dataset=sst5",
    "method=baseline"]``. The swept values (dotted keys) are dropped: the grid reads its values from
    the profile's ``tuned`` block, and only the trial at the chosen value then matches."""
    return [f"{k}={v}" for k, v in parse_overrides(override_dirname).items() if (Path(conf_dir) / k).is_dir()]


def method_choice(config: dict, conf_dir: Path = CONF_DIR) -> str | None:
    """The ``method`` option (``conf/method/<option>.yaml``) whose class a recorded run's method is.
    A tune preset can choose the method itself (``tune=hamr_loss`` sets ``method=hamr``), and then
    the run's ``override_dirname`` does not name it. None: no option builds that class."""
    target = config.get("method", {}).get("_target_")
    for option in sorted((Path(conf_dir) / "method").glob("*.yaml")):
        if target is not None and OmegaConf.load(option).get("_target_") == target:
            return option.stem
    return None


def plan(
    study_dir: Path,
    results_dir: Path,
    experiment: str,
    compose: Callable[[list[str]], object] = compose_train,
    hamr_losses: Mapping[str, Collection[str]] | None = None,
) -> list[Adoption]:
    """Every finished run of the study at ``study_dir`` (``runs/<dataset>/<method>/<trial>/seed=<s>``),
    with the folder of the grid run ``experiment=<experiment>`` would train for its config groups
    and seed under ``results_dir``, and why it is not copied there: a configuration the grid does not
    run (another value than the chosen one), or a target that is already finished or being trained
    (a live holder of its run.lock; a stale lock, of a killed job, does not stop the copy).
    ``hamr_losses`` maps a task (``cls``, ``ner``) to the losses the grid runs HAMR over (the
    Makefile's HAMR_LOSSES_CLASSIFICATION and HAMR_LOSSES_NER): every loss of a ``tune=hamr_loss``
    study has the configuration of a grid run, but the grid runs only the chosen one."""
    adoptions = []
    for path in sorted(Path(study_dir).glob("runs/*/*/*/seed=*/metrics.json")):
        recorded = read_metrics(path)
        if recorded is None or "config" not in recorded:
            log.warning("%s is not a finished run's record: not adopted", path)
            continue
        # records before override_dirname was kept: the trial folder's name (short_dirname may have
        # shortened it; a name that lost its groups composes another configuration, not a wrong copy)
        dirname = recorded.get("override_dirname") or path.parent.parent.name
        groups = grid_overrides(dirname)
        if not any(o.startswith("method=") for o in groups) and (method := method_choice(recorded["config"])):
            groups.append(f"method={method}")  # chosen by the study's tune preset, not on its command line
        overrides = groups + [
            f"experiment={experiment}",
            f"trainer.seed={recorded['seed']}",
            f"paths.results_dir={Path(results_dir).resolve()}",
        ]
        grid = OmegaConf.to_container(compose(overrides), resolve=True)
        target = Path(grid["paths"]["run_dir"])
        reason = None
        chosen = dict(group.split("=", 1) for group in groups)
        hamr_over = chosen.get("baseline_loss", "ce") if chosen.get("method") == "hamr" else "ce"
        if hamr_over != "ce" and hamr_over not in (hamr_losses or {}).get(grid["dataset"]["task"], ()):
            reason = "a loss the grid does not run HAMR over"
        elif result_relevant(recorded["config"]) != result_relevant(grid):
            reason = "another configuration than the grid's"
        elif (target / "metrics.json").is_file():
            reason = "the grid has finished this run"
        elif RunLock(target).live_holder() is not None:
            reason = "a job is training this run (run.lock)"
        adoptions.append(Adoption(path.parent, target, reason))
    return adoptions


def project_root(path: Path) -> Path | None:
    """The nearest folder at or above ``path`` that holds a ``pyproject.toml`` (the project a results
    folder belongs to), or None: ``adopted_from`` is written relative to it, so a committed record
    names ``results/tuning/...`` and not the machine's checkout path."""
    path = Path(path).resolve()
    return next((p for p in (path, *path.parents) if (p / "pyproject.toml").is_file()), None)


def adopt(adoption: Adoption, root: Path | None = None) -> Path | None:
    """Copy one planned run: ``predictions.npz`` first, ``metrics.json`` last (so the folder is
    finished exactly when it is complete), the record unchanged but for ``adopted_from``, the tuning
    folder it came from (relative to ``root`` where it lies under it). The copy holds the target's
    RunLock, as a training job does, and looks for a finished run again under it: a grid job that
    started after :func:`plan` is waited for, and its result kept. Returns the new metrics.json, or
    None where the grid finished the run meanwhile."""
    if adoption.reason is not None:
        raise ValueError(f"{adoption.source} is not adopted: {adoption.reason}")
    source = adoption.source.resolve()
    if root is not None and source.is_relative_to(Path(root).resolve()):
        source = source.relative_to(Path(root).resolve())
    lock = RunLock(adoption.target)
    lock.acquire()
    try:
        if (adoption.target / "metrics.json").is_file():
            log.info("%s was finished by the grid meanwhile: not adopted", adoption.target)
            return None
        metrics = json.loads((adoption.source / "metrics.json").read_text())
        atomic_write_bytes(adoption.target / "predictions.npz", (adoption.source / "predictions.npz").read_bytes())
        atomic_write_json(adoption.target / "metrics.json", {**metrics, "adopted_from": str(source)})
        return adoption.target / "metrics.json"
    finally:
        lock.release()
