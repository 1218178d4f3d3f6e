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

ARGS = [
    "debug=smoke",
    "model=tiny_random",
    "dataset.max_train_examples=300",
    "trainer.epochs=2",
    "logger=none",
    "trainer.progress_bar=false",
]


def start(tmp_path, name):
    """A training job on the shipped Cyclone-Idai (or HAMR_DATA_DIR's copy), logging to <name>.log."""
    log = open(tmp_path / f"{name}.log", "w")  # noqa: SIM115 - closed after wait()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "hamr.train",
            *ARGS,
            f"paths.results_dir={tmp_path}/results",
            f"hydra.run.dir={tmp_path}/{name}",
        ],
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "HAMR_LOCK_POLL": "0.2"},
    )
    proc.log = log
    return proc


def wait_for_log(tmp_path, name, proc, text, timeout=300):
    deadline = time.time() + timeout
    while text not in (tmp_path / f"{name}.log").read_text():
        assert proc.poll() is None, (tmp_path / f"{name}.log").read_text()
        assert time.time() < deadline, f"{name} never logged {text!r}"
        time.sleep(0.05)


def finish(proc):
    assert proc.wait(timeout=600) == 0
    proc.log.close()


@pytest.mark.slow
def test_a_job_waits_for_the_holder_then_trains_or_reuses_its_metrics(tmp_path):
    """The test process holds the lock itself, so the order of events never depends on timing."""
    run_dir = tmp_path / "results" / "runs" / "cyclone_idai_2019" / "ce" / "seed=42"
    holder = RunLock(run_dir)
    assert holder.acquire()

    # 1. the holder gives up without a result: the waiting job trains the configuration itself
    first = start(tmp_path, "first")
    wait_for_log(tmp_path, "first", first, "is being trained by")
    assert not (run_dir / "metrics.json").exists()
    holder.release()
    finish(first)
    first_log = (tmp_path / "first.log").read_text()
    assert "epoch 2/2" in first_log and "was finished by" not in first_log
    assert not (run_dir / "run.lock").exists()  # released by the job
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["history"][-1]["epoch"] == 2

    # 2. the holder finishes the same configuration while the job waits: the job reuses the result
    saved = {name: (run_dir / name).read_bytes() for name in ("metrics.json", "predictions.npz")}
    for name in saved:
        (run_dir / name).unlink()
    assert holder.acquire()
    second = start(tmp_path, "second")
    wait_for_log(tmp_path, "second", second, "is being trained by")
    for name, content in saved.items():  # what the holder's training would have written
        (run_dir / name).write_bytes(content)
    holder.release()
    finish(second)
    second_log = (tmp_path / "second.log").read_text()
    assert "was finished by the job this one waited for" in second_log and "epoch 1/2" not in second_log
    assert json.loads((run_dir / "metrics.json").read_text()) == metrics  # untouched
    assert not (run_dir / "run.lock").exists()


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


def test_a_lock_from_before_this_host_restarted_is_taken_over_though_its_pid_is_alive(tmp_path, caplog, monkeypatch):
    """After a restart the dead holder's pid may name a new, live process (here: this one): the boot
    id tells them apart, and only the holder of this boot is waited for."""
    boot = tmp_path / "boot_id"
    boot.write_text("boot-2\n")
    monkeypatch.setattr("hamr.lock.BOOT_ID", boot)
    folder = tmp_path / "run"
    folder.mkdir()
    holder = {"host": socket.gethostname(), "boot": "boot-1", "pid": os.getpid(), "started": "then"}
    (folder / "run.lock").write_text(json.dumps(holder))
    assert RunLock(folder).live_holder() is None
    with caplog.at_level("WARNING", logger="hamr.lock"):
        assert RunLock(folder, poll=0.01).acquire()
    assert "this host has restarted since" in caplog.text
    assert json.loads((folder / "run.lock").read_text())["boot"] == "boot-2"
    # the same pid in this boot is a live holder
    (folder / "run.lock").write_text(json.dumps({**holder, "boot": "boot-2"}))
    assert RunLock(folder).live_holder()["pid"] == os.getpid()


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


def test_an_empty_lock_file_is_polled_without_spinning_then_taken_over(tmp_path, caplog):
    """An empty run.lock (its writer died before filling it) neither hangs a job nor burns a core:
    fresh, it is polled with a sleep; older than unreadable_stale_after it is taken over."""
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "run.lock").write_text("")
    import threading

    lock, got, tries = RunLock(folder, poll=0.2, unreadable_stale_after=1.0), [], []
    create = lock._create
    lock._create = lambda: tries.append(1) or create()
    wall = time.time()
    with caplog.at_level("WARNING", logger="hamr.lock"):
        worker = threading.Thread(target=lambda: got.append(lock.acquire()), daemon=True)
        worker.start()
        worker.join(timeout=10)  # a hang fails here instead of hanging the suite
    assert got == [True]  # done, and it never had to wait for a live holder
    wall = time.time() - wall
    assert 0.9 <= wall < 5 and len(tries) <= 12  # waited about a second, looking every 0.2 s (a spin: thousands)
    assert "taking over an unreadable lock file" in caplog.text and str(folder / "run.lock") in caplog.text
    assert json.loads((folder / "run.lock").read_text())["pid"] == os.getpid()
    lock.release()
    old = time.time() - 120  # an empty lock a minute old is taken over at once with the default
    (folder / "run.lock").write_text("")
    os.utime(folder / "run.lock", (old, old))
    started = time.time()
    assert RunLock(folder).acquire() and time.time() - started < 1
    for unreadable in (b"[1, 2]", b'"text"', b"\xff\xfe"):  # JSON that is not an object; not UTF-8
        (folder / "run.lock").write_bytes(unreadable)
        os.utime(folder / "run.lock", (old, old))
        assert RunLock(folder).live_holder() is None and RunLock(folder).acquire(), unreadable


def test_the_lock_is_never_seen_half_written(tmp_path):
    """The lock appears with its content (hard link of a filled file), and leaves no temporary file."""
    folder = tmp_path / "run"
    lock = RunLock(folder)
    assert lock._create()
    assert json.loads((folder / "run.lock").read_text())["host"] == socket.gethostname()
    assert sorted(p.name for p in folder.iterdir()) == ["run.lock"]
    assert not RunLock(folder)._create() and sorted(p.name for p in folder.iterdir()) == ["run.lock"]
