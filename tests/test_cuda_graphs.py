"""The graph-capturable step functions against the loop's own step (on the CPU; their capture and
replay is in tests/test_gpu.py), and the padding to a fixed shape."""

from __future__ import annotations

import copy

import pytest
import torch

from hamr.cuda_graphs import ce_step, hamr_step, pad_batch
from hamr.loop import BaselineMethod, train_step
from hamr.losses import CrossEntropyLoss
from tests.algorithm.test_meta_step import batch, tiny_model
from tests.algorithm.test_method import make_method, train_batch

CPU = torch.device("cpu")


def test_pad_batch_pads_tokens_with_their_pad_values_and_leaves_sentence_labels():
    b = {"input_ids": torch.tensor([[5, 6]]), "attention_mask": torch.tensor([[1, 1]]),
         "labels": torch.tensor([[1, -100]]), "index": torch.tensor([3])}
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

    net_optimizer = torch.optim.Adam(twin_net.parameters(), lr=method.rates.weight_net_lr,
                                     weight_decay=method.hp.weight_net_weight_decay)
    step = hamr_step(twin, twin_net, net_optimizer, torch.optim.AdamW(twin.parameters(), lr=1e-2),
                     example_loss=method.example_loss, meta_loss=CrossEntropyLoss(),
                     inner_lr=method.rates.inner_lr, clip=(method.hp.weight_clip_low, method.hp.weight_clip_high))
    meta_x, meta_y = batch(4, seed=100)  # the first meta batch make_method's stream yields
    loss, signal, w_post = step(pad_batch(b, 9), pad_batch({**meta_x, "labels": meta_y}, 7))
    assert signal.shape == w_post.shape == (5,)
    torch.testing.assert_close(w_post, method._epoch_weights[0])
    assert_same_parameters(model, twin)
    assert_same_parameters(method.weight_net, twin_net)


def test_the_ce_step_function_moves_the_model_as_the_loops_step():
    model = tiny_model()
    twin = copy.deepcopy(model)
    b = train_batch([0, 1, 2, 3])
    train_step(model, BaselineMethod(CrossEntropyLoss(), "ce", CPU), b, torch.optim.AdamW(model.parameters(), lr=1e-2),
               None, grad_clip=1.0)
    (loss,) = ce_step(twin, CrossEntropyLoss(), torch.optim.AdamW(twin.parameters(), lr=1e-2))(pad_batch(b, 10))
    assert loss.shape == ()
    assert_same_parameters(model, twin)
