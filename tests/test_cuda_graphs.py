"""The graph-capturable step functions and GraphedTraining (trainer.cuda_graphs) against the loop's
own step, run eagerly on the CPU (their capture and replay is in tests/test_gpu.py), and the padding
to a fixed shape."""

from __future__ import annotations

import copy
import signal

import numpy as np
import pytest
import torch
from transformers import get_scheduler

from hamr.checkpoint import Checkpointer, Stopped
from hamr.cuda_graphs import GraphedTraining, graph_ready_optimizer, lr_on_device, pad_batch
from hamr.loop import BaselineMethod, fit, train_step
from hamr.losses import CrossEntropyLoss
from hamr.steps import ce_step, hamr_step
from tests.algorithm.test_meta_step import batch, tiny_model
from tests.algorithm.test_method import make_method, train_batch
from tests.test_loop import PoisonedLoss, collate, data

CPU = torch.device("cpu")


def test_pad_batch_pads_tokens_with_their_pad_values_and_leaves_sentence_labels():
    b = {
        "input_ids": torch.tensor([[5, 6]]),
        "attention_mask": torch.tensor([[1, 1]]),
        "labels": torch.tensor([[1, -100]]),
        "index": torch.tensor([3]),
    }
    padded = pad_batch(b, 4, pad_token_id=9)
    assert padded["input_ids"].tolist() == [[5, 6, 9, 9]]
    assert padded["attention_mask"].tolist() == [[1, 1, 0, 0]]
    assert padded["labels"].tolist() == [[1, -100, -100, -100]]
    assert padded["index"].tolist() == [3]
    sentence = pad_batch({"input_ids": torch.tensor([[5]]), "labels": torch.tensor([2])}, 3)
    assert sentence["labels"].tolist() == [2]
    with pytest.raises(ValueError, match="'input_ids' has length 2 > 1"):
        pad_batch(b, 1)


def assert_same_parameters(a: torch.nn.Module, b: torch.nn.Module) -> None:
    for (name, p), q in zip(a.named_parameters(), b.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-9, atol=1e-12, msg=name)


def test_the_hamr_step_function_moves_model_and_weight_net_as_the_loops_step():
    """One step of ``hamr_step`` on the batch padded by three tokens (masked padding) against
    ``train_step`` with ``HamrMethod`` on the batch as collated: same model, same f_θ after."""
    method = make_method("full")
    model = tiny_model()
    twin, twin_net = copy.deepcopy(model), copy.deepcopy(method.weight_net)
    b = train_batch([1, 4, 7, 9, 10])
    train_step(model, method, b, torch.optim.AdamW(model.parameters(), lr=1e-2), None, grad_clip=1.0)

    net_optimizer = torch.optim.Adam(
        twin_net.parameters(), lr=method.rates.weight_net_lr, weight_decay=method.hp.weight_net_weight_decay
    )
    step = hamr_step(
        twin,
        twin_net,
        net_optimizer,
        torch.optim.AdamW(twin.parameters(), lr=1e-2),
        example_loss=method.example_loss,
        meta_loss=CrossEntropyLoss(),
        inner_lr=method.rates.inner_lr,
        clip=(method.hp.weight_clip_low, method.hp.weight_clip_high),
    )
    meta_x, meta_y = batch(4, seed=100)  # the first meta batch make_method's stream yields
    loss, flags, signal, w_post, meta_loss = step(pad_batch(b, 9), pad_batch({**meta_x, "labels": meta_y}, 7))
    assert signal.shape == w_post.shape == (5,) and flags.tolist() == [True, True]
    torch.testing.assert_close(meta_loss, method._epoch_meta_losses[0])
    torch.testing.assert_close(w_post, method._epoch_weights[0])
    assert_same_parameters(model, twin)
    assert_same_parameters(method.weight_net, twin_net)


def test_the_ce_step_function_moves_the_model_as_the_loops_step():
    model = tiny_model()
    twin = copy.deepcopy(model)
    b = train_batch([0, 1, 2, 3])
    train_step(
        model,
        BaselineMethod(CrossEntropyLoss(), "ce", CPU),
        b,
        torch.optim.AdamW(model.parameters(), lr=1e-2),
        None,
        grad_clip=1.0,
    )
    loss, flags = ce_step(twin, CrossEntropyLoss(), torch.optim.AdamW(twin.parameters(), lr=1e-2))(pad_batch(b, 10))
    assert loss.shape == () and flags.tolist() == [True]
    assert_same_parameters(model, twin)


# --- trainer.cuda_graphs: GraphedTraining in the loop -------------------------------------------


def fit_with(step: str, method, device=CPU, epochs: int = 2, dtype=torch.float64, checkpointer=None, stop_after=None):
    """``fit`` over 12 examples in batches of 4 with a graph-ready AdamW and a linear schedule, each
    step by the loop's ``train_step`` (``step="loop"``) or by GraphedTraining, eager or captured;
    with ``stop_after`` steps, as if SIGTERM came then (the checkpointer saves, Stopped is raised)."""
    model = tiny_model().to(device, dtype).train()
    optimizer = graph_ready_optimizer(torch.optim.AdamW, model.parameters(), lr=1e-2, device=device, weight_decay=0.01)
    scheduler = get_scheduler("linear", optimizer, num_warmup_steps=0, num_training_steps=4 * epochs)
    step_fn = (
        train_step
        if step == "loop"
        else GraphedTraining(
            model,
            method,
            optimizer,
            grad_clip=1.0,
            batch_size=4,
            lengths=[8, 16],
            pad_token_id=0,
            device=device,
            capture=step == "captured",
        )
    )
    if stop_after is not None:
        inner, calls = step_fn, []

        def step_fn(*args):
            calls.append(1)
            if len(calls) == stop_after:
                checkpointer.stop_signal = signal.SIGTERM
            return inner(*args)

    result = fit(
        model,
        method,
        data(n=12),
        collate,
        optimizer,
        scheduler,
        epochs=epochs,
        batch_size=4,
        grad_clip=1.0,
        seed=0,
        evaluate_dev=lambda: {"macro_f1": 0.0, "micro_f1": 0.0},
        log_metrics=lambda *a: None,
        progress_bar=False,
        max_skip_share=0.5,
        min_steps_before_abort=10,
        step_fn=step_fn,
        checkpointer=checkpointer,
    )
    return result, model, optimizer, step_fn


@pytest.mark.parametrize("ablation", ["full", "no_meta_weight"])
def test_graphed_training_run_eagerly_trains_hamr_as_the_loop(ablation):
    """Two epochs of HAMR (15 draws per epoch: three batches of 4, one of 3, padded to 8 tokens)
    through GraphedTraining's step function give the loop's model, f_θ, hardness and records."""
    loop_method, graphed_method = make_method(ablation), make_method(ablation)
    loop, loop_model, _, _ = fit_with("loop", loop_method)
    graphed, graphed_model, _, step_fn = fit_with("eager", graphed_method)
    assert step_fn.steps_by_kind == {"eager": 8}
    assert graphed.steps == loop.steps == 8 and graphed.skipped_steps == 0
    for a, b in zip(loop_model.parameters(), graphed_model.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-7, atol=1e-10)
    for a, b in zip(loop_method.weight_net.parameters(), graphed_method.weight_net.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-7, atol=1e-10)
    assert not np.all(graphed_method.h == 1.0)
    np.testing.assert_allclose(graphed_method.h, loop_method.h, rtol=1e-7)
    np.testing.assert_allclose(graphed_method.b, loop_method.b)
    assert graphed_method.meta_batches_consumed == loop_method.meta_batches_consumed == 8
    for row, twin in zip(loop.history, graphed.history):
        assert row["weight_p90"] == pytest.approx(twin["weight_p90"], rel=1e-7)
        assert row["meta_loss"] == pytest.approx(twin["meta_loss"], rel=1e-7)


def test_a_non_finite_graphed_step_is_skipped_on_the_device_as_the_loop_skips_it():
    loop, loop_model, loop_optimizer, _ = fit_with("loop", BaselineMethod(PoisonedLoss({2}), "ce", CPU))
    graphed, graphed_model, graphed_optimizer, _ = fit_with("eager", BaselineMethod(PoisonedLoss({2}), "ce", CPU))
    assert loop.skipped_steps == graphed.skipped_steps == 1 and graphed.steps == 6
    for a, b in zip(loop_model.parameters(), graphed_model.parameters()):
        assert torch.isfinite(b).all()
        torch.testing.assert_close(a, b, rtol=1e-7, atol=1e-10)
    first = next(iter(graphed_optimizer.state.values()))
    assert first["step"].item() == 5  # the skipped step left Adam's step count (and moments) alone
    torch.testing.assert_close(first["exp_avg"], next(iter(loop_optimizer.state.values()))["exp_avg"])


def test_graphed_training_resumes_mid_epoch_as_an_uninterrupted_run(tmp_path):
    """Stopped after 5 steps (mid-epoch 2) and resumed from the checkpoint by a new process's worth
    of objects: the fused optimisers' state, the tensor learning rate, f_θ's optimiser and h carry over."""
    whole_method = make_method("full")
    _, whole_model, _, _ = fit_with("eager", whole_method)
    checkpointer = Checkpointer(tmp_path, tmp_path / "run", {"test": 1})
    with pytest.raises(Stopped):
        fit_with("eager", make_method("full"), checkpointer=checkpointer, stop_after=5)
    resumed_method = make_method("full")
    resumed_method.restart_meta_batches = lambda: make_method("full").meta_batches  # the same stream from its start
    resumed, resumed_model, optimizer, _ = fit_with(
        "eager", resumed_method, checkpointer=Checkpointer(tmp_path, tmp_path / "run", {"test": 1})
    )
    assert resumed.steps == 8 and torch.is_tensor(optimizer.param_groups[0]["lr"])
    assert torch.is_tensor(resumed_method.weight_optimizer.param_groups[0]["lr"])
    for a, b in zip(whole_model.parameters(), resumed_model.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-7, atol=1e-10)
    for a, b in zip(whole_method.weight_net.parameters(), resumed_method.weight_net.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-7, atol=1e-10)
    np.testing.assert_allclose(resumed_method.h, whole_method.h, rtol=1e-7)


def test_lr_on_device_turns_a_restored_learning_rate_into_a_device_tensor():
    optimizer = torch.optim.AdamW([torch.nn.Parameter(torch.ones(2))], lr=3e-4)  # as a checkpoint may restore it
    lr_on_device(optimizer, CPU)
    lr = optimizer.param_groups[0]["lr"]
    assert torch.is_tensor(lr) and lr.device == CPU and lr.item() == pytest.approx(3e-4)
    lr_on_device(optimizer, CPU)
    assert optimizer.param_groups[0]["lr"] is lr  # already there: the same tensor (a graph may be reading it)
