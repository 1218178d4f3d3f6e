"""The SLURM path through submitit's local executor (hydra/launcher=submitit_local, the same
launcher code as hydra/launcher=slurm): a sweep of two jobs, one preempted with SIGUSR2 (a
scheduler's preemption signal) after its first epoch, requeued by submitit, resumed from its
checkpoint, and equal to an uninterrupted run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from hamr.checkpoint import decode_checkpoint
from tests.conftest import ROOT

pytestmark = pytest.mark.slow
ARGS = [
    "debug=smoke",
    "model=tiny_random",
    "dataset.max_train_examples=400",
    "trainer.epochs=3",
    "logger=none",
    "trainer.progress_bar=false",
]


def run_folder(results, seed):
    return results / "runs" / "cyclone_idai_2019" / "ce" / f"seed={seed}"


def test_a_preempted_job_is_requeued_and_resumes_to_the_uninterrupted_result(tmp_path, data_dir):
    env = {**os.environ, "HAMR_DATA_DIR": str(data_dir)}
    results, reference = tmp_path / "results", tmp_path / "reference"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "hamr.train",
            *ARGS,
            "trainer.seed=2",
            f"paths.results_dir={reference}",
            f"paths.checkpoint_dir={reference}/checkpoints",
            f"hydra.run.dir={tmp_path}/ref",
        ],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
        timeout=600,
    )
    log = open(tmp_path / "sweep.log", "w")  # noqa: SIM115 - closed below
    sweep = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "hamr.train",
            "-m",
            "hydra/launcher=submitit_local",
            *ARGS,
            "trainer.seed=1,2",
            f"paths.results_dir={results}",
            f"paths.checkpoint_dir={results}/ckpt",
            f"hydra.sweep.dir={tmp_path}/sweep",
            "hydra.launcher.timeout_min=30",
        ],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    preempted, deadline = None, time.time() + 600
    while preempted is None:  # seed 2's job, once it has a checkpoint after its first epoch
        assert sweep.poll() is None and time.time() < deadline, (tmp_path / "sweep.log").read_text()[-3000:]
        for checkpoint in (results / "ckpt").glob("*/last.pt"):
            run_dir = (
                (checkpoint.parent / "run_dir.txt").read_text().strip()
                if (checkpoint.parent / "run_dir.txt").exists()
                else ""
            )
            lock = run_folder(results, 2) / "run.lock"
            if run_dir.endswith("seed=2") and lock.exists():
                try:
                    state = decode_checkpoint(checkpoint.read_bytes())
                    holder = json.loads(lock.read_text())
                except Exception:  # noqa: BLE001 - being written right now
                    continue
                if state["epoch"] >= 1 and state["epoch"] < 3:
                    os.kill(holder["pid"], signal.SIGUSR2)
                    preempted = holder["pid"]
        time.sleep(0.05)
    assert sweep.wait(timeout=900) == 0, (tmp_path / "sweep.log").read_text()[-3000:]
    log.close()
    submitit_logs = "".join(p.read_text() for p in (tmp_path / "sweep").glob(".submitit/*/*_log.*"))
    assert "Requeued job" in submitit_logs and "stopped by signal SIGUSR2" in submitit_logs
    assert "resuming from" in submitit_logs
    for seed in (1, 2):
        assert (run_folder(results, seed) / "metrics.json").is_file()
    ours, theirs = (json.loads((run_folder(r, 2) / "metrics.json").read_text()) for r in (results, reference))
    assert ours["test"] == theirs["test"] and ours["dev"] == theirs["dev"]
    assert [h["train_loss"] for h in ours["history"]] == [h["train_loss"] for h in theirs["history"]]
    pa, pb = (np.load(run_folder(r, 2) / "predictions.npz") for r in (results, reference))
    assert all(np.array_equal(pa[k], pb[k]) for k in pa.files)
