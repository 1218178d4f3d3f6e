"""hamr.results: atomic run folders and the one loader the table and summary scripts share."""

import json

import numpy as np
import pytest

from hamr.results import write_run
from hamr.runs import dev_curve, last_epoch_dev_gain, load_runs


def test_load_runs_reads_finished_and_failed_runs(tmp_path):
    metrics = {
        "dev_macro_f1": 0.5,
        "test_macro_f1": 0.25,
        "dataset": "sst5",
        "method": "ce",
        "seed": 2,
        "dev": {"per_class_f1": {"a": 0.0, "b": 0.0, "c": 1.0}},
        "steps": 63,
    }
    write_run(tmp_path / "runs/sst5/ce/seed=2", metrics, {"test": np.array([0, 1])})
    failed_dir = tmp_path / "runs/sst5/hamr_full/seed=1"
    failed_dir.mkdir(parents=True)
    (failed_dir / "error.json").write_text(json.dumps({"error": "boom"}))
    (tmp_path / "runs/sst5/focal/seed=1").mkdir(parents=True)  # started, neither finished nor failed

    runs, failed = load_runs(tmp_path)

    assert runs[["dataset", "method", "seed", "dev", "test", "collapsed", "steps"]].values.tolist() == [
        ["sst5", "ce", 2, 0.5, 0.25, True, 63]
    ]  # collapsed: 2 of 3 classes at dev F1 0
    assert runs.iloc[0].metrics == metrics
    assert failed.values.tolist() == [["sst5", "hamr_full", 1]]


def test_load_runs_of_an_empty_folder_has_the_columns(tmp_path):
    runs, failed = load_runs(tmp_path)
    assert runs.empty and failed.empty
    assert {"dataset", "method", "seed", "dev", "test", "metrics"} <= set(runs.columns)


def test_last_epoch_dev_gain_is_the_last_two_dev_scores_difference():
    history = [{"dev_macro_f1": 0.40}, {"dev_macro_f1": 0.55}, {"dev_macro_f1": 0.52}]
    assert dev_curve({"history": history}) == pytest.approx([40.0, 55.0, 52.0])
    assert last_epoch_dev_gain({"history": history}) == pytest.approx(-3.0)  # last minus the one before
    assert last_epoch_dev_gain({"history": history[:1]}) is None  # one epoch: no gain to report
    assert last_epoch_dev_gain({"history": [*history, {"epoch": 4}]}) is None  # last epoch not scored on dev
    assert last_epoch_dev_gain({}) is None
