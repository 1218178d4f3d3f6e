"""hamr.hf.HamrTrainer: the same HAMR as the project's loop, inside transformers.Trainer.

Equivalence runs both on identical data, seeds and optimiser (AdamW, linear schedule, clip 1, no
weight decay) with a tiny random BERT (dropout 0, float64) and compares everything HAMR keeps."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader
from transformers import TrainingArguments, get_linear_schedule_with_warmup

from hamr import hf
from hamr.algorithm.method import HamrMethod, endless, hamr_epoch_size
from hamr.algorithm.neighbors import knn_graph
from hamr.algorithm.rates import step_rates, steps_per_epoch
from hamr.config import HamrConfig, MetaConfig
from hamr.data.encode import IGNORE_INDEX, EncodedSplit
from hamr.hf import ABLATIONS, HamrTrainer
from hamr.loop import fit
from hamr.losses import CrossEntropyLoss
from tests.algorithm.test_meta_step import tiny_model

N_TRAIN, N_DEV, LENGTH, BATCH, LR, SEED, EPOCHS = 22, 10, 6, 4, 1e-3, 3, 2


def features(task: str, n: int, seed: int) -> EncodedSplit:
    g = torch.Generator().manual_seed(seed)
    rows = []
    for i in range(n):
        if task == "cls":
            labels = int(torch.randint(0, 3, (1,), generator=g))
        else:
            labels = torch.randint(0, 3, (LENGTH,), generator=g).tolist()
            labels[0] = labels[-1] = IGNORE_INDEX  # the special tokens
        rows.append(
            {
                "input_ids": torch.randint(1, 50, (LENGTH,), generator=g),
                "attention_mask": torch.ones(LENGTH, dtype=torch.long),
                "labels": labels,
                "index": i,
            }
        )
    return EncodedSplit(rows, 0)


def collate(rows: list[dict]) -> dict:
    return {
        k: torch.stack([r[k] for r in rows]) if torch.is_tensor(rows[0][k]) else torch.tensor([r[k] for r in rows])
        for k in rows[0]
    }


def hamr_values(**changes) -> HamrConfig:
    values = dict(meta_batch_size=4, weight_net_hidden=8, k=3, hard_ratio=0.25, weight_net_travel=0.5)
    return HamrConfig(**{**values, **changes})


def embeddings(n: int) -> np.ndarray:
    rows = np.random.default_rng(0).normal(size=(n, 8)).astype(np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


class Recorder:
    """Wraps a HamrMethod's epoch_order and next_extra_batches to keep what they gave."""

    def __init__(self, method: HamrMethod):
        self.orders, self.meta_ids = [], []
        order, extra = method.epoch_order, method.next_extra_batches

        def epoch_order(*args):
            self.orders.append(order(*args).clone())
            return self.orders[-1]

        def next_extra_batches():
            batches = extra()
            self.meta_ids += [b["input_ids"].clone() for b in batches]
            return batches

        method.epoch_order, method.next_extra_batches = epoch_order, next_extra_batches


def loop_run(task: str, hp: HamrConfig, ablation: str = "full", epochs: int = EPOCHS, device="cpu", precision="fp32"):
    """The project's loop (hamr.loop.fit) with a HamrMethod built as build_hamr_method builds it
    (float64 on the CPU; float32 with ``precision`` autocast on another ``device``)."""
    train, dev = features(task, N_TRAIN, 0), features(task, N_DEV, 1)
    model = tiny_model(task).train() if device == "cpu" else tiny_model(task).float().to(device).train()
    ablation_config = ABLATIONS[ablation]
    per_epoch = steps_per_epoch(hamr_epoch_size(hp, ablation_config, N_TRAIN), BATCH)
    rates = step_rates(hp, trainer_lr=LR, steps_per_epoch=per_epoch, epochs=epochs)

    def meta_stream():
        loader = DataLoader(
            dev.features, batch_size=hp.meta_batch_size, shuffle=True, collate_fn=collate,
            generator=torch.Generator().manual_seed(SEED),
        )  # fmt: skip
        return endless(loader)

    labels = [r["labels"] for r in train.features]
    method = HamrMethod(
        name="hamr_full",
        loss=CrossEntropyLoss(),
        hp=hp,
        rates=rates,
        ablation=ablation_config,
        task=task,
        device=torch.device(device),
        pool=np.arange(N_TRAIN),
        n_train=N_TRAIN,
        meta_batches=meta_stream(),
        neighbours=knn_graph(embeddings(N_TRAIN), hp.k),
        pool_classes=hf.pool_classes(labels, task, model.config.id2label),
        seed=SEED,
        restart_meta_batches=meta_stream,
        precision=precision,
    )
    recorder = Recorder(method)
    optimizer = torch.optim.AdamW(model.parameters(), lr=LR, weight_decay=0.0)
    scheduler = get_linear_schedule_with_warmup(optimizer, 0, per_epoch * epochs)
    result = fit(
        model, method, train, collate, optimizer, scheduler, epochs=epochs, batch_size=BATCH, grad_clip=1.0,
        seed=SEED, evaluate_dev=lambda: {"macro_f1": 0.0, "micro_f1": 0.0}, log_metrics=lambda *a: None,
        progress_bar=False,
    )  # fmt: skip
    return model, method, recorder, result.history


def trainer_args(output_dir, **changes) -> TrainingArguments:
    values = dict(
        output_dir=str(output_dir), per_device_train_batch_size=BATCH, num_train_epochs=EPOCHS, learning_rate=LR,
        weight_decay=0.0, lr_scheduler_type="linear", warmup_steps=0, max_grad_norm=1.0, optim="adamw_torch",
        seed=SEED, report_to=[], save_strategy="no", eval_strategy="no", use_cpu=True, disable_tqdm=True,
    )  # fmt: skip
    return TrainingArguments(**{**values, **changes})


def make_trainer(task, hp, output_dir, ablation="full", model=None, **changes) -> HamrTrainer:
    return HamrTrainer(
        model=model if model is not None else tiny_model(task).train(),
        args=trainer_args(output_dir, **changes),
        train_dataset=features(task, N_TRAIN, 0),
        meta_dataset=features(task, N_DEV, 1),
        data_collator=collate,
        hamr=hp,
        ablation=ablation,
        embeddings=embeddings(N_TRAIN),
    )


def trainer_run(task, hp, output_dir, ablation="full", resume=None, **changes):
    trainer = make_trainer(task, hp, output_dir, ablation, **changes)
    trainer.get_train_dataloader_orig = trainer.get_train_dataloader
    recorders = []

    def get_train_dataloader():  # record the method's orders and meta batches once it is built
        loader = trainer.get_train_dataloader_orig()
        if not recorders:
            recorders.append(Recorder(trainer.hamr_method))
        return loader

    trainer.get_train_dataloader = get_train_dataloader
    trainer.train(resume_from_checkpoint=resume)
    return trainer, recorders[0]


def assert_same_state(model_a, method_a, model_b, method_b, rtol=1e-7):
    for (name, a), b in zip(model_a.state_dict().items(), model_b.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=rtol, atol=1e-10, msg=f"model parameter {name}")
    for a, b in zip(method_a.weight_net.parameters(), method_b.weight_net.parameters()):
        torch.testing.assert_close(a, b, rtol=rtol, atol=1e-10, msg="f_θ")
    adam_a, adam_b = method_a.weight_optimizer.state_dict()["state"], method_b.weight_optimizer.state_dict()["state"]
    for key in adam_a:
        for field in ("exp_avg", "exp_avg_sq"):
            torch.testing.assert_close(adam_a[key][field], adam_b[key][field], rtol=rtol, atol=1e-12, msg="Adam")
    np.testing.assert_allclose(method_a.h, method_b.h, rtol=rtol, err_msg="h")
    np.testing.assert_allclose(method_a.b, method_b.b, rtol=rtol, err_msg="b")
    assert method_a.steps == method_b.steps and method_a.meta_batches_consumed == method_b.meta_batches_consumed


@pytest.mark.parametrize("task", ["cls", "ner"])
def test_the_trainer_ends_where_the_loop_ends(task, tmp_path):
    hp = hamr_values()
    model_a, method_a, recorder_a, history = loop_run(task, hp)
    trainer, recorder_b = trainer_run(task, hp, tmp_path)
    assert method_a.steps == math.ceil(hamr_epoch_size(hp, ABLATIONS["full"], N_TRAIN) / BATCH) * EPOCHS
    assert_same_state(model_a, method_a, trainer.model, trainer.hamr_method)
    assert len(recorder_a.orders) == len(recorder_b.orders) == EPOCHS
    for a, b in zip(recorder_a.orders, recorder_b.orders):
        assert torch.equal(a, b)
    assert len(recorder_a.meta_ids) == len(recorder_b.meta_ids) == method_a.steps
    for a, b in zip(recorder_a.meta_ids, recorder_b.meta_ids):
        assert torch.equal(a, b)
    assert len(trainer.hamr_history) == EPOCHS
    for row, logged in zip(history, trainer.hamr_history):
        for key, value in logged.items():
            assert key.startswith("hamr/")
            np.testing.assert_allclose(value, row[key[len("hamr/") :]], rtol=1e-6, err_msg=key)
    # HAMR moved: the comparison is not of two untouched initialisations
    assert method_a.h.std() > 0 and method_a.b.max() > 0


@pytest.mark.parametrize("ablation", ["no_meta_weight", "no_resampling", "no_neighbor_boost"])
def test_every_ablation_matches_the_loop(ablation, tmp_path):
    hp = hamr_values()
    model_a, method_a, _, _ = loop_run("cls", hp, ablation)
    trainer, _ = trainer_run("cls", hp, tmp_path, ablation)
    assert_same_state(model_a, method_a, trainer.model, trainer.hamr_method)


def test_meta_every_k_matches_the_loop(tmp_path):
    hp = hamr_values(meta=MetaConfig(every=2))
    model_a, method_a, _, _ = loop_run("cls", hp)
    trainer, _ = trainer_run("cls", hp, tmp_path)
    assert_same_state(model_a, method_a, trainer.model, trainer.hamr_method)
    assert trainer.hamr_method.meta_batches_consumed == math.ceil(trainer.hamr_method.steps / 2)


class TwoGpuArguments(TrainingArguments):
    """TrainingArguments that report two GPUs in one process (DataParallel), on a CPU machine."""

    @property
    def n_gpu(self):
        return 2


REFUSED = {
    "fp16": ({"fp16": True}, "fp16=True: GradScaler does not scale the meta step's torch.autograd.grad; use bf16=True"),
    "torch_compile": ({"torch_compile": True}, "torch_compile=True: torch.compile's aot_autograd refuses"),
    "deepspeed": ({"deepspeed": {"zero_optimization": {"stage": 2}}}, "deepspeed: DeepSpeed owns the backward"),
    "fsdp": ({"fsdp": "full_shard"}, "fsdp: FSDP shards the parameters the virtual step updates; use DDP"),
    "ddp_static_graph": ({"ddp_static_graph": True}, "ddp_static_graph=True: DDP loses gradient synchronisation"),
    "reentrant": (
        {"activation_checkpointing": True, "activation_checkpointing_kwargs": {"use_reentrant": True}},
        "reentrant checkpointing cannot run the meta step's double backward; use {'use_reentrant': False}",
    ),
    "label_smoothing": ({"label_smoothing_factor": 0.1}, "label_smoothing_factor: HAMR weighs plain per-example"),
    "liger": ({"use_liger_kernel": True}, "use_liger_kernel=True: Liger's fused loss returns no logits"),
    "group_by_length": ({"train_sampling_strategy": "group_by_length"}, "HAMR's sampler draws the epochs"),
    "lomo": ({"optim": "lomo"}, "optim='lomo': LOMO fuses backward and update"),
}


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_a_setting_that_would_make_hamr_wrong_is_refused_in_one_line(name, tmp_path):
    changes, message = REFUSED[name]
    args = trainer_args(tmp_path)
    for key, value in changes.items():  # set after construction: some need a GPU or a package to construct
        setattr(args, key, value)
    with pytest.raises(ValueError, match="^HamrTrainer refuses ") as raised:
        HamrTrainer(
            model=tiny_model().train(),
            args=args,
            train_dataset=features("cls", N_TRAIN, 0),
            meta_dataset=features("cls", N_DEV, 1),
            data_collator=collate,
            embeddings=embeddings(N_TRAIN),
        )
    assert message in str(raised.value) and "\n" not in str(raised.value)


def refused_message(model=None, train_dataset=None, args=None, **kwargs) -> str:
    with pytest.raises(ValueError) as raised:
        HamrTrainer(
            model=model if model is not None else tiny_model().train(), args=args,
            train_dataset=train_dataset if train_dataset is not None else features("cls", N_TRAIN, 0),
            meta_dataset=features("cls", N_DEV, 1), data_collator=collate, embeddings=embeddings(N_TRAIN), **kwargs,
        )  # fmt: skip
    assert "\n" not in str(raised.value)
    return str(raised.value)


class Stream(torch.utils.data.IterableDataset):
    def __iter__(self):
        yield from features("cls", N_TRAIN, 0)


def test_refusals_of_the_data_the_head_the_loss_and_the_launch(tmp_path):
    args = trainer_args(tmp_path)
    assert "an IterableDataset" in refused_message(train_dataset=Stream(), args=args)
    multi = tiny_model()
    multi.config.problem_type = "multi_label_classification"
    assert "problem_type='multi_label_classification'" in refused_message(model=multi, args=args)
    regression = tiny_model(num_labels=1)
    assert "regression" in refused_message(model=regression, args=args)
    assert "compute_loss_func: HAMR computes" in refused_message(args=args, compute_loss_func=lambda *a, **k: 0)
    assert "hamr.meta_set='balanced'" in refused_message(args=args, hamr={"meta_set": "balanced"})
    assert "unknown keys ['tau_']" in refused_message(args=args, hamr={"tau_": 1.0})
    assert "ablation='none'" in refused_message(args=args, ablation="none")
    assert "DataParallel" in refused_message(args=TwoGpuArguments(**trainer_args(tmp_path).to_dict()))


def test_the_defaults_are_the_config_files_with_lambda_by_task_and_the_meta_batch_of_the_training_batch():
    from hamr.config import DEFAULT_LAMBDA

    for task in ("cls", "ner"):
        hp = hf.hamr_config(None, task, batch_size=24)
        assert hp.lambda_ == DEFAULT_LAMBDA[task] and hp.meta_batch_size == 24
        assert hp.tau == HamrConfig().tau and hp.weight_net_travel == HamrConfig().weight_net_travel
    assert hf.hamr_config({"tau": 2.0}, "cls", 8).tau == 2.0


# --- resume --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def checkpointed(tmp_path_factory):
    """An uninterrupted run that saves a checkpoint at every step (HAMR's state beside each)."""
    output = tmp_path_factory.mktemp("every_step")
    trainer, _ = trainer_run("cls", hamr_values(), output, save_strategy="steps", save_steps=1)
    return trainer, output


@pytest.mark.parametrize("step", [3, 7], ids=["mid_epoch", "last_step_of_an_epoch"])
def test_a_resumed_run_ends_where_the_uninterrupted_one_ends(checkpointed, step, tmp_path):
    uninterrupted, output = checkpointed
    assert (
        uninterrupted.hamr_method.epoch_size(N_TRAIN) / BATCH
        <= 7
        < uninterrupted.hamr_method.epoch_size(N_TRAIN) / BATCH + 1
    )
    resumed, _ = trainer_run("cls", hamr_values(), tmp_path, resume=str(output / f"checkpoint-{step}"))
    assert_same_state(uninterrupted.model, uninterrupted.hamr_method, resumed.model, resumed.hamr_method)
    assert resumed.hamr_history == uninterrupted.hamr_history


def test_resuming_from_a_checkpoint_without_hamrs_state_stops_with_one_line(checkpointed, tmp_path):
    import shutil

    _, output = checkpointed
    folder = tmp_path / "checkpoint-3"
    shutil.copytree(output / "checkpoint-3", folder)
    (folder / hf.STATE_FILE).unlink()
    trainer = make_trainer("cls", hamr_values(), tmp_path)
    with pytest.raises(ValueError, match=r"has no hamr_state\.pt \(not saved by HamrTrainer\)"):
        trainer.train(resume_from_checkpoint=str(folder))


def test_hamrs_checkpoint_is_data_read_with_weights_only(checkpointed):
    _, output = checkpointed
    payload = (output / "checkpoint-3" / hf.STATE_FILE).read_bytes()
    state = hf.decode_checkpoint(payload)  # header and checksum checked, then torch.load(weights_only=True)
    assert set(state) >= {"method", "generator", "order", "epochs_begun"}


# --- DDP -----------------------------------------------------------------------------------------
def ddp_run(out, *extra) -> tuple[dict, dict]:
    """Two CPU processes (gloo) under torchrun; returns what rank 0 and rank 1 ended with."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    torchrun = Path(sys.executable).with_name("torchrun")
    env = {**os.environ, "PYTHONPATH": str(root), "OMP_NUM_THREADS": "1"}
    command = [str(torchrun), "--nproc_per_node", "2", "-m", "tests.workers.hf_ddp", str(out), *extra]
    done = subprocess.run(command, cwd=root, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return tuple(torch.load(out / f"rank{r}.pt", weights_only=True) for r in (0, 1))


def largest_model_gap(a: dict, b: dict) -> float:
    return max((a["model"][k] - b["model"][k]).abs().max().item() for k in a["model"])


@pytest.mark.slow
def test_two_ddp_processes_end_with_the_same_model_theta_hardness_and_orders(tmp_path):
    a, b = ddp_run(tmp_path)
    assert a["world_size"] == 2 and a["steps"] == b["steps"] == 2 * math.ceil(math.ceil(27 / BATCH) / 2)
    assert largest_model_gap(a, b) == 0
    for x, y in zip(a["theta"], b["theta"]):
        assert torch.equal(x, y)
    assert torch.equal(a["h"], b["h"]) and torch.equal(a["b"], b["b"]) and a["h"].std() > 0
    assert len(a["orders"]) == EPOCHS and all(torch.equal(x, y) for x, y in zip(a["orders"], b["orders"]))


@pytest.mark.slow
def test_a_training_forward_through_the_bare_module_is_caught(tmp_path):
    """The regression the DDP test exists for: without the DDP wrapper the real backward never
    synchronises, and the ranks' models drift apart."""
    a, b = ddp_run(tmp_path, "bare")
    assert largest_model_gap(a, b) > 1e-4


# --- Trainer features ------------------------------------------------------------------------------
def macro_f1(prediction) -> dict:
    from sklearn.metrics import f1_score

    return {"macro_f1": f1_score(prediction.label_ids, prediction.predictions.argmax(-1), average="macro")}


def test_evaluation_best_model_early_stopping_metrics_and_logs_work_with_hamr(tmp_path):
    from transformers import EarlyStoppingCallback, TrainerCallback

    class Capture(TrainerCallback):
        def __init__(self):
            self.logs = []

        def on_log(self, args, state, control, logs=None, **kwargs):
            self.logs.append(dict(logs or {}))

    capture = Capture()
    trainer = HamrTrainer(
        model=tiny_model().train(),
        args=trainer_args(
            tmp_path,
            num_train_epochs=4,
            eval_strategy="epoch",
            save_strategy="epoch",
            load_best_model_at_end=True,
            metric_for_best_model="macro_f1",
            save_total_limit=1,
            lr_scheduler_type="cosine",
        ),  # fmt: skip
        train_dataset=features("cls", N_TRAIN, 0),
        eval_dataset=features("cls", N_DEV, 1),  # also the meta set
        data_collator=collate,
        hamr=hamr_values(),
        embeddings=embeddings(N_TRAIN),
        compute_metrics=macro_f1,
        callbacks=[EarlyStoppingCallback(early_stopping_patience=1, early_stopping_threshold=1.0), capture],
    )
    trainer.train()
    evaluations = [log for log in capture.logs if "eval_macro_f1" in log]
    hamr_logs = [log for log in capture.logs if "hamr/weight_curve_spread" in log]
    assert len(evaluations) == 2 and len(hamr_logs) == 2  # stopped by EarlyStoppingCallback after epoch 2
    assert all(log["eval_loss"] > 0 for log in evaluations)
    steps = trainer.hamr_method.steps
    evaluation = trainer.evaluate()  # unweighted, and HAMR's state untouched
    assert trainer.hamr_method.steps == steps and "eval_macro_f1" in evaluation
    assert trainer.state.best_model_checkpoint is not None


def test_max_steps_gradient_accumulation_and_another_optimiser(tmp_path):
    trainer, _ = trainer_run(
        "cls",
        hamr_values(),
        tmp_path,
        max_steps=5,
        gradient_accumulation_steps=2,
        optim="sgd",
        lr_scheduler_type="constant",
    )
    method = trainer.hamr_method
    assert trainer.state.global_step == 5
    # one meta step per micro-batch: 7 an epoch in updates of 2, 2, 2, 1, then 2 of epoch 2
    assert method.steps == method.meta_batches_consumed == 9
    assert method.rates.meta_steps == 9  # f_θ's lr from the micro-batches the run takes
    assert len(trainer.hamr_history) == 2  # 7 micro-batches an epoch: the second ends at max_steps


def test_a_lora_model_trains_its_adapters_and_f_theta(tmp_path):
    from peft import LoraConfig, get_peft_model

    model = get_peft_model(
        tiny_model().train(), LoraConfig(r=2, target_modules=["query", "value"], modules_to_save=["classifier"])
    )
    frozen = {n: p.detach().clone() for n, p in model.named_parameters() if not p.requires_grad}
    trainer = HamrTrainer(
        model=model,
        args=trainer_args(tmp_path),
        train_dataset=features("cls", N_TRAIN, 0),
        meta_dataset=features("cls", N_DEV, 1),
        data_collator=collate,
        hamr=hamr_values(),
        embeddings=embeddings(N_TRAIN),
    )
    initial = [p.detach().clone() for p in trainer.model.parameters() if p.requires_grad]
    trainer.train()
    assert trainer.hamr_task == "cls"
    trained = [p for p in trainer.model.parameters() if p.requires_grad]
    assert all(not torch.equal(a, b) for a, b in zip(initial, trained) if a.abs().sum() > 0)
    assert all(torch.equal(p, frozen[n]) for n, p in trainer.model.named_parameters() if n in frozen)
    assert trainer.hamr_history[-1]["hamr/weight_curve_spread"] > 0.01


def test_non_reentrant_gradient_checkpointing_gives_the_run_without_it(tmp_path):
    hp = hamr_values()
    plain, _ = trainer_run("cls", hp, tmp_path / "plain")
    checkpointed, _ = trainer_run("cls", hp, tmp_path / "checkpointed", activation_checkpointing=True)
    assert any(getattr(m, "gradient_checkpointing", False) for m in checkpointed.model.modules())
    assert_same_state(plain.model, plain.hamr_method, checkpointed.model, checkpointed.hamr_method)


@pytest.mark.parametrize("dataset", ["cyclone_idai_2019", "bionlp2004"])
def test_the_trainers_defaults_are_the_loops(dataset, compose_cfg):
    """HamrTrainer without ``hamr=`` trains with the values `python -m hamr.train method=hamr` composes
    (conf/hamr/default.yaml without a profile) for the same task and batch size."""
    from hamr.config import validate

    settings = validate(compose_cfg([f"dataset={dataset}", "method=hamr", "logger=none"]))
    assert hf.hamr_config(None, settings.dataset.task, settings.trainer.batch_size) == settings.hamr
