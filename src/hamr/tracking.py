"""Experiment tracking: W&B when configured, and never a reason for training to fail."""

from __future__ import annotations

import logging
import os
import warnings

log = logging.getLogger(__name__)


class NullTracker:
    def log(self, metrics: dict, step: int | None = None) -> None:
        pass

    def summary(self, metrics: dict) -> None:
        pass

    def table(self, key: str, columns: list[str], rows: list[list]) -> None:
        pass

    def finish_run(self, metrics: dict) -> None:
        """A finished run's summary scores and per-class F1 table (from its metrics.json record), then finish."""
        self.summary({k: metrics[k] for k in ("dev_macro_f1", "test_macro_f1", "selected_epoch", "train_seconds")})
        dev, test = metrics["dev"], metrics["test"]
        self.table(
            "per_class_f1",
            ["class", "dev_f1", "test_f1", "test_support"],
            [[c, dev["per_class_f1"].get(c, 0.0), f1, test["support"][c]] for c, f1 in test["per_class_f1"].items()],
        )
        self.finish()

    def finish(self) -> None:
        pass


class WandbTracker(NullTracker):
    """One W&B run per training job. Every call is guarded: a W&B failure (no account, no
    network, an unwritable folder) becomes a warning saying what was not logged."""

    def __init__(self, cfg, config: dict, name: str, tags: list[str], directory: str):
        self.run = None
        try:
            import wandb

            os.makedirs(directory, exist_ok=True)
            self.run = wandb.init(
                project=cfg.project,
                entity=cfg.entity,
                mode=os.environ.get("WANDB_MODE", cfg.mode),
                group=cfg.group,
                name=name,
                tags=tags,
                config=config,
                dir=directory,
                reinit="finish_previous",
            )
        except Exception as err:  # noqa: BLE001 - tracking must never stop training
            self._warn("wandb.init", err)

    def _warn(self, what: str, err: Exception) -> None:
        message = f"W&B: {what} failed ({type(err).__name__}: {err}); training goes on without it"
        warnings.warn(message, stacklevel=3)
        log.warning(message)

    def log(self, metrics, step=None):
        if self.run is not None:
            try:
                self.run.log(metrics, step=step)
            except Exception as err:  # noqa: BLE001
                self._warn("log", err)

    def summary(self, metrics):
        if self.run is not None:
            try:
                self.run.summary.update(metrics)
            except Exception as err:  # noqa: BLE001
                self._warn("summary", err)

    def table(self, key, columns, rows):
        if self.run is not None:
            try:
                import wandb

                self.run.log({key: wandb.Table(columns=columns, data=rows)})
            except Exception as err:  # noqa: BLE001
                self._warn(f"table {key}", err)

    def finish(self):
        if self.run is not None:
            try:
                self.run.finish()
            except Exception as err:  # noqa: BLE001
                self._warn("finish", err)
            self.run = None


def make_tracker(cfg, config: dict, name: str, tags: list[str], directory: str):
    if cfg.backend == "wandb" and cfg.mode != "disabled":
        return WandbTracker(cfg, config, name, tags, directory)
    return NullTracker()
