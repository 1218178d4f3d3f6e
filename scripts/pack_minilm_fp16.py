"""MiniLM's weights in fp16, for a transfer capped in size (the lent GPU's 64 MiB working tree):
    python scripts/pack_minilm_fp16.py MODEL_DIR OUT.safetensors DATA.json [DATA.json ...]
The word-embedding rows that the given splits never look up are zeroed, so the file compresses
(xz: 87 MiB -> about 26 MiB); on those splits the model computes what the fp16-rounded MiniLM computes.
The GPU bundle (scripts/offline_gpu_bundle.sh, WEIGHTS_FOR=...) casts it back to fp32 before a run."""

import argparse
import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from transformers import AutoTokenizer


def looked_up_ids(tokenizer, split_file: Path) -> set[int]:
    """Every token id the split's examples (classification text, or NER words) can be encoded to."""
    ids: set[int] = set()
    for example in json.loads(split_file.read_text()):
        if "tokens" in example:  # NER: words are encoded one by one and as a sentence
            ids.update(tokenizer(" ".join(example["tokens"]))["input_ids"])
            for word in example["tokens"]:
                ids.update(tokenizer(word, add_special_tokens=False)["input_ids"])
        else:
            ids.update(tokenizer(example["text"])["input_ids"])
    return ids


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model_dir", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("splits", type=Path, nargs="+", help="JSON splits whose token ids keep their rows")
    args = parser.parse_args()
    tokenizer = AutoTokenizer.from_pretrained(args.model_dir)
    kept = set(tokenizer.all_special_ids)
    for split in args.splits:
        kept |= looked_up_ids(tokenizer, split)
    state = load_file(args.model_dir / "model.safetensors")
    name = next(key for key in state if key.endswith("word_embeddings.weight"))
    keep = torch.zeros(state[name].shape[0], dtype=torch.bool)
    keep[sorted(kept)] = True
    state[name] = state[name] * keep[:, None]
    save_file({key: value.to(torch.float16).contiguous() for key, value in state.items()}, args.out)
    print(f"{args.out}: fp16, {name} keeps {int(keep.sum())} of {keep.numel()} rows")


if __name__ == "__main__":
    main()
