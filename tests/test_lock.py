"""Two jobs on one run folder: the second waits for the first and reuses its result; a stale lock is
taken over (real processes, tiny model)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time

import pytest

from hamr.lock import RunLock
from tests.conftest import ROOT

ARGS = ["debug=smoke", "model=tiny_random", "dataset.max_train_examples=300", "trainer.epochs=2", "logger=none",
        "trainer.progress_bar=false"]


def start(tmp_path, name, data_dir):
    log = open(tmp_path / f"{name}.log", "w")  # noqa: SIM115 - closed after wait()
    proc = subprocess.Popen([sys.executable, "-m", "hamr.train", *ARGS, f"paths.results_dir={tmp_path}/results",
                             f"hydra.run.dir={tmp_path}/{name}"], cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                            env={**os.environ, "HAMR_DATA_DIR": str(data_dir), "HAMR_LOCK_POLL": "0.2"})
    proc.log = log
    return proc
@pytest.mark.slow
def test_a_second_job_waits_for_the_first_and_reuses_its_metrics(tmp_path, data_dir):
    run_dir = tmp_path / "results" / "runs" / "cyclone_idai_2019" / "ce" / "seed=42"
    first = start(tmp_path, "first", data_dir)
    deadline = time.time() + 300
    while not (run_dir / "run.lock").exists():  # the first job holds the folder ...
        assert first.poll() is None and time.time() < deadline
        time.sleep(0.05)
    second = start(tmp_path, "second", data_dir)  # ... when the second arrives
    for proc in (first, second):
        assert proc.wait(timeout=600) == 0
        proc.log.close()
    logs = {name: (tmp_path / f"{name}.log").read_text() for name in ("first", "second")}
    assert logs["first"].count("epoch 2/2") == 1 and "epoch 1/2" not in logs["second"]  # trained once
    assert "is being trained by" in logs["second"] and "was finished by the job this one waited for" in logs["second"]
    assert not (run_dir / "run.lock").exists()  # released
    assert json.loads((run_dir / "metrics.json").read_text())["history"][-1]["epoch"] == 2


def test_a_lock_of_a_dead_process_on_this_host_is_taken_over(tmp_path, caplog):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "run.lock").write_text(json.dumps({"host": socket.gethostname(), "pid": dead.pid, "started": "then"}))
    lock = RunLock(folder, poll=0.01)
    with caplog.at_level("WARNING", logger="hamr.lock"):
        assert lock.acquire()  # free at once: the stale lock did not make it wait
    assert f"process {dead.pid} on this host is gone" in caplog.text
    assert json.loads((folder / "run.lock").read_text())["pid"] == os.getpid()
    lock.release()
    assert not (folder / "run.lock").exists()


def test_a_lock_without_heartbeat_from_another_host_is_taken_over(tmp_path, caplog):
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "run.lock").write_text(json.dumps({"host": "elsewhere", "pid": 1, "started": "then"}))
    old = time.time() - 7200
    os.utime(folder / "run.lock", (old, old))
    with caplog.at_level("WARNING", logger="hamr.lock"):
        assert RunLock(folder, stale_after=3600, poll=0.01).acquire()
    assert "taking over the lock of elsewhere:1" in caplog.text and "no heartbeat for 7" in caplog.text
    # a live holder elsewhere with a fresh heartbeat is waited for, not taken over
    (folder / "run.lock").write_text(json.dumps({"host": "elsewhere", "pid": 1, "started": "now"}))
    assert RunLock(folder)._stale(json.loads((folder / "run.lock").read_text())) is None
