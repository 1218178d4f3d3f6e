"""How a job reports what stopped it: a user error as one line (a single run) or in its run folder's
error.json (a sweep job, which Hydra counts and goes on from), a bug with its traceback, a stop
signal as the exit status of a terminated process after the scheduler's own handler has run."""

from __future__ import annotations

import logging
import os
import signal
from collections.abc import Callable

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig
from omegaconf.errors import MissingMandatoryValue

from hamr.checkpoint import Stopped
from hamr.config import ConfigError
from hamr.data.records import DataError
from hamr.loop import NumericalError
from hamr.runs import record_failure

log = logging.getLogger("hamr.train")


def reported(run: Callable[[DictConfig], dict], cfg: DictConfig) -> dict:
    """``run(cfg)`` with its failures reported as the module docstring says."""
    multirun = HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN
    try:
        try:
            return run(cfg)
        except MissingMandatoryValue as err:  # e.g. a dataset YAML without name:
            base = (
                " (dataset=_cls and _ner are the bases of dataset files, not datasets)"
                if err.full_key == "dataset.name"
                else ""
            )
            raise ConfigError(
                f"config: {err.full_key} is not set; set it in its YAML file or on the command line "
                f"({err.full_key}=...){base}"
            ) from None
    except Stopped as stop:  # the checkpoint is saved; exit as a terminated process does
        log.warning("%s", stop)
        previous = signal.getsignal(stop.signum)
        if stop.signum != signal.SIGINT and callable(previous):
            previous(stop.signum, None)  # a scheduler's handler (submitit: requeue the job, which resumes)
        raise SystemExit(128 + stop.signum) from None
    except (ConfigError, DataError, NumericalError) as err:  # the user's input: one line, no traceback
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise  # the traceback, on request
        if not multirun:
            raise SystemExit(f"error: {err}") from None
        path = record_failure(cfg, err)
        log.error("job failed: %s (details: %s)", err, path)
        raise RuntimeError(f"error: {err}") from None
    except Exception as err:  # a bug: its traceback; a sweep job also leaves error.json for the tables
        path = record_failure(cfg, err) if multirun else None
        log.error("job failed: %s: %s%s", type(err).__name__, err, f" (details: {path})" if path else "")
        raise
