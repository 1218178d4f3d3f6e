"""hamr.adopt: a tuning run at the chosen value becomes the grid's run, and only that one."""

import json
import os
import socket
import subprocess
import sys

import pytest
from omegaconf import OmegaConf

from hamr.adopt import adopt, grid_overrides, method_choice, plan
from hamr.lock import boot_id
from hamr.results import atomic_write_bytes, atomic_write_json
from hamr.runs import finished_run
from tests.conftest import ROOT, compose_train

CELL = ["method=baseline", "baseline_loss=ce", "dataset=cyclone_idai_2019"]


def test_the_grid_overrides_are_a_tuning_runs_config_groups_without_its_swept_values():
    assert grid_overrides("baseline_loss=focal,dataset=sst5,method=baseline,trainer.lr=0.0004") == [
        "baseline_loss=focal",
        "dataset=sst5",
        "method=baseline",
    ]
    assert grid_overrides("dataset=sst5,hamr.tau=1.5,method=hamr,seedless=x") == ["dataset=sst5", "method=hamr"]


@pytest.fixture
def study(tmp_path):
    """A smoke-profile study of CE's learning rate with two trials of seed 1: one at the lr the
    grid composes (the profile's), one at twice it. Returns (study dir, grid dir, compose, the grid
    cell's resolved config)."""
    grid_dir, study_dir = tmp_path / "grid", tmp_path / "study"

    def compose(overrides):
        return compose_train(overrides, tmp_path / "out")

    grid = OmegaConf.to_container(
        compose(["experiment=table_smoke", *CELL, "trainer.seed=1", f"paths.results_dir={grid_dir}"]), resolve=True
    )
    lr = grid["trainer"]["lr"]
    for trial_lr in (lr, 2 * lr):
        dirname = f"baseline_loss=ce,dataset=cyclone_idai_2019,method=baseline,trainer.lr={trial_lr}"
        folder = study_dir / "runs" / "cyclone_idai_2019" / "ce" / dirname / "seed=1"
        config = {**grid, "trainer": {**grid["trainer"], "lr": trial_lr}, "objective_seeds": [1, 2]}
        config["paths"] = {**grid["paths"], "results_dir": str(study_dir), "run_dir": str(folder)}
        atomic_write_bytes(folder / "predictions.npz", f"predictions at {trial_lr}".encode())
        atomic_write_json(
            folder / "metrics.json",
            {"seed": 1, "dev_macro_f1": 0.5, "test_macro_f1": 0.4, "override_dirname": dirname, "config": config},
        )
    return study_dir, grid_dir, compose, grid


def test_only_the_trial_at_the_grids_value_is_adopted_and_the_grid_then_skips_it(study):
    study_dir, grid_dir, compose, grid = study
    chosen, other = plan(study_dir, grid_dir, "table_smoke", compose=compose)  # sorted: lr, then 2 lr
    target = grid_dir.resolve() / "runs" / "cyclone_idai_2019" / "ce" / "seed=1"
    assert (chosen.reason, chosen.target) == (None, target)
    assert other.reason == "another configuration than the grid's" and other.target == target
    with pytest.raises(ValueError, match="another configuration"):
        adopt(other)
    assert finished_run(target, grid) is None  # before: the grid would train it
    adopt(chosen, root=study_dir.parent)
    assert finished_run(target, grid) is not None  # after: the grid's own skip test accepts the copy
    record = json.loads((target / "metrics.json").read_text())
    assert record["adopted_from"] == str(chosen.source.relative_to(study_dir.parent))
    assert (target / "predictions.npz").read_bytes() == (chosen.source / "predictions.npz").read_bytes()
    assert [a.reason for a in plan(study_dir, grid_dir, "table_smoke", compose=compose)] == [
        "the grid has finished this run",
        "another configuration than the grid's",
    ]


def test_a_run_a_live_job_is_training_is_left_to_it_and_a_killed_jobs_lock_is_not(study):
    study_dir, grid_dir, compose, _ = study
    target = grid_dir / "runs" / "cyclone_idai_2019" / "ce" / "seed=1"
    target.mkdir(parents=True)
    live = {"host": socket.gethostname(), "boot": boot_id(), "pid": os.getpid(), "started": "now"}
    (target / "run.lock").write_text(json.dumps(live))
    assert (
        plan(study_dir, grid_dir, "table_smoke", compose=compose)[0].reason == "a job is training this run (run.lock)"
    )
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (target / "run.lock").write_text(json.dumps({**live, "pid": dead.pid}))
    chosen = plan(study_dir, grid_dir, "table_smoke", compose=compose)[0]
    assert chosen.reason is None
    assert adopt(chosen) == chosen.target / "metrics.json"
    assert not (target / "run.lock").exists()  # the stale lock taken over, then released


def test_a_run_the_grid_finished_after_the_plan_is_kept_not_overwritten(study):
    study_dir, grid_dir, compose, _ = study
    chosen = plan(study_dir, grid_dir, "table_smoke", compose=compose)[0]
    assert chosen.reason is None
    atomic_write_json(chosen.target / "metrics.json", {"seed": 1, "dev_macro_f1": 0.7})  # a grid job, meanwhile
    assert adopt(chosen) is None
    assert json.loads((chosen.target / "metrics.json").read_text()) == {"seed": 1, "dev_macro_f1": 0.7}
    assert not (chosen.target / "predictions.npz").exists() and not (chosen.target / "run.lock").exists()


def test_a_hamr_loss_trial_is_adopted_though_its_preset_not_its_command_line_chose_the_method(tmp_path):
    """tune=hamr_loss sets method=hamr itself, so its trials' override_dirname names only the loss
    and the dataset: the method is read from the recorded config's class. Every loss of that study
    is a grid configuration, but only the losses the grid runs HAMR over are its runs."""
    grid_dir, study_dir = tmp_path / "grid", tmp_path / "study"

    def compose(overrides):
        return compose_train(overrides, tmp_path / "out")

    cell = ["method=hamr", "baseline_loss=focal", "dataset=cyclone_idai_2019", "trainer.seed=1"]
    grid = OmegaConf.to_container(
        compose(["experiment=table_smoke", *cell, f"paths.results_dir={grid_dir}"]), resolve=True
    )
    dirname = "baseline_loss=focal,dataset=cyclone_idai_2019"
    folder = study_dir / "runs" / "cyclone_idai_2019" / "hamr-focal_full" / dirname / "seed=1"
    config = {**grid, "objective_seeds": [1, 2], "paths": {**grid["paths"], "run_dir": str(folder)}}
    atomic_write_bytes(folder / "predictions.npz", b"predictions")
    record = {"seed": 1, "dev_macro_f1": 0.5, "test_macro_f1": 0.4, "override_dirname": dirname, "config": config}
    atomic_write_json(folder / "metrics.json", record)
    (adoption,) = plan(study_dir, grid_dir, "table_smoke", compose=compose, hamr_losses={"cls": ["focal"]})
    assert adoption.reason is None
    assert adoption.target == grid_dir.resolve() / "runs" / "cyclone_idai_2019" / "hamr-focal_full" / "seed=1"
    for other in ({"cls": ["dice"], "ner": ["focal"]}, {}, None):
        (adoption,) = plan(study_dir, grid_dir, "table_smoke", compose=compose, hamr_losses=other)
        assert adoption.reason == "a loss the grid does not run HAMR over", other
    assert method_choice({"method": {"_target_": "hamr.loop.BaselineMethod.from_context"}}) == "baseline"
    assert method_choice({"method": {"_target_": "elsewhere.Method"}}) is None


def test_the_script_names_a_malformed_hamr_losses_and_the_fix(tmp_path):
    (tmp_path / "study" / "runs").mkdir(parents=True)
    script = ROOT / "scripts" / "adopt_tuning_runs.py"
    args = [sys.executable, str(script), str(tmp_path / "study"), str(tmp_path / "grid"), "--experiment", "table_smoke"]
    bad = subprocess.run([*args, "--hamr-losses", "classification=dice"], capture_output=True, text=True)
    assert bad.returncode != 0
    assert "--hamr-losses 'classification=dice': write TASK=LOSSES, TASK cls or ner" in bad.stderr
    empty = subprocess.run([*args, "--hamr-losses", "ner=", "--dry-run"], capture_output=True, text=True, check=True)
    assert "0 tuning runs" in empty.stdout


def test_the_record_names_the_study_relative_to_the_grids_project_wherever_the_script_runs(study, tmp_path):
    """The converged grid ran the script from a worktree over the main checkout's folders, and the
    24 adopted records said `adopted_from: /work/main/results/tuning/...` (2026-12-05): a path of
    this machine. Relative to the project holding the grid's results, it is `results/tuning/...`."""
    study_dir, grid_dir, _, _ = study
    (tmp_path / "pyproject.toml").write_text("[project]\nname = 'elsewhere'\n")
    (elsewhere := tmp_path / "a-worktree").mkdir()
    script = ROOT / "scripts" / "adopt_tuning_runs.py"
    subprocess.run(
        [sys.executable, str(script), str(study_dir), str(grid_dir), "--experiment", "table_smoke"],
        cwd=elsewhere,
        check=True,
    )
    (record,) = [json.loads(p.read_text()) for p in grid_dir.glob("runs/*/*/seed=*/metrics.json")]
    assert record["adopted_from"].startswith("study/runs/cyclone_idai_2019/ce/")
