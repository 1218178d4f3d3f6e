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
    proc = train_cli(
        "debug=smoke",
        "model=tiny_random",
        "method=hamr",
        "dataset.max_train_examples=96",
        "trainer.epochs=2",
        "logger=none",
        f"paths.results_dir={tmp_path / 'results'}",
        f"paths.cache_dir={tmp_path / 'cache'}",
        f"hydra.run.dir={tmp_path / 'out'}",
        data_dir=data_dir,
    )
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


@pytest.mark.parametrize(
    "section,target", [("baseline_loss", "torch.load"), ("method", "os.system"), ("model", "builtins.exec")]
)
def test_a_record_naming_other_code_is_refused_before_anything_runs(tmp_path, section, target):
    """A received metrics.json whose config names code (here with a payload that would write a
    marker) is refused with one line naming the file and the key; nothing is instantiated."""
    record = json.loads((ROOT / "results/table_cpu/runs/mit_restaurant/ce/seed=1/metrics.json").read_text())
    marker = tmp_path / "marker"
    record["config"][section] = {
        **record["config"].get(section, {}),
        "_target_": target,
        "_args_": [f"echo ran > {marker}"],
    }
    folder = tmp_path / "received"
    folder.mkdir()
    (folder / "metrics.json").write_text(json.dumps(record))
    proc = subprocess.run(
        [sys.executable, "scripts/check_reproduce.py", str(folder)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 1 and not marker.exists()
    assert proc.stderr.strip().splitlines() == [
        f"error: {folder / 'metrics.json'}: config.{section}._target_='{target}' is not one of the project's losses or "
        "methods: a record may not name other code (edit the record, or train it with python -m hamr.train if you "
        "trust that code)"
    ]
