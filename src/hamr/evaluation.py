"""Predict a split and score it with the one Macro-F1 definition of :mod:`hamr.metrics`."""

from __future__ import annotations

import contextlib

import numpy as np
import torch

from hamr.data.encode import IGNORE_INDEX, EncodedSplit, length_sorted_loader, model_inputs
from hamr.data.records import Split, TaskData
from hamr.metrics import classification_scores, ner_scores

NO_PREDICTION = -1  # NER: a word the model made no prediction for; scored as O


def autocast(device: torch.device, precision: str, cache_enabled: bool = True):
    """bf16 autocast on CUDA for ``precision="bf16"``, else nothing (fp32; a CPU runs fp32).
    ``cache_enabled=False`` inside a CUDA-graph capture (a cached cast would outlive its pool)."""
    if precision == "bf16" and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16, cache_enabled=cache_enabled)
    return contextlib.nullcontext()


@torch.no_grad()
def predict(model, data: EncodedSplit, collate, batch_size: int, device: torch.device, precision: str = "fp32") -> list:
    """Predicted label ids in split order: an int per example (cls) or, per sentence, one per word
    (ner): the prediction at the word's first sub-word, mapped through the tokenizer's word_ids
    (``data.words``), and NO_PREDICTION for a word without a sub-word (cut by truncation, or one
    the tokenizer drops, such as a zero-width space)."""
    was_training = model.training
    model.eval()
    loader, order = length_sorted_loader(data, collate, batch_size)
    outputs: list = []
    for batch in loader:
        with autocast(device, precision):
            logits = model(**model_inputs(batch, device)).logits
        pred = logits.argmax(-1).cpu()
        if pred.dim() == 1:
            outputs.extend(pred.tolist())
        else:
            keep = batch["labels"] != IGNORE_INDEX
            outputs.extend(p[k].tolist() for p, k in zip(pred, keep))
    model.train(was_training)
    restored: list = [None] * len(order)
    for position, i in enumerate(order):
        restored[i] = outputs[position]
    if data.words is None:
        return restored
    sentences = []
    for words, labelled in zip(data.words, restored):
        per_word = [NO_PREDICTION] * (max(words, default=-1) + 1)
        for word, label in zip(words, labelled):
            per_word[word] = label
        sentences.append(per_word)
    return sentences


def score(task_data: TaskData, split: Split, predictions: list, seqeval_mode: str = "default") -> dict:
    """Scores of ``predictions`` (from :func:`predict`) against the split's gold labels. NER words
    without a prediction (cut by truncation, or given no sub-word) are predicted ``O``, so gold
    entities are never dropped from the count and every other word keeps its own prediction."""
    names = task_data.label_names
    if task_data.task == "cls":
        gold = [task_data.label2id[t] for t in split.targets]
        return classification_scores(gold, predictions, names)
    return ner_scores(
        split.targets,
        [[names[i] for i in p] for p in word_predictions(task_data, split, predictions)],
        mode=seqeval_mode,
    )


def word_predictions(task_data: TaskData, split: Split, predictions: list) -> list[list[int]]:
    """NER: one label id per gold word, ``O``'s id where the model made no prediction."""
    outside = task_data.label2id["O"]
    return [
        [i if i != NO_PREDICTION else outside for i in p] + [outside] * (len(tags) - len(p))
        for p, tags in zip(predictions, split.targets)
    ]


def compact_predictions(task_data: TaskData, split: Split, predictions: list) -> dict[str, np.ndarray]:
    """Gold and predicted label ids as small integer arrays (NER: flattened words plus sentence
    lengths), for paired significance tests later."""
    if task_data.task == "cls":
        gold = [task_data.label2id[t] for t in split.targets]
        return {"gold": np.asarray(gold, np.int16), "pred": np.asarray(predictions, np.int16)}
    gold = [task_data.label2id[t] for tags in split.targets for t in tags]
    pred = [i for p in word_predictions(task_data, split, predictions) for i in p]
    lengths = [len(tags) for tags in split.targets]
    return {
        "gold": np.asarray(gold, np.int16),
        "pred": np.asarray(pred, np.int16),
        "lengths": np.asarray(lengths, np.int32),
    }
