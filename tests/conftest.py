"""Shared fixtures: the real datasets beside the project, composed configs, tiny splits."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from hydra.core.global_hydra import GlobalHydra

if os.environ.get("PYTEST_XDIST_WORKER"):
    # make test runs one worker per core: one torch thread each (and in the jobs they start), not two
    os.environ.setdefault("OMP_NUM_THREADS", "1")

from hamr import config, paper

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"


def shared_data_dir() -> Path:
    """The six datasets: $HAMR_DATA_DIR, else ../shared/datasets beside the checkout (CI has it)."""
    return Path(os.environ.get("HAMR_DATA_DIR", ROOT.parent / "shared" / "datasets")).resolve()


DATASETS = paper.DATASETS


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The six datasets. Absent (a fresh clone without ../shared), the tests that need them skip with
    one line, except under CI=true, where their absence fails: CI must run them all."""
    path = shared_data_dir()
    missing = [name for name in DATASETS if not (path / name / "train.json").is_file()]
    if missing:
        message = (
            f"the datasets {', '.join(missing)} are not at {path}: set HAMR_DATA_DIR or put shared/ beside the checkout"
        )
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    # the scripts and training jobs the tests start read HAMR_DATA_DIR: found via ../shared, pass it on
    os.environ["HAMR_DATA_DIR"] = str(path)
    return path


def pytest_collection_modifyitems(config, items):
    """`gpu` tests skip with one line on a machine without CUDA (make test deselects them anyway)."""
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device (make test-gpu on a GPU machine)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


def compose_train(overrides: list[str], output_dir: Path | None = None):
    """Compose conf/train.yaml as `python -m hamr.train` would, from the checkout's root."""
    return config.compose_train(overrides, output_dir or ROOT / "outputs" / "test", cwd=ROOT)


@pytest.fixture
def compose_cfg():
    yield compose_train
    GlobalHydra.instance().clear()


def write_cls(folder: Path, splits: dict[str, list[tuple[str, str]]]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, rows in splits.items():
        records = [{"text": t, "label": 0, "label_text": y} for t, y in rows]
        (folder / f"{name}.json").write_text(json.dumps(records))
    return folder


def write_ner(folder: Path, splits: dict[str, list[tuple[list[str], list[str]]]]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, rows in splits.items():
        lines = [json.dumps({"tokens": t, "ner_tags": y}) for t, y in rows]
        (folder / f"{name}.json").write_text("\n".join(lines) + "\n")
    return folder
