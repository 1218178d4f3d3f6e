"""Tokenise splits, align NER tags to sub-words, and batch with HF collators."""

from __future__ import annotations

import hashlib
import io
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Dataset
from transformers import DataCollatorForTokenClassification, DataCollatorWithPadding

from hamr.data.records import Split

log = logging.getLogger(__name__)
IGNORE_INDEX = -100  # label of padding and of sub-word continuations; ignored by every loss
CACHE_FORMAT = 2  # bumped when what a tokenised cache file holds changes (2: NER word indices)


def align_labels(word_ids: list[int | None], word_labels: list[int]) -> list[int]:
    """Sub-word labels: the first sub-word of each word carries the word's label, the other
    sub-words and special tokens get IGNORE_INDEX."""
    labels, previous = [], None
    for word in word_ids:
        labels.append(IGNORE_INDEX if word is None or word == previous else word_labels[word])
        previous = word
    return labels


@dataclass
class EncodedSplit(Dataset):
    """Tokenised examples; ``features[i]`` holds input_ids, attention_mask (token_type_ids),
    labels and ``index`` (the example's position in its split, used by HAMR's per-example state).

    NER only: ``words[i]`` is, for each labelled sub-word position of sentence i in order, the word
    it starts (from the tokenizer's ``word_ids``), so predictions map back to words; a word the
    tokenizer gives no sub-word (a zero-width space) or that truncation cut has none."""

    features: list[dict]
    truncated: int  # how many examples were cut at max_length
    words: list[list[int]] | None = None  # NER: word index of each labelled position, per sentence
    unrepresented: int = 0  # NER: words (not cut by truncation) that the tokenizer gave no sub-word

    def __len__(self) -> int:
        return len(self.features)

    def __getitem__(self, i: int) -> dict:
        return self.features[i]


def encode_split(split: Split, task: str, label2id: dict[str, int], tokenizer, max_length: int) -> EncodedSplit:
    """Tokenise one split (no padding: batches are padded dynamically by the collator)."""
    if task == "cls":
        enc = tokenizer(split.inputs, truncation=True, max_length=max_length)
        full = tokenizer(split.inputs, truncation=False)["input_ids"]
        truncated = sum(len(ids) > max_length for ids in full)
        labels = [label2id[t] for t in split.targets]
        features = [{**{k: enc[k][i] for k in enc.keys()}, "labels": labels[i], "index": i} for i in range(len(split))]
        return EncodedSplit(features, truncated)
    enc = tokenizer(split.inputs, is_split_into_words=True, truncation=True, max_length=max_length)
    full = tokenizer(split.inputs, is_split_into_words=True, truncation=False)
    features, truncated, words, unrepresented = [], 0, [], 0
    for i, tags in enumerate(split.targets):
        word_ids = enc.word_ids(i)
        truncated += len(full["input_ids"][i]) > max_length
        feature = {k: enc[k][i] for k in enc.keys()}
        feature["labels"] = align_labels(word_ids, [label2id[t] for t in tags])
        feature["index"] = i
        features.append(feature)
        words.append([w for w, y in zip(word_ids, feature["labels"]) if y != IGNORE_INDEX])
        unrepresented += len(set(range(len(tags))) - {w for w in full.word_ids(i) if w is not None})
    return EncodedSplit(features, truncated, words, unrepresented)


def encode_split_cached(
    split: Split, task: str, label2id: dict[str, int], tokenizer, max_length: int, cache_dir: Path | None
) -> EncodedSplit:
    """:func:`encode_split`, cached on disk under ``<cache_dir>/tokenized/`` by a hash of the
    tokenizer (its class, name and vocabulary size), max_length, the labels and the split's content;
    a sweep re-reads instead of re-tokenising."""
    if cache_dir is None:
        return encode_split(split, task, label2id, tokenizer, max_length)
    from hamr.results import atomic_write_bytes

    key = hashlib.sha1(
        json.dumps(
            [
                CACHE_FORMAT,
                type(tokenizer).__name__,
                tokenizer.name_or_path,
                len(tokenizer),
                max_length,
                task,
                sorted(label2id.items()),
                split.inputs,
                split.targets,
            ]
        ).encode()
    ).hexdigest()
    path = Path(cache_dir) / "tokenized" / f"{split.name}-{key[:16]}.pt"
    if path.is_file():
        try:
            cached = torch.load(path, weights_only=True)
            log.info("%s: tokenised examples from cache %s", split.name, path)
            return EncodedSplit(cached["features"], cached["truncated"], cached["words"], cached["unrepresented"])
        except Exception as err:  # noqa: BLE001 - a damaged cache file is rebuilt, whatever is wrong with it
            log.warning(
                "tokenisation cache %s is unreadable (%s): tokenising again and replacing it", path, type(err).__name__
            )
    encoded = encode_split(split, task, label2id, tokenizer, max_length)
    buffer = io.BytesIO()
    torch.save(
        {
            "features": encoded.features,
            "truncated": encoded.truncated,
            "words": encoded.words,
            "unrepresented": encoded.unrepresented,
        },
        buffer,
    )
    atomic_write_bytes(path, buffer.getvalue())
    return encoded


def collator_for(task: str, tokenizer):
    if task == "ner":
        return DataCollatorForTokenClassification(tokenizer, label_pad_token_id=IGNORE_INDEX)
    return DataCollatorWithPadding(tokenizer)


def length_sorted_loader(data: EncodedSplit, collate, batch_size: int) -> tuple[DataLoader, list[int]]:
    """Batches of similar length (less padding) for evaluation and embedding; returns the loader
    and the order, so that outputs can be put back in split order."""
    order = sorted(range(len(data)), key=lambda i: len(data.features[i]["input_ids"]))
    return DataLoader(
        torch.utils.data.Subset(data, order), batch_size=batch_size, shuffle=False, collate_fn=collate
    ), order


def model_inputs(batch: dict, device: torch.device | None = None) -> dict:
    """The tensors the encoder takes (labels and index stay out: losses are computed outside),
    moved to ``device`` (None: where they are)."""
    return {
        k: v if device is None else v.to(device, non_blocking=True)
        for k, v in batch.items()
        if k not in ("labels", "index")
    }
