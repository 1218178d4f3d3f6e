"""Where a dataset's files come from: dataset.dir, the shipped copy, then the Hugging Face Hub.

The Hub path is tested against a local Hugging Face cache laid out with each repository's exact
file paths (as on the Hub, checked on 2026-11-28) and HF_HUB_OFFLINE=1, so that a wrong file name
in a dataset config fails here, and with the real huggingface_hub exceptions for the failures."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from hamr import paper
from hamr.data.records import DataError
from tests.conftest import ROOT

COMMIT = "0123456789abcdef0123456789abcdef01234567"
TNER_LABELS = {"O": 0, "B-X": 1, "I-X": 2, "B-Y": 3}
TNER_ROWS = [
    {"tokens": ["a", "b", "c"], "tags": [1, 2, 0]},
    {"tokens": ["d"], "tags": [3]},
    {"tokens": ["e", "f"], "tags": [0, 1]},
]
SETFIT_ROWS = [
    {"text": "good", "label": 3, "label_text": "positive"},
    {"text": "bad", "label": 1, "label_text": "negative"},
]
HUMAID_ROWS = [
    {"tweet_id": 1, "tweet_text": "help needed", "class_label": "requests_or_urgent_needs"},
    {"tweet_id": 2, "tweet_text": "stay safe", "class_label": "caution_and_advice"},
]
# repository -> {file in the repository: content}; the paths are the Hub's, not read from conf/
TNER = {"dataset/label.json": json.dumps(TNER_LABELS)}
REPOSITORIES = {
    "tner/bionlp2004": {**TNER, **{f"dataset/{s}.json": TNER_ROWS for s in ("train", "valid", "test")}},
    "tner/mit_restaurant": {**TNER, **{f"dataset/{s}.json": TNER_ROWS for s in ("train", "valid", "test")}},
    "tner/tweetner7": {**TNER, **{f"dataset/2020.{s}.json": TNER_ROWS for s in ("train", "dev", "test")}},
    "SetFit/sst5": {f"{s}.jsonl": SETFIT_ROWS for s in ("train", "validation", "test")},
    "QCRI/HumAID-events": {
        f"{event}/{s}.json": json.dumps(HUMAID_ROWS)
        for event in ("hurricane_irma_2017", "cyclone_idai_2019")
        for s in ("train", "dev", "test")
    },
}
DATASETS = list(paper.DATASETS)


def hub_cache(root: Path) -> Path:
    """Hugging Face's cache layout: datasets--<org>--<name>/refs/main and snapshots/<commit>/<file>."""
    for repo, files in REPOSITORIES.items():
        folder = root / f"datasets--{repo.replace('/', '--')}"
        (folder / "refs").mkdir(parents=True)
        (folder / "refs" / "main").write_text(COMMIT)
        for name, content in files.items():
            path = folder / "snapshots" / COMMIT / name
            path.parent.mkdir(parents=True, exist_ok=True)
            text = content if isinstance(content, str) else "".join(json.dumps(r) + "\n" for r in content)
            path.write_text(text)
    return root


LOCATE = """
import sys
from hamr.config import compose_train, validate
from hamr.data import prepare
prepare.SHIPPED = prepare.SHIPPED.parent / "no-shipped-copies"  # the Hub path for every dataset
for name in sys.argv[2:]:
    ds = validate(compose_train([f"dataset={name}", f"paths.data_dir={sys.argv[1]}"])).dataset
    data = prepare.load_dataset_splits(ds, seed=0)
    print(name, len(data.train), len(data.dev), len(data.test), " ".join(data.label_names))
"""


def run_offline(script: str, *args: str, cache: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(cache)}
    return subprocess.run(
        [sys.executable, "-c", script, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )


def test_every_dataset_downloads_from_the_hub_file_paths_into_the_authors_layout(tmp_path):
    cache = hub_cache(tmp_path / "hf")
    proc = run_offline(LOCATE, str(tmp_path / "data"), *DATASETS, cache=cache)
    assert proc.returncode == 0, proc.stderr[-2000:]
    loaded = {line.split()[0]: line.split()[1:] for line in proc.stdout.splitlines()}
    for name in ("bionlp2004", "mit_restaurant", "tweetner7_2020"):  # integer tags mapped back by label.json
        assert loaded[name] == ["3", "3", "3", "O", "B-X", "I-X", "B-Y", "I-Y"]
    assert loaded["sst5"] == ["2", "2", "2", "negative", "positive"]
    assert loaded["cyclone_idai_2019"] == ["2", "2", "2", "caution_and_advice", "requests_or_urgent_needs"]
    first = json.loads((tmp_path / "data" / "bionlp2004" / "train.json").read_text().splitlines()[0])
    assert first == {"tokens": ["a", "b", "c"], "ner_tags": ["B-X", "I-X", "O"]}


def test_a_wrong_file_name_is_one_line_naming_the_dataset_the_folder_and_the_fix(tmp_path):
    cache = hub_cache(tmp_path / "hf")
    script = LOCATE.replace(
        'f"paths.data_dir={sys.argv[1]}"]',
        'f"paths.data_dir={sys.argv[1]}", "dataset.hub.files.dev=dataset/validation.json"]',
    )
    proc = run_offline(script, str(tmp_path / "data"), "bionlp2004", cache=cache)
    assert proc.returncode != 0
    error = proc.stderr.strip().splitlines()[-1]
    assert error.startswith("hamr.data.records.DataError: bionlp2004: no files in ")
    assert "downloading tner/bionlp2004/dataset/validation.json from the Hugging Face Hub failed" in error
    assert "Fix: set HAMR_DATA_DIR" in error
    assert not (tmp_path / "data" / "bionlp2004" / "dev.json").exists()


def _fail_with(exception):
    def hf_hub_download(*args, **kwargs):
        raise exception

    return hf_hub_download


def hub_errors():
    import httpx2
    from huggingface_hub.errors import (
        EntryNotFoundError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
    )

    response = httpx2.Response(404, request=httpx2.Request("GET", "https://huggingface.co/api/datasets/x/y"))
    return [
        RepositoryNotFoundError("404 Client Error. Repository Not Found for url", response=response),
        EntryNotFoundError("404 Client Error. Entry Not Found for url"),
        LocalEntryNotFoundError(
            "Cannot find the requested files in the disk cache and outgoing traffic has been disabled"
        ),
        ConnectionError("Failed to resolve 'huggingface.co'"),
    ]


@pytest.mark.parametrize("index", range(4))
def test_every_hub_failure_is_one_data_error_line(tmp_path, monkeypatch, index):
    import huggingface_hub

    from hamr.config import HubConfig
    from hamr.data.hub import download

    error = hub_errors()[index]
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", _fail_with(error))
    hub = HubConfig(
        path="tner/bionlp2004",
        format="tner",
        files={"train": "dataset/train.json", "dev": "dataset/valid.json", "test": "dataset/test.json"},
    )
    with pytest.raises(DataError) as caught:
        download(
            hub,
            "ner",
            tmp_path / "bionlp2004",
            {"train": "train.json", "dev": "dev.json", "test": "test.json"},
            "bionlp2004",
        )
    message = str(caught.value)
    assert "\n" not in message and message.startswith(f"bionlp2004: no files in {tmp_path / 'bionlp2004'}")
    assert type(error).__name__ in message and "Fix: set HAMR_DATA_DIR" in message
    assert not (tmp_path / "bionlp2004").exists()  # nothing half-written


def test_no_hub_source_is_a_data_error(tmp_path):
    from hamr.config import HubConfig
    from hamr.data.hub import download

    with pytest.raises(DataError, match="no Hub source is configured. Fix: put train.json"):
        download(HubConfig(), "cls", tmp_path, {"train": "train.json", "dev": "dev.json", "test": "test.json"}, "mine")


@pytest.mark.slow
def test_the_shipped_default_trains_with_no_data_folder_and_no_network(tmp_path):
    """A fresh machine: no HAMR_DATA_DIR, an empty data folder, no Hub; the default dataset ships."""
    env = {k: v for k, v in os.environ.items() if k != "HAMR_DATA_DIR"}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "hamr.train",
            "debug=smoke",
            "model=tiny_random",
            "logger=none",
            f"paths.data_dir={tmp_path / 'empty'}",
            f"paths.results_dir={tmp_path / 'results'}",
            f"paths.cache_dir={tmp_path / 'cache'}",
            f"hydra.run.dir={tmp_path / 'out'}",
            "trainer.progress_bar=false",
        ],
        cwd=ROOT,
        env={**env, "HF_HUB_OFFLINE": "1"},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "using the copy shipped with hamr" in proc.stdout + proc.stderr
    metrics = json.loads(
        (tmp_path / "results" / "runs" / "cyclone_idai_2019" / "ce" / "seed=42" / "metrics.json").read_text()
    )
    assert metrics["n_train"] == 200 and len(metrics["label_names"]) == 10
    assert not (tmp_path / "empty").exists()  # nothing downloaded or written there


def test_missing_data_without_network_is_one_line_and_leaves_nothing_in_results(tmp_path):
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "hamr.train",
            "dataset=sst5",
            "logger=none",
            f"paths.data_dir={tmp_path / 'empty'}",
            f"paths.results_dir={tmp_path / 'results'}",
            f"hydra.run.dir={tmp_path / 'out'}",
        ],
        cwd=ROOT,
        env={**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(tmp_path / "hf")},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    error = proc.stderr.strip().splitlines()[-1]
    assert error.startswith(f"error: sst5: no files in {tmp_path / 'empty' / 'sst5'}, none shipped with hamr")
    assert not (tmp_path / "results").exists()
