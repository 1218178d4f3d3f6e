"""Resume after a kill: a rerun of the same command continues from the checkpoint and ends with
the same metrics and predictions as an uninterrupted run (real subprocesses, tiny model, HAMR)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.conftest import ROOT

ARGS = [
    "debug=smoke",
    "model=tiny_random",
    "method=hamr",
    "dataset.max_train_examples=400",
    "trainer.epochs=3",
    "trainer.progress_bar=false",
    "logger=none",
]


def command(results: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "hamr.train",
        *ARGS,
        f"paths.results_dir={results}",
        f"paths.checkpoint_dir={results}/checkpoints",
        f"hydra.run.dir={results}/hydra",
    ]


def env(data_dir: Path) -> dict:
    return {**os.environ, "HAMR_DATA_DIR": str(data_dir)}


def checkpoint_epoch(results: Path) -> tuple[int, int] | None:
    found = list((results / "checkpoints").glob("*/last.pt"))
    if not found:
        return None
    from hamr.checkpoint import decode_checkpoint

    try:
        state = decode_checkpoint(found[0].read_bytes())
    except Exception:  # noqa: BLE001 - being written right now (atomic rename: rare)
        return None
    return state["epoch"], state["batch_in_epoch"]


def run_dir(results: Path) -> Path:
    return results / "runs" / "cyclone_idai_2019" / "hamr_full" / "seed=42"


def assert_same_run(a: Path, b: Path) -> None:
    ma, mb = (json.loads((run_dir(r) / "metrics.json").read_text()) for r in (a, b))
    assert ma["test"] == mb["test"] and ma["dev"] == mb["dev"] and ma["selected_epoch"] == mb["selected_epoch"]
    for ha, hb in zip(ma["history"], mb["history"], strict=True):
        assert ha["dev_macro_f1"] == hb["dev_macro_f1"] and ha["train_loss"] == pytest.approx(
            hb["train_loss"], rel=1e-9
        )
        assert ha["weight_mean"] == pytest.approx(hb["weight_mean"], rel=1e-9)
    pa, pb = np.load(run_dir(a) / "predictions.npz"), np.load(run_dir(b) / "predictions.npz")
    assert all(np.array_equal(pa[k], pb[k]) for k in pa.files)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, data_dir) -> Path:
    results = tmp_path_factory.mktemp("uninterrupted")
    subprocess.run(command(results), cwd=ROOT, env=env(data_dir), check=True, capture_output=True, timeout=900)
    assert not list((results / "checkpoints").glob("*/last.pt"))  # a finished run leaves no checkpoint
    return results


def start_and_wait_for_first_epoch(results: Path, data_dir: Path) -> subprocess.Popen:
    # output to a file, not a pipe: an unread pipe would fill up and block the run
    log = open(results / "first_attempt.log", "w")  # noqa: SIM115 - closed with the process
    proc = subprocess.Popen(command(results), cwd=ROOT, env=env(data_dir), stdout=log, stderr=subprocess.STDOUT)
    proc.log = log
    deadline = time.time() + 600
    while (state := checkpoint_epoch(results)) is None or state[0] < 1:
        assert proc.poll() is None, "the run ended before its first checkpoint"
        assert time.time() < deadline
        time.sleep(0.05)
    return proc


@pytest.mark.slow
def test_sigkill_after_the_first_epoch_then_rerun_equals_an_uninterrupted_run(tmp_path, data_dir, uninterrupted):
    proc = start_and_wait_for_first_epoch(tmp_path, data_dir)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    proc.log.close()
    assert not (run_dir(tmp_path) / "metrics.json").exists()
    rerun = subprocess.run(command(tmp_path), cwd=ROOT, env=env(data_dir), capture_output=True, text=True, timeout=900)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert "resuming from" in rerun.stdout + rerun.stderr
    assert_same_run(tmp_path, uninterrupted)


@pytest.mark.slow
def test_sigterm_mid_epoch_saves_exits_cleanly_and_resumes(tmp_path, data_dir, uninterrupted):
    proc = start_and_wait_for_first_epoch(tmp_path, data_dir)
    time.sleep(0.3)
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=120)
    proc.log.close()
    output = (tmp_path / "first_attempt.log").read_text()
    assert proc.returncode == 128 + signal.SIGTERM, output[-2000:]
    assert "checkpoint saved at" in output and "Traceback" not in output
    epoch, batch = checkpoint_epoch(tmp_path)
    assert batch > 0  # saved at a step boundary inside an epoch
    assert not (run_dir(tmp_path) / "metrics.json").exists()
    rerun = subprocess.run(command(tmp_path), cwd=ROOT, env=env(data_dir), capture_output=True, text=True, timeout=900)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert "resuming from" in rerun.stdout + rerun.stderr
    assert_same_run(tmp_path, uninterrupted)
    assert checkpoint_epoch(tmp_path) is None


def test_a_checkpoint_of_another_configuration_is_refused_and_the_run_starts_afresh(tmp_path, caplog):
    from hamr.checkpoint import Checkpointer

    run_folder = tmp_path / "runs" / "x" / "seed=1"
    Checkpointer(tmp_path / "checkpoints", run_folder, {"trainer": {"lr": 1e-4}}).save(
        {"epoch": 1, "batch_in_epoch": 0}
    )
    same = Checkpointer(tmp_path / "checkpoints", run_folder, {"trainer": {"lr": 1e-4}}).load()
    assert same is not None and same["epoch"] == 1
    with caplog.at_level("WARNING", logger="hamr.checkpoint"):
        other = Checkpointer(tmp_path / "checkpoints", run_folder, {"trainer": {"lr": 2e-4}}).load()
    assert other is None and "belongs to another configuration" in caplog.text
    assert Checkpointer(tmp_path / "checkpoints", run_folder, {"trainer": {"lr": 1e-4}}, resume=False).load() is None


class _Payload:
    """A pickle that writes a marker file when it is unpickled."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (self.marker, "code ran"))


def crafted_checkpoints(marker: Path) -> dict[str, bytes]:
    """A plain pickle, and one behind this project's header with a correct checksum: neither runs."""
    import hashlib
    import io

    from hamr.checkpoint import HEADER

    buffer = io.BytesIO()
    torch.save({"epoch": 1, "evil": _Payload(marker)}, buffer)
    payload = buffer.getvalue()
    return {
        "plain pickle": payload,
        "with header": HEADER + hashlib.sha256(payload).hexdigest().encode() + b"\n" + payload,
    }


@pytest.mark.parametrize("kind", ["plain pickle", "with header", "damaged", "truncated"])
def test_a_crafted_or_damaged_checkpoint_runs_nothing_and_is_set_aside(tmp_path, caplog, kind):
    from hamr.checkpoint import Checkpointer

    marker, run_folder = tmp_path / "marker", tmp_path / "runs" / "x" / "seed=1"
    checkpointer = Checkpointer(tmp_path / "checkpoints", run_folder, {"trainer": {"lr": 1e-4}})
    checkpointer.save({"epoch": 1, "batch_in_epoch": 0, "h": np.arange(3.0), "rng": np.random.get_state()})
    data = checkpointer.path.read_bytes()
    if kind == "damaged":  # 64 bytes of the payload overwritten
        data = data[:200] + b"\x7f" * 64 + data[264:]
    elif kind == "truncated":
        data = data[: len(data) // 2]
    else:
        data = crafted_checkpoints(marker)[kind]
    checkpointer.path.write_bytes(data)
    with caplog.at_level("WARNING", logger="hamr.checkpoint"):
        assert checkpointer.load() is None
    assert not marker.exists()
    assert "cannot be resumed" in caplog.text and str(checkpointer.path) in caplog.text
    assert not checkpointer.path.exists() and len(list(checkpointer.folder.glob("last.pt.unreadable-*"))) == 1


def test_a_checkpoint_round_trips_numpy_state_and_the_rng():
    from hamr.checkpoint import decode_checkpoint, encode_checkpoint

    state = {
        "h": np.linspace(0, 1, 5),
        "positions": [(np.array([1, 2], dtype=np.int64), torch.ones(2))],
        "numpy_rng": np.random.get_state(),
        "scalar": np.float64(0.25),
        "t": torch.arange(3),
    }
    back = decode_checkpoint(encode_checkpoint(state))
    np.testing.assert_array_equal(back["h"], state["h"]) and np.testing.assert_array_equal(
        back["positions"][0][0], [1, 2]
    )
    assert back["scalar"] == 0.25 and isinstance(back["positions"][0], tuple) and torch.equal(back["t"], state["t"])
    np.random.set_state(back["numpy_rng"])  # a valid numpy RNG state
