"""HamrMethod: each ablation switches off exactly its module (docs/method.md section 3)."""

from __future__ import annotations

import copy
import dataclasses
import math

import numpy as np
import pytest
import torch

from hamr.algorithm.diagnostics import spread_diagnostics
from hamr.algorithm.meta_step import meta_step
from hamr.algorithm.method import HamrMethod, endless
from hamr.algorithm.neighbors import knn_graph
from hamr.algorithm.rates import step_rates
from hamr.config import AblationConfig, HamrConfig, MetaConfig
from hamr.losses import CrossEntropyLoss
from tests.algorithm.test_meta_step import (
    batch,
    hand_written_meta_grad,
    reference_weights,
    tiny_model,
)

N = 12
ABLATIONS = {
    "full": AblationConfig("full", True, True, True),
    "no_resampling": AblationConfig("no_resampling", True, False, False),
    "no_meta_weight": AblationConfig("no_meta_weight", False, True, True),
    "no_neighbor_boost": AblationConfig("no_neighbor_boost", True, True, False),
}


def make_method(
    ablation: str, model=None, meta: MetaConfig | None = None, scope=None, loss=None, task="cls", **hp_values
):
    hp = HamrConfig(
        meta_batch_size=4,
        weight_net_hidden=8,
        inner_lr=0.5,
        inner_lr_ratio=None,
        k=3,
        hard_ratio=0.25,
        gamma=0.5,
        hardness_half_life=None,
        meta=meta or MetaConfig(),
        **hp_values,
    )
    rng = np.random.default_rng(0)
    embeddings = rng.normal(size=(N, 8)).astype(np.float32)
    embeddings /= np.linalg.norm(embeddings, axis=1, keepdims=True)

    def meta_batches():
        for seed in range(1000):
            x, y = batch(4, seed=100 + seed)
            yield {**x, "labels": y}

    rates = step_rates(hp, trainer_lr=1e-3, steps_per_epoch=4, epochs=1)
    method = HamrMethod(
        name=f"hamr_{ablation}",
        loss=loss or CrossEntropyLoss(),
        hp=hp,
        rates=rates,
        ablation=ABLATIONS[ablation],
        task=task,
        device=torch.device("cpu"),
        pool=np.arange(N),
        n_train=N,
        meta_batches=endless(meta_batches()),
        neighbours=knn_graph(embeddings, hp.k),
        pool_classes=["a"] * 8 + ["b"] * 4,
        seed=0,
        scope=scope,
    )
    method.weight_net.double()
    return method


class GradientRecorder:
    """An optimiser stand-in for the model: at each step it keeps the model's gradient instead of
    moving the model (so a test can compare that gradient with one written out by hand)."""

    def __init__(self, params):
        self.params, self.grads = list(params), None

    def step(self):
        self.grads = [p.grad.clone() for p in self.params]

    def zero_grad(self, set_to_none=True):
        for p in self.params:
            p.grad = None


def run_step(method, model, b):
    """One step of the method's step function as the loop runs it (train_step, no clipping), the
    model left where it was; returns (the detached loss, the model's gradient; None if skipped)."""
    from hamr.loop import train_step

    recorder = GradientRecorder(model.parameters())
    loss = train_step(model, method, b, recorder, None, grad_clip=0.0)
    return loss, recorder.grads


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
    loss, grads = run_step(method, model, b)
    assert any(not torch.equal(p, q) for p, q in zip(before, method.weight_net.parameters()))
    assert method.b.sum() == 0 and (method.h == 1.0).all()  # h and b change between epochs only
    diagnostics = method.end_epoch(0)
    changed = np.flatnonzero(method.h != 1.0).tolist()
    assert changed == [1, 4, 7, 9, 10]  # the batch's examples only (values: test_hardness_updates_...)
    assert loss is not None and grads is not None  # the real update: test_the_real_update_uses_the_weights_...
    assert method.b.max() == 1.0 and diagnostics["b_mean"] > 0
    assert set(diagnostics) >= {
        "weight_mean",
        "weight_p10",
        "weight_p90",
        "meta_loss",
        "weight_curve/z=+0",
        "sample_share/a",
        "data_share/b",
        "hard_fraction/a",
        "h_max_over_mean",
        "p_hard_decile_over_median",
        "spearman_h_loss",
        "max_share_gap",
    }
    assert not np.allclose(method.probabilities(), 1 / N)


def test_no_resampling_draws_ordinary_shuffled_epochs(model):
    method = make_method("no_resampling")
    order = method.epoch_order(0, N, torch.Generator().manual_seed(0))
    assert sorted(order.tolist()) == list(range(N)) and method.epoch_size(N) == N
    loss, grads = run_step(method, model, train_batch([0, 1, 2]))
    assert loss is not None and grads is not None
    method.end_epoch(0)
    assert method.b.sum() == 0


def test_no_neighbor_boost_keeps_b_zero(model):
    method = make_method("no_neighbor_boost")
    run_step(method, model, train_batch([0, 1, 2]))
    method.end_epoch(0)
    assert method.b.sum() == 0
    expected = (method.h + 1e-6) ** 0.7
    assert method.probabilities() == pytest.approx(expected / expected.sum())


def test_no_meta_weight_gives_the_unweighted_gradient_but_trains_theta_and_the_ema(model):
    method = make_method("no_meta_weight")
    before = [p.clone() for p in method.weight_net.parameters()]
    b = train_batch([3, 5, 6, 8])
    _, ours = run_step(method, model, b)
    model.zero_grad()
    inputs = {k: b[k] for k in ("input_ids", "attention_mask")}
    CrossEntropyLoss().element_losses(model(**inputs).logits, b["labels"]).mean().backward()
    for a, c in zip(ours, [p.grad for p in model.parameters()]):
        torch.testing.assert_close(a, c)
    assert any(not torch.equal(p, q) for p, q in zip(before, method.weight_net.parameters()))
    method.end_epoch(0)
    assert np.flatnonzero(method.h != 1.0).tolist() == [3, 5, 6, 8]


def test_ner_hardness_is_the_max_over_labelled_tokens():
    method = make_method("full", ner_example_loss="max")
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
    run_step(method, model, train_batch([2, 5], seed=0))
    run_step(method, model, train_batch([5, 7], seed=1))
    first, second = (v.double().numpy() for _, v, _ in method._pending_hardness)
    method.end_epoch(0)
    after_first = 0.5 * 1.0 + 0.5 * first[1]
    assert method.h[5] == pytest.approx(0.5 * after_first + 0.5 * second[0])
    assert method.h[2] == pytest.approx(0.5 + 0.5 * first[0]) and method.h[7] == pytest.approx(0.5 + 0.5 * second[1])


def weights_by_hand(net, model, b) -> tuple[torch.Tensor, torch.Tensor]:
    """(weights from ``net`` on the batch's losses, the losses with their graph), written out."""
    losses = CrossEntropyLoss().element_losses(
        model(**{k: b[k] for k in ("input_ids", "attention_mask")}).logits, b["labels"]
    )
    with torch.no_grad():
        w = reference_weights(net, losses)
    return w, losses


def test_meta_every_k_runs_the_meta_step_on_every_kth_batch_only(model):
    method = make_method("full", meta=MetaConfig(every=3))
    snapshots = [[p.clone() for p in method.weight_net.parameters()]]
    consumed = []
    for step in range(5):
        run_step(method, model, train_batch([0, 1, 2], seed=step))
        snapshots.append([p.clone() for p in method.weight_net.parameters()])
        consumed.append(method.meta_batches_consumed)
    moved = [any(not torch.equal(p, q) for p, q in zip(snapshots[i], snapshots[i + 1])) for i in range(5)]
    assert moved == [True, False, False, True, False]  # steps 0 and 3 of 0..4
    assert consumed == [1, 1, 1, 2, 2] and len(method._epoch_meta_losses) == 2
    # step 5 is no meta step: its loss is weighted by the current f_θ, which it leaves unchanged
    b = train_batch([3, 4, 5], seed=9)
    loss, _ = run_step(method, model, b)
    w, losses = weights_by_hand(method.weight_net, model, b)
    assert all(torch.equal(p, q) for p, q in zip(snapshots[-1], method.weight_net.parameters()))
    assert loss.item() == pytest.approx((w * losses).mean().item(), rel=1e-9)


@pytest.mark.parametrize("normalisation", ["mean", "detached_mean"])  # the default, and the paper's
def test_the_real_update_uses_the_weights_of_f_theta_after_its_meta_step(model, normalisation):
    """The model's gradient is that of mean(w_post·ℓ), w_post from a copy of f_θ moved by one Adam
    step (written out) along the hand-written meta gradient; w_pre gives a measurably different one."""
    method = make_method("full", weight_normalisation=normalisation)
    assert method.weight_net.normalisation == normalisation
    start = copy.deepcopy(method.weight_net)
    b = train_batch([1, 4, 7, 9, 10])
    x, y = {k: b[k] for k in ("input_ids", "attention_mask")}, b["labels"]
    meta_x, meta_y = batch(4, seed=100)  # the first meta batch make_method's stream yields
    theta_grads = hand_written_meta_grad(
        model, start, train=(x, y), meta=(meta_x, meta_y), inner_lr=method.rates.inner_lr
    )
    stepped = copy.deepcopy(start)
    lr, decay = method.rates.weight_net_lr, method.hp.weight_net_weight_decay
    with torch.no_grad():  # Adam's first step: m̂ = g, v̂ = g², with the L2 term in g
        for p, g in zip(stepped.parameters(), theta_grads):
            g = g + decay * p
            p -= lr * g / (g.abs() + 1e-8)
    _, ours = run_step(method, model, b)
    for name in ("post", "pre"):
        model.zero_grad()
        w, losses = weights_by_hand(stepped if name == "post" else start, model, b)
        (w * losses).mean().backward()
        expected = [p.grad.clone() for p in model.parameters()]
        close = all(torch.allclose(a, e, rtol=1e-6, atol=1e-10) for a, e in zip(ours, expected))
        assert close == (name == "post"), name
    for p, q in zip(method.weight_net.parameters(), stepped.parameters()):
        torch.testing.assert_close(p, q)


def test_a_non_finite_meta_loss_leaves_f_theta_as_it_was_and_is_counted(model):
    method = make_method("full")
    method.meta_step_fn = lambda *a, **k: dataclasses.replace(meta_step(*a, **k), meta_loss=torch.tensor(float("nan")))
    before = [p.clone() for p in method.weight_net.parameters()]
    loss, _ = run_step(method, model, train_batch([0, 1, 2]))
    assert torch.isfinite(loss) and method.skipped_meta_steps == 1 and not method._epoch_meta_losses
    assert all(torch.equal(p, q) for p, q in zip(before, method.weight_net.parameters()))
    assert method.end_epoch(0)["skipped_meta_steps"] == 1


def test_global_decay_rule_inside_hamr(model):
    method = make_method("full", ema_rule="global_decay", global_decay_floor=1e-3)
    assert method.h.tolist() == [1 / N] * N
    run_step(method, model, train_batch([2, 5]))
    values = method._pending_hardness[0][1].double().numpy()
    method.end_epoch(0)
    raw = np.full(N, 0.5 / N) + 1e-3  # gamma = 0.5: everyone decays, the batch adds (1 - gamma) w_post
    raw[[2, 5]] += 0.5 * values
    assert method.h == pytest.approx(raw / raw.sum(), rel=1e-12)


def test_relative_loss_hardness_follows_the_loss_not_the_weight(model):
    method = make_method("full", hardness_signal="relative_loss")
    b = train_batch([2, 5, 7])
    run_step(method, model, b)
    method.end_epoch(0)
    _, losses = weights_by_hand(method.weight_net, model, b)
    relative = (losses / losses.mean()).detach().double().numpy()
    assert method.h[[2, 5, 7]] == pytest.approx(0.5 + 0.5 * relative, rel=1e-9)


@pytest.mark.parametrize("refresh_every", [1, 2])
def test_neighbourhood_scores_are_refreshed_every_f_epochs(model, refresh_every, monkeypatch):
    import hamr.algorithm.method as module

    method = make_method("full", refresh_every=refresh_every)
    calls, real = [], module.neighbourhood_scores
    monkeypatch.setattr(module, "neighbourhood_scores", lambda *a: calls.append(len(calls)) or real(*a))
    refreshed = []
    for epoch in range(4):
        run_step(method, model, train_batch([epoch, epoch + 4, epoch + 8], seed=epoch))
        before = len(calls)
        method.end_epoch(epoch)
        refreshed.append(len(calls) > before)
    assert refreshed == ([True] * 4 if refresh_every == 1 else [False, True, False, True])


def test_ner_tokens_loss_weights_every_token_of_a_sentence():
    method = make_method("full", ner_example_loss="tokens")
    method.task = "ner"
    logits = torch.tensor([[[2.0, 0.0], [0.0, 2.0], [0.0, 0.0]], [[1.0, 0.0], [0.0, 0.0], [0.0, 0.0]]])
    labels = torch.tensor([[0, 0, 1], [1, -100, -100]])  # 3 + 1 labelled tokens
    token = CrossEntropyLoss().element_losses(logits, labels)
    _, optimised = method.example_loss(logits, labels)
    assert optimised.mean().item() == pytest.approx(token.sum().item() / 4)  # the baselines' token mean
    w = torch.tensor([2.0, 0.5])
    assert (w * optimised).mean().item() == pytest.approx((2 * token[0].sum() + 0.5 * token[1].sum()).item() / 4)


def test_spread_diagnostics_on_a_hand_made_example():
    h = np.array([4.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0])  # one hard example
    p = h / h.sum()
    loss = np.array([3.0, 1.0, 2.0, np.nan, 0.5, 0.4, 0.3, 0.2, 0.1, np.nan])
    d = spread_diagnostics(h, p, loss)
    assert d["h_max_over_mean"] == pytest.approx(4 / 1.3)
    assert d["p_hard_decile_over_median"] == pytest.approx(4.0)  # the top 10% is example 0
    # over the 8 examples seen, Spearman = Pearson of the ranks; h's seven ties at ranks 1..7 share rank 4
    rank_h = np.array([8, 4, 4, 4, 4, 4, 4, 4], dtype=float)
    rank_loss = np.array([8, 6, 7, 5, 4, 3, 2, 1], dtype=float)
    assert d["spearman_h_loss"] == pytest.approx(np.corrcoef(rank_h, rank_loss)[0, 1])
    assert np.isnan(spread_diagnostics(np.ones(10), np.full(10, 0.1), loss)["spearman_h_loss"])  # h constant


@pytest.mark.parametrize(
    "options",
    [
        ["hamr.meta_set=balanced"],
        ["hamr.meta_set=balanced", "hamr.meta_min_train_count=40"],
        ["hamr.meta_set=dev"],
        ["hamr.meta_set=balanced", "ablation=no_resampling"],
    ],
)
def test_no_option_trains_on_a_meta_example_or_outside_the_training_split(
    options, compose_cfg, data_dir, monkeypatch, tmp_path
):
    """HamrMethod.from_context on the real Cyclone-Idai slice: the examples moved into the meta set
    never appear in an epoch's order, which only draws training-split indices; ``dev`` moves none."""
    from collections import Counter

    from hamr.config import validate
    from hamr.data.encode import collator_for, encode_split
    from hamr.data.prepare import load_dataset_splits
    from hamr.loop import RunContext
    from hamr.models import build_model, load_tokenizer

    monkeypatch.setenv("HAMR_DATA_DIR", str(data_dir))
    cfg = compose_cfg(
        [
            "debug=smoke",
            "model=tiny_random",
            "method=hamr",
            "dataset.max_train_examples=300",
            f"paths.cache_dir={tmp_path}",
            *options,
        ]
    )
    settings = validate(cfg)
    data = load_dataset_splits(settings.dataset, seed=1)
    tokenizer = load_tokenizer(settings.model)
    encoded = {s: encode_split(data.split(s), "cls", data.label2id, tokenizer, 32) for s in ("train", "dev", "test")}
    model = build_model(settings.model, "cls", data.label_names)
    context = RunContext(
        settings,
        data,
        encoded,
        collator_for("cls", tokenizer),
        model,
        CrossEntropyLoss(),
        torch.device("cpu"),
        tmp_path,
    )
    method = HamrMethod.from_context(context, "hamr_full")
    moved = set(range(len(data.train))) - set(method.pool.tolist())
    generator = torch.Generator().manual_seed(0)
    for epoch in range(3):
        order = method.epoch_order(epoch, len(data.train), generator).tolist()
        assert not moved & set(order) and all(0 <= i < len(data.train) for i in order)
        method.end_epoch(epoch)
    rare = {c for c, n in Counter(data.train.targets).items() if n < 40}
    moved_rare = any(data.train.targets[i] in rare for i in moved)
    if "hamr.meta_set=dev" in options:
        assert not moved
    elif "hamr.meta_min_train_count=40" in options:
        assert not moved_rare  # classes with fewer than 40 training examples keep them all
    else:
        assert moved_rare  # the balanced meta set tops up the rare classes from train


def _norm(module):
    return torch.linalg.vector_norm(torch.cat([p.detach().flatten() for p in module.parameters()])).item()


def test_weight_net_norm_ratio_reports_a_collapse_under_adams_l2_term(model):
    """Adam's L2 term outpulls a small meta gradient and drives f_θ towards 0 (a flat curve at
    sigmoid(0) = 0.5, as on TweetNER7): the diagnostic shows it as a norm well below its start."""
    for decay, collapses in ((10.0, True), (0.0, False)):
        method = make_method("full", weight_net_weight_decay=decay)
        initial = _norm(method.weight_net)
        for seed in range(4):
            run_step(method, model, train_batch([0, 1, 2, 3], seed=seed))
        ratio = method.end_epoch(0)["weight_net_norm_ratio"]
        assert ratio == pytest.approx(_norm(method.weight_net) / initial)
        assert (ratio < 0.5) == collapses, (decay, ratio)


def test_a_flat_weight_curve_is_reported_and_warned_about(model, caplog):
    """The curve's relative spread over z = -3..+3 against an explicit reference; a net whose
    output no longer depends on z (hidden layer at 0, as after an L2 collapse) is warned about."""
    from hamr.algorithm.diagnostics import Z_GRID
    from hamr.algorithm.weights import weight_curve

    method = make_method("full")
    curve = weight_curve(method.weight_net, Z_GRID.double())
    diagnostics = method.end_epoch(0)
    assert diagnostics["weight_curve_spread"] == pytest.approx(((curve.max() - curve.min()) / curve.mean()).item())
    assert diagnostics["weight_curve_spread"] > 0.05 and "curve is flat" not in caplog.text
    with torch.no_grad():
        method.weight_net.net[0].weight.zero_()
    assert method.end_epoch(1)["weight_curve_spread"] == pytest.approx(0.0)
    assert "the weight network's curve is flat" in caplog.text


def every_loss():
    from hamr.losses import FocalLoss, InverseClassFrequencyLoss, SelfAdjustingDiceLoss

    icf = InverseClassFrequencyLoss()
    icf.prepare(torch.tensor([30, 10, 5]))
    return {
        "ce": CrossEntropyLoss(),
        "focal": FocalLoss(gamma=2.0),
        "dice": SelfAdjustingDiceLoss(0.01, 1.0, True),
        "icf": icf,
    }


@pytest.mark.parametrize("name", ["ce", "focal", "dice", "icf"])
def test_hamr_over_any_loss_weights_that_losss_per_example_values(name):
    """HAMR + <loss>: the per-example values it weights average to the loss object's own reduction
    (classification: the batch mean; NER, ner_example_loss=tokens: the token mean), and the hardness
    signal is that loss's value (NER: its max token value)."""
    loss = every_loss()[name]
    torch.manual_seed(0)
    logits, labels = torch.randn(6, 3, dtype=torch.float64), torch.tensor([0, 1, 2, 0, 0, 1])
    signal, optimised = make_method("full", loss=loss).example_loss(logits, labels)
    torch.testing.assert_close(optimised.mean(), loss(logits, labels))
    torch.testing.assert_close(signal, optimised)
    tokens, tags = (
        torch.randn(4, 5, 3, dtype=torch.float64),
        torch.tensor([[0, 1, -100, 2, 0], [1, -100, -100, 0, 0], [2, 2, 2, 2, -100], [0, -100, -100, -100, -100]]),
    )
    signal, optimised = make_method("full", loss=loss, task="ner").example_loss(tokens, tags)
    torch.testing.assert_close(optimised.mean(), loss(tokens, tags))
    per_token = loss.element_losses(tokens, tags).masked_fill(tags == -100, float("-inf"))
    torch.testing.assert_close(signal, per_token.amax(dim=1))


@pytest.mark.parametrize("ablation", list(ABLATIONS))
def test_with_oversample_one_every_ablation_takes_the_baselines_steps(ablation):
    """Equal steps: at oversample 1.0 every HAMR configuration visits N examples an epoch, as a
    baseline does; at the paper's 1.2 the resampling ones draw ceil(1.2 N)."""
    from hamr.loop import BaselineMethod

    baseline = BaselineMethod(CrossEntropyLoss(), "ce", torch.device("cpu")).epoch_size(N)
    assert make_method(ablation, oversample=1.0).epoch_size(N) == baseline == N
    resampled = ABLATIONS[ablation].resampling
    assert make_method(ablation, oversample=1.2).epoch_size(N) == (math.ceil(1.2 * N) if resampled else N)
    order = make_method(ablation, oversample=1.0).epoch_order(0, N, torch.Generator().manual_seed(0))
    assert len(order) == N
