"""hamr.summaries: the per-run dev curves table (``summarize_runs.py --curves``)."""

import sys

import numpy as np
import pytest

from hamr.results import write_run
from hamr.summaries import curve_rows, curves_markdown, main


def _write(root, method, seed, dev_per_epoch, wall_seconds=600.0):
    metrics = {
        "dataset": "sst5",
        "method": method,
        "seed": seed,
        "dev_macro_f1": max(dev_per_epoch),
        "test_macro_f1": 0.1,
        "dev": {"per_class_f1": {"a": 0.5, "b": 0.5}},
        "history": [{"epoch": i + 1, "dev_macro_f1": d} for i, d in enumerate(dev_per_epoch)],
        "steps": 40,
        "wall_seconds": wall_seconds,
    }
    write_run(root / f"runs/sst5/{method}/seed={seed}", metrics, {"test": np.array([0])})


def test_curve_rows_read_each_runs_dev_curve(tmp_path):
    _write(tmp_path, "hamr_full", 1, [0.50, 0.60, 0.60, 0.59], wall_seconds=1500)
    _write(tmp_path, "ce", 2, [0.40, 0.45])
    _write(tmp_path, "ce", 1, [0.30])

    curves = curve_rows(tmp_path).set_index(["method", "seed"])

    hamr = curves.loc[("hamr_full", 1)]
    assert hamr.dev == pytest.approx([50.0, 60.0, 60.0, 59.0])
    assert hamr.best_epoch == 2  # the first of the tied best epochs
    assert hamr.last_gain == pytest.approx(-1.0) and hamr.minutes == pytest.approx(25.0) and hamr.steps == 40
    assert curves.loc[("ce", 2)].last_gain == pytest.approx(5.0)
    assert np.isnan(curves.loc[("ce", 1)].last_gain)  # one epoch: no gain to show


def test_curves_markdown_lists_baselines_first_then_seeds(tmp_path):
    _write(tmp_path, "hamr_full", 1, [0.5, 0.6])
    _write(tmp_path, "ce", 2, [0.4, 0.45])
    _write(tmp_path, "ce", 1, [0.3, 0.35])
    rows = curves_markdown(curve_rows(tmp_path)).splitlines()[2:]
    assert [r.split(" | ")[1:3] for r in rows] == [["ce", "1"], ["ce", "2"], ["hamr_full", "1"]]
    assert rows[2] == "| sst5 | hamr_full | 1 | 50.0, 60.0 | 2 | +10.0 | 40 | 10 |"


def test_a_run_without_a_dev_scored_epoch_is_listed_without_a_curve(tmp_path):
    """A record from before dev was scored every epoch has no curve: a row of dashes, not a crash."""
    _write(tmp_path, "ce", 1, [0.3, 0.35])
    metrics = {"dataset": "sst5", "method": "ce", "seed": 2, "dev_macro_f1": 0.4, "test_macro_f1": 0.1}
    metrics |= {"dev": {"per_class_f1": {"a": 0.4}}, "history": [{"epoch": 1}], "steps": 40, "wall_seconds": 60.0}
    write_run(tmp_path / "runs/sst5/ce/seed=2", metrics, {"test": np.array([0])})
    rows = curves_markdown(curve_rows(tmp_path)).splitlines()[2:]
    assert rows == ["| sst5 | ce | 1 | 30.0, 35.0 | 2 | +5.0 | 40 | 10 |", "| sst5 | ce | 2 | - | - | - | 40 | 1 |"]


def test_the_command_line_writes_the_curves_table(tmp_path, monkeypatch):
    _write(tmp_path, "ce", 1, [0.3, 0.35])
    out = tmp_path / "curves.md"
    monkeypatch.setattr(sys, "argv", ["summarize_runs.py", str(tmp_path), "--curves", "--out", str(out)])
    main()
    assert out.read_text().splitlines()[-1] == "| sst5 | ce | 1 | 30.0, 35.0 | 2 | +5.0 | 40 | 10 |"
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setattr(sys, "argv", ["summarize_runs.py", str(empty), "--curves", "--out", str(out)])
    with pytest.raises(SystemExit, match="no runs"):
        main()
