"""Read and check the authors' JSON layout.

Classification (``task=cls``): each file is one JSON array of ``{"text", "label", "label_text"}``.
NER (``task=ner``): each file is JSON lines of ``{"tokens": [str], "ner_tags": ["O"|"B-X"|"I-X"]}``.

Everything here runs before any model is loaded, so that bad input stops the run with one line
that names the file, the record and the fix.
"""

from __future__ import annotations

import json
import logging
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

SPLITS = ("train", "dev", "test")
log = logging.getLogger(__name__)
_TAG = re.compile(r"O|[BI]-\S(?:.*\S)?")  # whole tag (fullmatch): no space or newline at either end


class DataError(ValueError):
    """Bad input data: the message names the file, the record and the fix."""


def _fail(path: Path, record: str, problem: str, fix: str) -> DataError:
    return DataError(f"{path}: {record}: {problem}. Fix: {fix}")


@dataclass
class Split:
    """One split. ``inputs`` are texts (cls) or token lists (ner); ``targets`` are label names
    (cls) or tag lists (ner)."""

    name: str
    path: Path
    inputs: list
    targets: list

    def __len__(self) -> int:
        return len(self.inputs)


@dataclass
class TaskData:
    task: str  # ner | cls
    label_names: list[str]  # id -> name; cls: sorted class names; ner: O, then B-/I- per sorted type
    train: Split
    dev: Split
    test: Split

    @property
    def label2id(self) -> dict[str, int]:
        return {name: i for i, name in enumerate(self.label_names)}

    @property
    def class_names(self) -> list[str]:
        """The classes Macro-F1 averages over: class names (cls) or entity types (ner)."""
        if self.task == "cls":
            return self.label_names
        return sorted({tag[2:] for tag in self.label_names if tag != "O"})

    def class_counts(self, split: str = "train") -> dict[str, int]:
        """Examples per class (cls) or entity spans per type (ner) in a split."""
        return dict(sorted(_classes(self.split(split), self.task).items()))

    def split(self, name: str) -> Split:
        return {"train": self.train, "dev": self.dev, "test": self.test}[name]


def entity_types(tags: list[str]) -> list[str]:
    """Entity type of every span (one per B- tag, or per I- that opens a span as conlleval does)."""
    types, previous = [], "O"
    for tag in tags:
        if tag.startswith("B-") or (tag.startswith("I-") and previous[2:] != tag[2:]):
            types.append(tag[2:])
        previous = tag
    return types


def _read_cls(path: Path) -> Split:
    try:
        records = json.loads(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError as err:
        raise _fail(path, f"byte {err.start}", "not UTF-8", "re-save the file as UTF-8") from None
    except json.JSONDecodeError as err:
        raise _fail(
            path,
            f"line {err.lineno}",
            f"invalid JSON ({err.msg})",
            'the file must be one JSON array of {"text", "label", "label_text"}',
        ) from None
    if not isinstance(records, list):
        raise _fail(
            path,
            "top level",
            "not a JSON array",
            "wrap the records in [ ... ] (classification files are one JSON array)",
        )
    texts, labels = [], []
    for i, record in enumerate(records):
        where = f"record {i}"
        if not isinstance(record, dict):
            raise _fail(path, where, "not a JSON object", 'use {"text": ..., "label_text": ...}')
        text, label = record.get("text"), record.get("label_text")
        if not isinstance(text, str):
            raise _fail(
                path, where, f"field 'text' is {type(text).__name__}, not a string", "give every record a string 'text'"
            )
        if not text.strip():
            raise _fail(path, where, "empty 'text'", "drop the record or fill in its text")
        if label is None and isinstance(record.get("label"), str):
            label = record["label"]
        if not isinstance(label, str) or not label:
            raise _fail(
                path, where, "missing string field 'label_text'", "give every record its class name in 'label_text'"
            )
        texts.append(text)
        labels.append(label)
    return Split(path.stem, path, texts, labels)


def _read_ner(path: Path) -> Split:
    tokens_list, tags_list = [], []
    try:
        lines = path.read_bytes().decode("utf-8").splitlines()
    except UnicodeDecodeError as err:
        raise _fail(path, f"byte {err.start}", "not UTF-8", "re-save the file as UTF-8") from None
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"line {number}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise _fail(
                path,
                where,
                f"invalid JSON ({err.msg})",
                'write one {"tokens": [...], "ner_tags": [...]} object per line',
            ) from None
        if not isinstance(record, dict):
            raise _fail(path, where, "not a JSON object", 'use {"tokens": [...], "ner_tags": [...]}')
        tokens, tags = record.get("tokens"), record.get("ner_tags")
        if not isinstance(tokens, list) or not all(isinstance(t, str) for t in tokens):
            raise _fail(
                path, where, "field 'tokens' is not a list of strings", "give every line a 'tokens' list of strings"
            )
        if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
            raise _fail(
                path,
                where,
                "field 'ner_tags' is not a list of strings",
                "give every line 'ner_tags' as strings (O, B-TYPE, I-TYPE)",
            )
        if len(tokens) != len(tags):
            raise _fail(path, where, f"{len(tokens)} tokens but {len(tags)} tags", "give exactly one tag per token")
        if not tokens:
            raise _fail(path, where, "empty sentence", "drop the line")
        bad = [t for t in tags if not _TAG.fullmatch(t)]
        if bad:
            raise _fail(
                path, where, f"tag {bad[0]!r} is not IOB2", "use O, B-TYPE or I-TYPE (convert IOBES/BILOU tags first)"
            )
        tokens_list.append(tokens)
        tags_list.append(tags)
    return Split(path.stem, path, tokens_list, tags_list)


def read_split(path: Path, task: str) -> Split:
    """Read one split file; raises DataError naming the file and record on bad input."""
    if not path.is_file():
        raise DataError(
            f"{path}: file not found. Fix: point dataset.dir at the folder holding {path.name}, or set HAMR_DATA_DIR"
        )
    split = _read_ner(path) if task == "ner" else _read_cls(path)
    if len(split) == 0:
        raise _fail(path, "whole file", "the split is empty", "add examples to this split")
    return split


def _classes(split: Split, task: str) -> Counter:
    if task == "cls":
        return Counter(split.targets)
    return Counter(t for tags in split.targets for t in entity_types(tags))


def _span_opening_inside_tags(tags: list[str]) -> int:
    """How many I-X tags follow a tag of another type or O (IOB1 style, not IOB2)."""
    return sum(tag.startswith("I-") and previous[2:] != tag[2:] for previous, tag in zip(["O", *tags], tags))


def _check_iob2(split: Split, strict: bool) -> None:
    """IOB1-style spans (an I-X that opens a span) are read as B-X, as conlleval does, and counted
    in a warning; ``strict`` refuses them."""
    counts = [_span_opening_inside_tags(tags) for tags in split.targets]
    total = sum(counts)
    if not total:
        return
    first = next(i for i, c in enumerate(counts) if c)
    if strict:
        raise _fail(
            split.path,
            f"sentence {first}",
            f"{total} I- tags open a span (IOB1, not IOB2)",
            "convert the tags to IOB2 (B- at every span start) or use trainer.seqeval_mode=default",
        )
    log.warning(
        "%s: %d I- tags open a span (IOB1 style, first in sentence %d); read as B- tags, as conlleval "
        "does (trainer.seqeval_mode=strict refuses them)",
        split.path,
        total,
        first,
    )


def load_task_data(folder: Path, task: str, files: dict[str, str], strict_iob2: bool = False) -> TaskData:
    """Read train/dev/test from ``folder`` and check that they make one task.

    Args:
        files: split name -> file name inside ``folder``.
        strict_iob2: refuse NER tags that are not strict IOB2 (else they are read as conlleval does).
    """
    splits = {name: read_split(folder / files[name], task) for name in SPLITS}
    if task == "ner":
        for split in splits.values():
            _check_iob2(split, strict_iob2)
    train_classes = _classes(splits["train"], task)
    kind = "class" if task == "cls" else "entity type"
    if len(train_classes) < 2 and task == "cls":
        raise _fail(
            splits["train"].path,
            "whole file",
            f"only one class ({next(iter(train_classes))!r}) in the training split",
            "a classifier needs at least two classes in train",
        )
    if not train_classes:
        raise _fail(
            splits["train"].path, "whole file", "no entity span in the training split", "check the ner_tags (all O?)"
        )
    for name in ("dev", "test"):
        unseen = sorted(set(_classes(splits[name], task)) - set(train_classes))
        if unseen:
            split = splits[name]
            first = next(
                i
                for i, t in enumerate(split.targets)
                if (t in unseen if task == "cls" else set(entity_types(t)) & set(unseen))
            )
            record = f"record {first}" if task == "cls" else f"sentence {first}"
            raise _fail(
                split.path,
                record,
                f"{kind} {unseen[0]!r} never occurs in train ({len(unseen)} unseen: {', '.join(unseen)})",
                f"add training examples of it or remove it from {name}",
            )
    types = sorted(train_classes)
    label_names = types if task == "cls" else ["O"] + [f"{p}-{t}" for t in types for p in "BI"]
    return TaskData(task, label_names, splits["train"], splits["dev"], splits["test"])
