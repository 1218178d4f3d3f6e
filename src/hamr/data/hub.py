"""Download a dataset from the Hugging Face Hub into the authors' JSON layout.

Used only when a dataset's files are absent from its folder. Needs the ``datasets`` package
(``pip install -e '.[hub]'``) and network access to the Hub.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


def tner_records(rows, id2label: dict[int, str]) -> list[dict]:
    """tner rows store tags as integers; the dataset's label2id maps them back to IOB2."""
    return [{"tokens": list(r["tokens"]), "ner_tags": [id2label[int(t)] for t in r["tags"]]} for r in rows]


def setfit_records(rows) -> list[dict]:
    return [{"text": r["text"], "label": int(r["label"]), "label_text": r["label_text"]} for r in rows]


def humaid_records(rows) -> list[dict]:
    names = sorted({r["class_label"] for r in rows})
    return [{"text": r["tweet_text"], "label": names.index(r["class_label"]),
             "label_text": r["class_label"]} for r in rows]


def _tner_id2label(repo: str) -> dict[int, str]:
    from huggingface_hub import hf_hub_download

    with open(hf_hub_download(repo, "dataset/label.json", repo_type="dataset")) as f:
        return {int(i): tag for tag, i in json.load(f).items()}


def _write(path: Path, records: list[dict], task: str) -> None:
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        if task == "ner":
            for r in records:
                f.write(json.dumps(r, ensure_ascii=False) + "\n")
        else:
            json.dump(records, f, ensure_ascii=False, indent=1)
    os.replace(tmp, path)


def download(hub: Any, task: str, folder: Path, files: dict[str, str], load_dataset=None) -> None:
    """Write ``folder/<files[split]>`` for train/dev/test from the Hub dataset ``hub.path``.

    Args:
        hub: the dataset's ``hub`` config (path, name, format, splits).
        load_dataset: injectable for tests; defaults to ``datasets.load_dataset``.
    """
    if hub.format == "none" or not hub.path:
        raise FileNotFoundError(f"{folder}: dataset files missing and no Hub source is configured. "
                                "Fix: put train/dev/test JSON files there or set dataset.hub.path")
    if load_dataset is None:
        try:
            from datasets import load_dataset
        except ImportError:
            raise ImportError(f"{folder}: dataset files missing; downloading {hub.path} needs the "
                              "`datasets` package. Fix: pip install -e '.[hub]', or set "
                              "HAMR_DATA_DIR to a folder that has the files") from None
    folder.mkdir(parents=True, exist_ok=True)
    id2label = _tner_id2label(hub.path) if hub.format == "tner" else None
    for split, hub_split in hub.splits.items():
        log.info("downloading %s (%s) split %s -> %s", hub.path, hub.name, hub_split, folder)
        rows = load_dataset(hub.path, hub.name, split=hub_split)
        if hub.format == "tner":
            records = tner_records(rows, id2label)
        elif hub.format == "setfit":
            records = setfit_records(rows)
        else:
            records = humaid_records(rows)
        _write(folder / files[split], records, task)
