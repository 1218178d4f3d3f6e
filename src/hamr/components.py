"""What a run is made of, built from a validated config: the device, tokenizer and encoded splits,
the model, the loss's training-split statistics, the training method, the optimiser, the step
function (the loop's, or the CUDA-graph replay) and the learning-rate schedule."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from hydra.utils import instantiate
from transformers import get_scheduler

from hamr.algorithm.rates import steps_per_epoch
from hamr.config import ConfigError
from hamr.cuda_graphs import GraphedTraining, graph_ready_optimizer
from hamr.data.encode import IGNORE_INDEX, EncodedSplit, collator_for, encode_split_cached
from hamr.loop import RunContext, train_step
from hamr.models import build_model, load_tokenizer

log = logging.getLogger(__name__)


def pick_device(name: str) -> torch.device:
    """``trainer.device``: ``auto`` is CUDA when there is one, else the CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def load_encoder(model_cfg, task: str, label_names: list[str]):
    """Tokenizer and model, a failure to find or fetch them as one ConfigError line."""
    try:
        return load_tokenizer(model_cfg), build_model(model_cfg, task, label_names)
    except OSError as err:  # not on the Hub, no network, a broken folder
        raise ConfigError(
            f"config: model.name_or_path={model_cfg.name_or_path} could not be loaded: "
            f"{str(err).splitlines()[0]} (a local folder, a reachable Hub id, or package:<module>)"
        ) from None


def encode_splits(task_data, tokenizer, max_length: int, cache_dir: Path, name: str) -> dict[str, EncodedSplit]:
    """train, dev and test tokenised (cached on disk), with what was cut or dropped logged."""
    encoded = {
        split: encode_split_cached(
            task_data.split(split), task_data.task, task_data.label2id, tokenizer, max_length, cache_dir
        )
        for split in ("train", "dev", "test")
    }
    for split, data in encoded.items():
        if data.truncated:
            log.warning(
                "%s: %d of %d %s examples are longer than max_length=%d and are truncated",
                name,
                data.truncated,
                len(data),
                split,
                max_length,
            )
        if data.unrepresented:
            log.warning(
                "%s: %d %s words have no sub-word in the tokenizer (e.g. zero-width spaces): they are "
                "not trained on and are predicted O",
                name,
                data.unrepresented,
                split,
            )
    return encoded


def train_label_counts(train: EncodedSplit, task: str, n_labels: int) -> torch.Tensor:
    """(C,) how often each label id occurs in the training split (NER: first sub-words)."""
    labels = torch.tensor([y for f in train.features for y in (f["labels"] if task == "ner" else [f["labels"]])])
    return torch.bincount(labels[labels != IGNORE_INDEX], minlength=n_labels)


@dataclass
class Components:
    device: torch.device
    encoded: dict[str, EncodedSplit]
    collate: Any
    model: torch.nn.Module
    method: Any  # a hamr.loop.TrainingMethod
    optimizer: torch.optim.Optimizer
    step_fn: Any  # hamr.loop.train_step, or a hamr.cuda_graphs.GraphedTraining
    scheduler: Any


def build_components(cfg, settings, task_data, loss) -> Components:
    """Everything :func:`hamr.loop.fit` needs for this run (``loss``: the checked loss object)."""
    ds, tr = settings.dataset, settings.trainer
    device = pick_device(tr.device)
    if tr.cuda_graphs and device.type != "cuda":
        raise ConfigError(
            f"config: trainer.cuda_graphs=true is invalid on device {device}; allowed: a CUDA device "
            "(set trainer.cuda_graphs=false, or trainer.device=cuda on a GPU machine)"
        )
    if device.type == "cpu":
        torch.use_deterministic_algorithms(True, warn_only=True)
    tokenizer, model = load_encoder(settings.model, ds.task, task_data.label_names)
    encoded = encode_splits(task_data, tokenizer, tr.max_length, Path(settings.paths.cache_dir), ds.name)
    collate = collator_for(ds.task, tokenizer)
    loss.prepare(train_label_counts(encoded["train"], ds.task, len(task_data.label_names)))
    model, loss = model.to(device), loss.to(device)
    context = RunContext(settings, task_data, encoded, collate, model, loss, device, Path(settings.paths.cache_dir))
    method = instantiate(cfg.method)(context)
    if tr.cuda_graphs:
        optimizer = graph_ready_optimizer(
            torch.optim.AdamW, model.parameters(), lr=tr.lr, device=device, weight_decay=tr.weight_decay
        )
        step_fn = GraphedTraining(
            model,
            method,
            optimizer,
            grad_clip=tr.grad_clip,
            batch_size=tr.batch_size,
            lengths=tr.graph_lengths or [tr.max_length],
            pad_token_id=tokenizer.pad_token_id or 0,
            device=device,
        )
    else:
        optimizer, step_fn = torch.optim.AdamW(model.parameters(), lr=tr.lr, weight_decay=tr.weight_decay), train_step
    total_steps = tr.epochs * steps_per_epoch(method.epoch_size(len(encoded["train"])), tr.batch_size)
    scheduler = get_scheduler(
        tr.scheduler, optimizer, num_warmup_steps=int(tr.warmup_ratio * total_steps), num_training_steps=total_steps
    )
    return Components(device, encoded, collate, model, method, optimizer, step_fn, scheduler)
