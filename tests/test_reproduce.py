"""hamr.reproduce: a run folder trained again from its recorded config is the same run."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import ROOT
from tests.test_train import train_cli

pytestmark = pytest.mark.slow  # every test here trains real jobs


def test_a_run_retrained_from_its_record_is_equal_to_the_digit_and_a_changed_one_is_not(tmp_path, data_dir):
    proc = train_cli("debug=smoke", "model=tiny_random", "method=hamr", "dataset.max_train_examples=96",
                     "trainer.epochs=2", "logger=none", f"paths.results_dir={tmp_path / 'results'}",
                     f"paths.cache_dir={tmp_path / 'cache'}", f"hydra.run.dir={tmp_path / 'out'}", data_dir=data_dir)
    assert proc.returncode == 0, proc.stderr[-2000:]
    run_dir = tmp_path / "results" / "runs" / "cyclone_idai_2019" / "hamr_full" / "seed=42"
    check = [sys.executable, str(ROOT / "scripts" / "check_reproduce.py"), str(run_dir), "--data-dir", str(data_dir)]
    same = subprocess.run(check, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert same.returncode == 0, same.stdout + same.stderr[-2000:]
    assert "reproduced digit for digit" in same.stdout
    metrics = json.loads((run_dir / "metrics.json").read_text())
    metrics["history"][1]["train_loss"] += 1e-12  # a record that today's code does not give
    (run_dir / "metrics.json").write_text(json.dumps(metrics))
    changed = subprocess.run(check, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert changed.returncode == 1 and "NOT reproduced" in changed.stdout and "epoch 2 train_loss" in changed.stdout
