"""`make reproduce-table PROFILE=smoke`: the whole grid at toy size, its tables and figures, and a
second invocation that skips every finished run."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from hamr import paper
from hamr.runs import load_runs
from tests.conftest import ROOT

pytestmark = pytest.mark.slow  # every test here trains real jobs

# main baselines + (HAMR + ablations) x 2 presets + HAMR over focal; 2 seeds
N_JOBS = 6 * 4 * 2 + 2 * (6 * 2 + 2 * 3 * 2) + 6 * 2


def make_table(results: Path, data_dir: Path, *extra: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "HAMR_DATA_DIR": str(data_dir), "WANDB_MODE": "offline", "WANDB_DIR": str(results)}
    return subprocess.run(
        [
            "make",
            "reproduce-table",
            "PROFILE=smoke",
            f"BIN={Path(sys.executable).parent}",
            f"RESULTS={results}",
            f"TABLES={results}/tables",
            *extra,
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
    )


@pytest.fixture(scope="module")
def smoke_grid(tmp_path_factory, data_dir):
    results = tmp_path_factory.mktemp("table_smoke")
    # two one-thread jobs at a time (the joblib launcher); the second invocation below uses the basic one
    proc = make_table(results, data_dir, "LAUNCHER=parallel", "SWEEP_ARGS=trainer.num_threads=1")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return results


def test_smoke_grid_builds_both_tables_and_the_figures(smoke_grid):
    assert len(list(smoke_grid.glob("runs/*/*/seed=*/metrics.json"))) == N_JOBS
    main = (smoke_grid / "tables" / "main.md").read_text()
    for name in ("BioNLP", "TweetNER7-2020", "MIT-Restaurant", "Irma17", "Idai19", "SST-5"):
        assert f"| {name} " in main
    assert "missing" not in main and "failed" not in main and "(n=2)" in main
    ablation = (smoke_grid / "tables" / "ablation.md").read_text()
    assert "w/o neighbourhood boost" in ablation and "missing" not in ablation
    runs, _ = load_runs(smoke_grid)
    main_csv = pd.read_csv(smoke_grid / "tables" / "main.csv", dtype=str).set_index("dataset")
    for (dataset, method), sel in runs[runs.method.isin(["ce", "hamr_full"])].groupby(["dataset", "method"]):
        cell = main_csv.loc[paper.DISPLAY[dataset], {"ce": "CE", "hamr_full": "HAMR"}[method]].strip("*")
        assert cell == f"{100 * sel.test.mean():.1f} ± {100 * sel.test.std(ddof=1):.1f} (n=2)"
    assert "\\begin{tabular}" in (smoke_grid / "tables" / "ablation.tex").read_text()
    significance = json.loads((smoke_grid / "tables" / "significance.json").read_text())
    # HAMR, HAMR + the loss chosen on dev and the authors' HAMR against the best baseline on 6 datasets,
    # each ablation (3 x 2 datasets) against its own full HAMR
    assert [s["vs"] for s in significance] == ["best baseline (dev)"] * 18 + [
        "HAMR (authors' per-step values) (full)"
    ] * 6 + ["HAMR (full)"] * 6
    assert all(0 <= s["p_value"] <= 1 and s["seeds"] == [1, 2] for s in significance)
    for figure in ("per_class_f1", "weight_curve", "sampling_share", "modules_bionlp2004"):
        assert (smoke_grid / "figures" / f"{figure}.png").stat().st_size > 1000
    data = json.loads((smoke_grid / "figures" / "figure_data.json").read_text())
    assert set(data["histories"]) == {"hamr_full", "hamr_authors_full"}
    assert all(len(data["histories"]["hamr_full"][d]) == 1 for d in paper.DATASETS)  # one epoch each
    # the summary run holds the main table: six rows, one per dataset
    logged = [
        json.loads(p.read_text())
        for p in smoke_grid.glob("wandb/offline-run-*/files/media/table/table/main_*.table.json")
    ]
    assert len(logged) == 1 and len(logged[0]["data"]) == 6


def test_a_second_invocation_skips_every_finished_run(smoke_grid, data_dir):
    stamps = {p: p.stat().st_mtime_ns for p in smoke_grid.glob("runs/*/*/seed=*/metrics.json")}
    proc = make_table(smoke_grid, data_dir)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (proc.stdout + proc.stderr).count("skipped: ") == N_JOBS
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps


def test_missing_and_failed_cells_are_marked_not_zero(smoke_grid, tmp_path):
    copy = tmp_path / "results"
    shutil.copytree(smoke_grid / "runs", copy / "runs")
    for seed in (1, 2):
        (copy / "runs" / "sst5" / "dice" / f"seed={seed}" / "metrics.json").unlink()
        failed = copy / "runs" / "bionlp2004" / "hamr_full" / f"seed={seed}"
        (failed / "metrics.json").unlink()
        (failed / "error.json").write_text(json.dumps({"exception": "RuntimeError: boom"}))
    subprocess.run(
        [
            sys.executable,
            str(ROOT / "scripts" / "build_tables.py"),
            str(copy),
            "--out",
            str(copy / "tables"),
            "--no-wandb",
            "--resamples",
            "100",
        ],
        check=True,
        capture_output=True,
        cwd=ROOT,
    )
    main = pd.read_csv(copy / "tables" / "main.csv", dtype=str, keep_default_na=False).set_index("dataset")
    assert main.loc["SST-5", "Dice"] == "missing"
    assert main.loc["BioNLP", "HAMR"] == "failed" and main.loc["BioNLP", "HAMR - best baseline"] == "missing"
    assert main.loc["BioNLP", "HAMR (authors' per-step values)"] != "failed"  # the other preset's cell stands
