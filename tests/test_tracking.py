"""A W&B failure never stops training: it becomes a warning saying what was not logged."""

import json

import pytest
from omegaconf import OmegaConf

from hamr.tracking import NullTracker, WandbTracker, make_tracker

CFG = OmegaConf.create({"backend": "wandb", "project": "hamr", "entity": None, "mode": "offline", "group": "g"})


def test_wandb_init_failure_is_a_warning(monkeypatch, tmp_path):
    import wandb

    def broken_init(**kwargs):
        raise PermissionError("wandb directory is not writable")

    monkeypatch.setattr(wandb, "init", broken_init)
    with pytest.warns(UserWarning, match="W&B: wandb.init failed .*not writable.*training goes on"):
        tracker = WandbTracker(CFG, {}, "run", [], str(tmp_path))
    assert tracker.run is None  # the run trains on without a W&B run


def test_logging_failure_mid_run_is_a_warning(tmp_path):
    tracker = WandbTracker.__new__(WandbTracker)

    class BrokenRun:
        def log(self, *args, **kwargs):
            raise ConnectionError("network unreachable")

    tracker.run = BrokenRun()
    with pytest.warns(UserWarning, match="W&B: log failed .*network unreachable"):
        tracker.log({"loss": 1.0})


def test_none_backend_and_disabled_mode_track_nothing(tmp_path):
    assert isinstance(make_tracker(OmegaConf.create({"backend": "none"}), {}, "r", [], str(tmp_path)), NullTracker)
    disabled = OmegaConf.merge(CFG, {"mode": "disabled"})
    assert type(make_tracker(disabled, {}, "r", [], str(tmp_path))) is NullTracker


@pytest.mark.slow
def test_a_run_with_an_unwritable_wandb_directory_trains_and_warns(tmp_path, data_dir):
    from tests.test_train import train_cli

    blocker = tmp_path / "not_a_folder"
    blocker.write_text("a file where W&B wants its folder")
    proc = train_cli(
        "debug=smoke",
        "model=tiny_random",
        "dataset.max_train_examples=32",
        "logger=wandb",
        f"logger.dir={blocker}/wandb",
        f"paths.results_dir={tmp_path}/results",
        "trainer.progress_bar=false",
        data_dir=data_dir,
        env={"WANDB_MODE": "offline"},
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (
        "W&B: wandb.init failed" in proc.stdout + proc.stderr
        and "training goes on without it" in proc.stdout + proc.stderr
    )
    metrics = json.loads(
        (tmp_path / "results" / "runs" / "cyclone_idai_2019" / "ce" / "seed=42" / "metrics.json").read_text()
    )
    assert len(metrics["history"]) == 1 and metrics["n_train"] == 32  # the whole run went on without W&B
    assert not (blocker.is_dir())  # nothing of W&B was written where it could not write
