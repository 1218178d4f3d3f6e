"""HamrMethod: each ablation switches off exactly its module (method.md section 3)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from hamr.algorithm.method import HamrMethod, endless
from hamr.algorithm.neighbors import knn_graph
from hamr.algorithm.rates import step_rates
from hamr.algorithm.weights import batch_zscore, example_weights
from hamr.config import AblationConfig, HamrConfig, MetaConfig
from hamr.losses import CrossEntropyLoss
from tests.algorithm.test_meta_step import batch, tiny_model

N = 12
ABLATIONS = {
    "full": AblationConfig("full", True, True, True),
    "no_resampling": AblationConfig("no_resampling", True, False, False),
    "no_meta_weight": AblationConfig("no_meta_weight", False, True, True),
    "no_neighbor_boost": AblationConfig("no_neighbor_boost", True, True, False),
}


def make_method(ablation: str, model=None, meta: MetaConfig | None = None, scope=None):
    hp = HamrConfig(meta_batch_size=4, weight_net_hidden=8, inner_lr=0.5, inner_lr_ratio=None, k=3, hard_ratio=0.25,
                    gamma=0.5, hardness_half_life=None, meta=meta or MetaConfig())
    rng = np.random.default_rng(0)
    embeddings = rng.normal(size=(N, 8)).astype(np.float32)
    embeddings /= np.linalg.norm(embeddings, axis=1, keepdims=True)

    def meta_batches():
        for seed in range(1000):
            x, y = batch(4, seed=100 + seed)
            yield {**x, "labels": y}

    rates = step_rates(hp, trainer_lr=1e-3, steps_per_epoch=4, epochs=1)
    method = HamrMethod(name=f"hamr_{ablation}", loss=CrossEntropyLoss(), hp=hp, rates=rates, ablation=ABLATIONS[ablation],
                        task="cls", device=torch.device("cpu"), pool=np.arange(N), n_train=N,
                        meta_batches=endless(meta_batches()), neighbours=knn_graph(embeddings, hp.k),
                        pool_classes=["a"] * 8 + ["b"] * 4, seed=0, scope=scope)
    method.weight_net.double()
    return method


def train_batch(indices, seed=0):
    x, y = batch(len(indices), seed=seed)
    return {**x, "labels": y, "index": torch.tensor(indices)}


@pytest.fixture
def model():
    return tiny_model()


def test_full_hamr_resamples_weights_and_boosts(model):
    method = make_method("full")
    order = method.epoch_order(0, N, torch.Generator().manual_seed(0))
    assert len(order) == method.epoch_size(N) == math.ceil(1.2 * N)
    before = [p.clone() for p in method.weight_net.parameters()]
    b = train_batch([1, 4, 7, 9, 10])
    loss = method.batch_loss(model, b)
    assert any(not torch.equal(p, q) for p, q in zip(before, method.weight_net.parameters()))
    assert method.b.sum() == 0 and (method.h == 1.0).all()  # h and b change between epochs only
    diagnostics = method.end_epoch(0)
    changed = np.flatnonzero(method.h != 1.0).tolist()
    assert changed == [1, 4, 7, 9, 10]
    w_post = torch.tensor([2 * h - 1 for h in method.h[[1, 4, 7, 9, 10]]])  # gamma = 0.5 from h = 1
    losses = CrossEntropyLoss().element_losses(model(**{k: b[k] for k in ("input_ids", "attention_mask")}).logits, b["labels"])
    assert loss.item() == pytest.approx((w_post * losses).mean().item(), rel=1e-6)
    assert method.b.max() == 1.0 and diagnostics["b_mean"] > 0
    assert set(diagnostics) >= {"weight_mean", "weight_p10", "weight_p90", "meta_loss", "weight_curve/z=+0",
                                "sample_share/a", "data_share/b", "hard_fraction/a"}
    assert not np.allclose(method.probabilities(), 1 / N)


def test_no_resampling_draws_ordinary_shuffled_epochs(model):
    method = make_method("no_resampling")
    order = method.epoch_order(0, N, torch.Generator().manual_seed(0))
    assert sorted(order.tolist()) == list(range(N)) and method.epoch_size(N) == N
    loss = method.batch_loss(model, train_batch([0, 1, 2]))
    assert loss.requires_grad
    method.end_epoch(0)
    assert method.b.sum() == 0


def test_no_neighbor_boost_keeps_b_zero(model):
    method = make_method("no_neighbor_boost")
    method.batch_loss(model, train_batch([0, 1, 2]))
    method.end_epoch(0)
    assert method.b.sum() == 0
    expected = (method.h + 1e-6) ** 0.7
    assert method.probabilities() == pytest.approx(expected / expected.sum())


def test_no_meta_weight_gives_the_unweighted_gradient_but_trains_theta_and_the_ema(model):
    method = make_method("no_meta_weight")
    before = [p.clone() for p in method.weight_net.parameters()]
    b = train_batch([3, 5, 6, 8])
    method.batch_loss(model, b).backward()
    ours = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    inputs = {k: b[k] for k in ("input_ids", "attention_mask")}
    CrossEntropyLoss().element_losses(model(**inputs).logits, b["labels"]).mean().backward()
    for a, c in zip(ours, [p.grad for p in model.parameters()]):
        torch.testing.assert_close(a, c)
    assert any(not torch.equal(p, q) for p, q in zip(before, method.weight_net.parameters()))
    method.end_epoch(0)
    assert np.flatnonzero(method.h != 1.0).tolist() == [3, 5, 6, 8]


def test_ner_hardness_is_the_max_over_labelled_tokens():
    method = make_method("full")
    method.task = "ner"
    logits = torch.tensor([[[2.0, 0.0], [0.0, 2.0], [5.0, -5.0], [0.0, 0.0]]])  # (B=1, T=4, C=2)
    labels = torch.tensor([[0, 0, -100, 1]])  # token 2 is ignored (it would have the largest loss)
    token = CrossEntropyLoss().element_losses(logits, labels)[0]
    signal, optimised = method.example_loss(logits, labels)
    assert signal.item() == pytest.approx(max(token[0], token[1], token[3]).item())
    assert optimised.item() == signal.item()  # ner_example_loss = max (authors)
    method.hp.ner_example_loss = "mean"
    _, mean = method.example_loss(logits, labels)
    assert mean.item() == pytest.approx(((token[0] + token[1] + token[3]) / 3).item())


def test_hardness_updates_of_an_epoch_apply_in_step_order(model):
    """An example drawn in two batches of one epoch gets both EMA updates, oldest first."""
    method = make_method("full")
    method.batch_loss(model, train_batch([2, 5], seed=0))
    method.batch_loss(model, train_batch([5, 7], seed=1))
    first, second = (v.double().numpy() for _, v, _ in method._pending_hardness)
    method.end_epoch(0)
    after_first = 0.5 * 1.0 + 0.5 * first[1]
    assert method.h[5] == pytest.approx(0.5 * after_first + 0.5 * second[0])
    assert method.h[2] == pytest.approx(0.5 + 0.5 * first[0]) and method.h[7] == pytest.approx(0.5 + 0.5 * second[1])


def test_discarded_epoch_records_leave_h_unchanged_and_restart_the_meta_cadence(model):
    method = make_method("full", meta=MetaConfig(every=3))
    method.batch_loss(model, train_batch([2, 5], seed=0))
    method.batch_loss(model, train_batch([5, 7], seed=1))
    h_before = method.h.copy()
    method.discard_epoch_records()
    assert method.steps == 0 and not method._pending_hardness and not method._epoch_weights
    method.end_epoch(0)
    np.testing.assert_array_equal(method.h, h_before)


def test_meta_every_k_runs_the_meta_step_on_every_kth_batch_only(model):
    method = make_method("full", meta=MetaConfig(every=3))
    snapshots = []
    for step in range(4):
        method.batch_loss(model, train_batch([0, 1, 2], seed=step))
        snapshots.append([p.clone() for p in method.weight_net.parameters()])
    moved = [i == 0 or any(not torch.equal(p, q) for p, q in zip(snapshots[i - 1], snapshots[i])) for i in range(4)]
    assert moved == [True, False, False, True] and len(method._epoch_meta_losses) == 2
    # in between, the loss is the post-meta-weighted loss under the current f_θ
    b = train_batch([3, 4, 5], seed=9)
    method.steps = 1
    loss = method.batch_loss(model, b)
    inputs = {k: b[k] for k in ("input_ids", "attention_mask")}
    losses = CrossEntropyLoss().element_losses(model(**inputs).logits, b["labels"])
    w = example_weights(method.weight_net, batch_zscore(losses), 0.1, 8.0)
    assert loss.item() == pytest.approx((w * losses).mean().item(), rel=1e-6)
