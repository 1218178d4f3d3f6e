"""Predict a split and score it with the one Macro-F1 definition of :mod:`hamr.metrics`."""

from __future__ import annotations

import contextlib

import numpy as np
import torch

from hamr.data.encode import IGNORE_INDEX, EncodedSplit, length_sorted_loader, model_inputs
from hamr.data.records import Split, TaskData
from hamr.metrics import classification_scores, ner_scores


def autocast(device: torch.device, precision: str):
    if precision == "bf16" and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


@torch.no_grad()
def predict(model, data: EncodedSplit, collate, batch_size: int, device: torch.device,
            precision: str = "fp32") -> list:
    """Predicted label ids in split order: an int per example (cls) or, per sentence, the ids at
    the first sub-word of each word that survived truncation (ner)."""
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
    return restored


def score(task_data: TaskData, split: Split, predictions: list, seqeval_mode: str = "default") -> dict:
    """Scores of ``predictions`` (from :func:`predict`) against the split's gold labels. NER words
    cut by truncation are predicted ``O``, so gold entities are never dropped from the count."""
    names = task_data.label_names
    if task_data.task == "cls":
        gold = [task_data.label2id[t] for t in split.targets]
        return classification_scores(gold, predictions, names)
    pred_tags = [[names[i] for i in p] + ["O"] * (len(gold) - len(p))
                 for p, gold in zip(predictions, split.targets)]
    return ner_scores(split.targets, pred_tags, mode=seqeval_mode)


def compact_predictions(task_data: TaskData, split: Split, predictions: list) -> dict[str, np.ndarray]:
    """Gold and predicted label ids as small integer arrays (NER: flattened words plus sentence
    lengths), for paired significance tests later."""
    if task_data.task == "cls":
        gold = [task_data.label2id[t] for t in split.targets]
        return {"gold": np.asarray(gold, np.int16), "pred": np.asarray(predictions, np.int16)}
    gold = [task_data.label2id[t] for tags in split.targets for t in tags]
    pred = [i for p, tags in zip(predictions, split.targets) for i in p + [0] * (len(tags) - len(p))]
    lengths = [len(tags) for tags in split.targets]
    return {"gold": np.asarray(gold, np.int16), "pred": np.asarray(pred, np.int16),
            "lengths": np.asarray(lengths, np.int32)}
