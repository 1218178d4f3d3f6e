"""Bad input stops the run before the model loads, with one line naming file, record and fix."""

from __future__ import annotations

import json

import pytest

from hamr.data.records import DataError
from tests.conftest import write_cls, write_ner

GOOD_NER = [(["Ann", "went", "home"], ["B-PER", "O", "O"]), (["In", "Paris"], ["O", "B-LOC"])]
GOOD_CLS = [("good film", "pos"), ("bad film", "neg")]


def ner_folder(tmp_path, train=GOOD_NER, dev=GOOD_NER, test=GOOD_NER):
    return write_ner(tmp_path / "mine", {"train": train, "dev": dev, "test": test})


def cls_folder(tmp_path, train=GOOD_CLS, dev=GOOD_CLS, test=GOOD_CLS):
    return write_cls(tmp_path / "mine", {"train": train, "dev": dev, "test": test})


def append(path, text):
    with open(path, "a") as f:
        f.write(text)


CASES = {
    "malformed JSON line": ("ner", lambda d: append(d / "train.json", '{"tokens": ["a"], "ner_tags": ["O"]\n'),
                            r"train.json: line 3: invalid JSON .*Fix: write one"),
    "tokens and tags of different lengths": ("ner", lambda d: append(d / "dev.json", json.dumps({"tokens": ["a", "b"], "ner_tags": ["O"]}) + "\n"),
                                             r"dev.json: line 3: 2 tokens but 1 tags\. Fix: give exactly one tag per token"),
    "test label never in train": ("cls", lambda d: (d / "test.json").write_text(json.dumps([{"text": "x", "label_text": "neutral"}])),
                                  r"test.json: record 0: class 'neutral' never occurs in train .*Fix: add training examples"),
    "unseen entity type in dev": ("ner", lambda d: append(d / "dev.json", json.dumps({"tokens": ["IBM"], "ner_tags": ["B-ORG"]}) + "\n"),
                                  r"dev.json: sentence 2: entity type 'ORG' never occurs in train"),
    "empty split": ("cls", lambda d: (d / "dev.json").write_text("[]"), r"dev.json: whole file: the split is empty\. Fix: add examples"),
    "empty NER split": ("ner", lambda d: (d / "test.json").write_text(""), r"test.json: whole file: the split is empty"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_stops_before_the_model_loads(tmp_path, compose_cfg, monkeypatch, case):
    import hamr.train

    task, damage, message = CASES[case]
    folder = ner_folder(tmp_path) if task == "ner" else cls_folder(tmp_path)
    damage(folder)
    base = "mit_restaurant" if task == "ner" else "sst5"
    cfg = compose_cfg([f"dataset={base}", f"dataset.dir={folder}", f"paths.results_dir={tmp_path}/results",
                       "logger=none"], output_dir=tmp_path / "out")

    def no_model(*args, **kwargs):
        raise AssertionError("the model must not load on bad input")

    monkeypatch.setattr(hamr.train, "build_model", no_model)
    monkeypatch.setattr(hamr.train, "load_tokenizer", no_model)
    with pytest.raises(DataError, match=message) as err:
        hamr.train.run(cfg)
    assert "\n" not in str(err.value) and str(folder) in str(err.value)
    assert not (tmp_path / "results").exists()


def test_cli_prints_one_line_and_fails(tmp_path, data_dir):
    from tests.test_train import train_cli

    folder = cls_folder(tmp_path)
    (folder / "dev.json").write_text("[]")
    proc = train_cli("dataset=sst5", f"dataset.dir={folder}", "logger=none", f"paths.results_dir={tmp_path}/r",
                     f"hydra.run.dir={tmp_path}/out", data_dir=data_dir)
    assert proc.returncode != 0
    assert proc.stderr.strip().splitlines()[-1].startswith(f"error: {folder}/dev.json: whole file: the split is empty")
    assert "Traceback" not in proc.stderr


def test_cli_unknown_dataset_lists_the_choices(tmp_path, data_dir):
    from tests.test_train import train_cli

    proc = train_cli("dataset=sst-5", f"hydra.run.dir={tmp_path}/out", data_dir=data_dir)
    assert proc.returncode != 0
    assert "Could not find 'dataset/sst-5'" in proc.stderr and "sst5" in proc.stderr
