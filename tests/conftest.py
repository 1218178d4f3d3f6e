"""Shared fixtures: the real datasets beside the project, composed configs, tiny splits."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from hydra.core.global_hydra import GlobalHydra

from hamr import config

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"


def shared_data_dir() -> Path:
    """The six datasets: $HAMR_DATA_DIR, else ../shared/datasets beside the checkout (CI has it)."""
    return Path(os.environ.get("HAMR_DATA_DIR", ROOT.parent / "shared" / "datasets")).resolve()


@pytest.fixture(scope="session")
def data_dir() -> Path:
    path = shared_data_dir()
    assert (path / "cyclone_idai_2019" / "train.json").is_file(), (
        f"datasets not found at {path}: set HAMR_DATA_DIR or put shared/ beside the checkout")
    return path


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
