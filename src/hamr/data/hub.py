"""Fetch a dataset's raw files from the Hugging Face Hub (huggingface_hub.hf_hub_download) and write
them in the authors' JSON layout.

Used only when a dataset's files are neither in its folder nor shipped with the package. The raw
files are read directly, so no loading script runs (`datasets` 4.x refuses the tner scripts):

- tner (``tner/bionlp2004``, ``tner/mit_restaurant``, ``tner/tweetner7``): JSON lines of
  ``{"tokens", "tags"}`` with integer tags, and ``dataset/label.json`` mapping tag -> id;
- setfit (``SetFit/sst5``): JSON lines of ``{"text", "label", "label_text"}``;
- humaid (``QCRI/HumAID-events``): ``<event>/<split>.json``, a JSON array of
  ``{"tweet_id", "tweet_text", "class_label"}``.

Which file holds which split is each dataset config's ``hub.files``.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from hamr.data.records import DataError
from hamr.results import atomic_write_bytes

log = logging.getLogger(__name__)


def tner_records(rows, id2label: dict[int, str]) -> list[dict]:
    """tner rows store tags as integers; the dataset's label.json maps them back to IOB2."""
    return [{"tokens": list(r["tokens"]), "ner_tags": [id2label[int(t)] for t in r["tags"]]} for r in rows]


def setfit_records(rows) -> list[dict]:
    return [{"text": r["text"], "label": int(r["label"]), "label_text": r["label_text"]} for r in rows]


def humaid_records(rows) -> list[dict]:
    names = sorted({r["class_label"] for r in rows})
    return [
        {"text": r["tweet_text"], "label": names.index(r["class_label"]), "label_text": r["class_label"]} for r in rows
    ]


def _json_lines(path: str) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def _fetch(hub: Any, filename: str, dataset: str, folder: Path) -> str:
    """The local path of one file of the Hub repository; any failure (no network, offline mode
    without a cached copy, an unknown repository or file) is one DataError line that says where
    the files were looked for."""
    from huggingface_hub import hf_hub_download

    hub_log = logging.getLogger("huggingface_hub")
    level = hub_log.level
    hub_log.setLevel(logging.ERROR)  # its retry warnings would repeat what the one line below says
    try:
        return hf_hub_download(hub.path, filename, repo_type="dataset", revision=hub.revision)
    except Exception as err:  # noqa: BLE001 - every huggingface_hub/network error becomes one line
        reason = str(err).strip().splitlines()[0] if str(err).strip() else ""
        raise DataError(
            f"{dataset}: no files in {folder}, none shipped with hamr, and downloading {hub.path}/"
            f"{filename} from the Hugging Face Hub failed ({type(err).__name__}: {reason[:160]}). Fix: "
            f"set HAMR_DATA_DIR to a folder holding {dataset}/train.json, dev.json and test.json, or "
            "connect to the Hub"
        ) from None
    finally:
        hub_log.setLevel(level)


def download(hub: Any, task: str, folder: Path, files: dict[str, str], dataset: str) -> None:
    """Write ``folder/<files[split]>`` for train/dev/test from the Hub repository ``hub.path``.

    Args:
        hub: the dataset's ``hub`` config (path, revision, format, files: split -> repository file,
            label_file for tner).
        dataset: the dataset's name, for messages.
    Raises:
        DataError: no Hub source is configured, or a download failed (one line with the fix).
    """
    if hub.format == "none" or not hub.path:
        raise DataError(
            f"{dataset}: no files in {folder} and no Hub source is configured. Fix: put "
            f"{', '.join(files.values())} there, or set dataset.hub.path"
        )
    id2label = None
    if hub.format == "tner":
        with open(_fetch(hub, hub.label_file, dataset, folder), encoding="utf-8") as f:
            id2label = {int(i): tag for tag, i in json.load(f).items()}
    for split, repo_file in hub.files.items():
        log.info("downloading %s/%s (%s split) -> %s", hub.path, repo_file, split, folder / files[split])
        local = _fetch(hub, repo_file, dataset, folder)
        if hub.format == "tner":
            records = tner_records(_json_lines(local), id2label)
        elif hub.format == "setfit":
            records = setfit_records(_json_lines(local))
        else:
            with open(local, encoding="utf-8") as f:
                records = humaid_records(json.load(f))
        if task == "ner":
            text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
        else:
            text = json.dumps(records, ensure_ascii=False, indent=1)
        atomic_write_bytes(folder / files[split], text.encode("utf-8"))
