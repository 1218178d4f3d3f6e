"""What only a GPU can show (marker `gpu`; `make test-gpu` on a machine with CUDA, skipped elsewhere):
the meta step's double backward through attention on CUDA kernels, bf16 autocast in the meta step,
the flash-attention-to-eager switch, and FAISS's GPU index for the k-NN graph.

Every project name is imported here, at the top, so that a CPU-only `make test`, which collects this
file and deselects its tests, fails on a name that moved (2026-12-04: the first GPU run found two
tests importing hamr_step from hamr.cuda_graphs, where it no longer was)."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from hamr.algorithm.meta_step import meta_step
from hamr.algorithm.method import _ensure_double_backward_attention
from hamr.algorithm.neighbors import knn_graph
from hamr.algorithm.weights import WeightNet
from hamr.checkpoint import Checkpointer, Stopped
from hamr.cuda_graphs import GraphedStep, pad_batch
from hamr.evaluation import autocast
from hamr.loop import BaselineMethod
from hamr.losses import CrossEntropyLoss
from hamr.steps import hamr_step
from tests import test_hf
from tests.algorithm.test_meta_step import CE, CLIP, INNER_LR, batch, cls_example_loss, tiny_model
from tests.algorithm.test_method import make_method, train_batch
from tests.test_cuda_graphs import fit_with

pytestmark = pytest.mark.gpu
CUDA = torch.device("cuda")


def cuda_meta_grads(model, net, precision="fp32"):
    (x, y), (mx, my) = batch(5, seed=0), batch(4, seed=1)
    to = {k: v.to(CUDA) for k, v in x.items()}
    meta = {k: v.to(CUDA) for k, v in mx.items()}
    with autocast(CUDA, precision):
        result = meta_step(
            model,
            net,
            to,
            y.to(CUDA),
            meta,
            my.to(CUDA),
            example_loss=cls_example_loss,
            meta_loss=CE,
            inner_lr=INNER_LR,
            clip=CLIP,
        )
    return [g.double().cpu() for g in result.weight_net_grads]


@pytest.mark.parametrize("train_mode", [False, True])
def test_the_cuda_meta_step_gives_the_cpu_theta_gradient(train_mode):
    """Fused SDPA kernels have no double backward; the meta step runs under the math kernel, in eval
    mode too (where SDPA would pick flash attention)."""
    model, net = tiny_model().float(), WeightNet(8, normalisation="detached_mean")
    model.train(train_mode)  # dropout is 0 in tiny_model: train mode differs only in kernel choice
    (x, y), (mx, my) = batch(5, seed=0), batch(4, seed=1)
    cpu = meta_step(
        model, net, x, y, mx, my, example_loss=cls_example_loss, meta_loss=CE, inner_lr=INNER_LR, clip=CLIP
    ).weight_net_grads
    gpu = cuda_meta_grads(model.to(CUDA), net.to(CUDA))
    for a, b in zip(cpu, gpu):
        torch.testing.assert_close(a.double(), b, rtol=1e-3, atol=1e-6)


def test_bf16_autocast_meta_step_is_finite_and_close_to_fp32():
    model, net = tiny_model().float().to(CUDA), WeightNet(8, normalisation="detached_mean").to(CUDA)
    fp32, bf16 = cuda_meta_grads(model, net), cuda_meta_grads(model, net, "bf16")
    assert all(torch.isfinite(g).all() for g in bf16)
    cosine = torch.nn.functional.cosine_similarity(
        torch.cat([g.flatten() for g in fp32]), torch.cat([g.flatten() for g in bf16]), dim=0
    )
    assert cosine > 0.9  # bf16 keeps the direction of the meta gradient


def test_flash_attention_is_switched_to_eager_for_the_meta_step():
    model = tiny_model().float().to(CUDA)
    model.config._attn_implementation = "flash_attention_2"
    model.set_attn_implementation = lambda name: setattr(model.config, "_attn_implementation", name)
    _ensure_double_backward_attention(model)
    assert model.config._attn_implementation == "eager"


def test_the_knn_graph_uses_faiss_gpu_when_installed():
    import faiss

    if not hasattr(faiss, "StandardGpuResources") or faiss.get_num_gpus() == 0:
        pytest.skip("faiss has no GPU support here (conda install -c conda-forge faiss-gpu)")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(5000, 32)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    expected = torch.topk(torch.from_numpy(x @ x.T), k=10, dim=1).indices.numpy()
    np.testing.assert_array_equal(np.sort(knn_graph(x, 10, "auto", exact_max=100), axis=1), np.sort(expected, axis=1))


@pytest.mark.parametrize("capture", ["first", "after a freed graph"])
def test_a_captured_hamr_step_replays_as_the_eager_step(capture):
    """hamr.cuda_graphs: three replays of the captured exact step give the losses and parameters
    of three eager calls of the same step function from the same state (dropout 0: no RNG); the
    second case captures after the first case's graph was freed (a benchmark's second dataset)."""
    method = make_method("full")
    model = tiny_model().float().to(CUDA).train()
    net = copy.deepcopy(method.weight_net).float().to(CUDA)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2, capturable=True)
    net_optimizer = torch.optim.Adam(net.parameters(), lr=method.rates.weight_net_lr, capturable=True)
    step = hamr_step(
        model,
        net,
        net_optimizer,
        optimizer,
        example_loss=method.example_loss,
        meta_loss=CrossEntropyLoss(),
        inner_lr=method.rates.inner_lr,
        clip=CLIP,
    )

    def on_cuda(b):
        return {k: v.to(CUDA) for k, v in pad_batch(b, 8).items() if k != "index"}

    batches = [on_cuda(train_batch([0, 1, 2, 3, 4], seed=s)) for s in range(3)]
    metas = [on_cuda({**x, "labels": y}) for x, y in (batch(4, seed=50 + s) for s in range(3))]
    graphed = GraphedStep(step, batches[0], metas[0], warmup=2)
    state = [
        *model.parameters(),
        *net.parameters(),
        *(v for o in (optimizer, net_optimizer) for s in o.state.values() for v in s.values() if torch.is_tensor(v)),
    ]
    start = [t.detach().clone() for t in state]
    replayed = [graphed(b, m)[0].clone() for b, m in zip(batches, metas)]
    after_replay = [p.detach().clone() for p in model.parameters()]
    with torch.no_grad():
        for t, value in zip(state, start):
            t.copy_(value)
    eager = [step(b, m)[0] for b, m in zip(batches, metas)]
    torch.testing.assert_close(torch.stack(replayed), torch.stack(eager), rtol=1e-4, atol=1e-6)
    assert not torch.equal(after_replay[0], start[0])  # the replays did train
    for a, b in zip(after_replay, model.parameters()):
        torch.testing.assert_close(a, b.detach(), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("method_name", ["hamr", "ce"])
def test_graphed_training_replays_as_its_eager_steps(method_name):
    """trainer.cuda_graphs in the loop: two epochs (two warm-up steps, then the graph of the full
    batches replayed; each epoch's last, smaller batch eager) move the model (and HAMR's f_θ and h)
    as the same steps run eagerly on the GPU (tests/test_cuda_graphs.py: eagerly = the loop's step)."""

    def build():
        if method_name == "ce":
            return BaselineMethod(CrossEntropyLoss(), "ce", CUDA)
        method = make_method("full")
        method.device, method.weight_net = CUDA, method.weight_net.float().to(CUDA)
        return method

    eager_method, graphed_method = build(), build()
    _, eager_model, _, _ = fit_with("eager", eager_method, device=CUDA, dtype=torch.float32)
    result, graphed_model, _, step_fn = fit_with("captured", graphed_method, device=CUDA, dtype=torch.float32)
    steps = 8 if method_name == "hamr" else 6  # HAMR draws 15 examples an epoch, CE 12
    assert result.steps == steps and result.skipped_steps == 0
    assert step_fn.steps_by_kind["replayed"] == 4  # of 6 full batches: 2 warm-up steps, then the graph
    for a, b in zip(eager_model.parameters(), graphed_model.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    if method_name == "hamr":
        for a, b in zip(eager_method.weight_net.parameters(), graphed_method.weight_net.parameters()):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(graphed_method.h, eager_method.h, rtol=1e-4)


def test_graphed_training_resumes_from_a_checkpoint_on_the_gpu(tmp_path):
    """A checkpoint (loaded to the CPU) restores the fused optimisers' state and learning rate, which
    GraphedTraining moves back to the device before its first capture; the run then ends as an
    uninterrupted one does (the CPU twin of this test: tests/test_cuda_graphs.py)."""

    def build():
        method = make_method("full")
        method.device, method.weight_net = CUDA, method.weight_net.float().to(CUDA)
        method.restart_meta_batches = lambda: make_method("full").meta_batches
        return method

    _, whole_model, _, _ = fit_with("captured", build(), device=CUDA, dtype=torch.float32)
    with pytest.raises(Stopped):
        fit_with(
            "captured",
            build(),
            device=CUDA,
            dtype=torch.float32,
            checkpointer=Checkpointer(tmp_path, tmp_path / "run", {"test": 1}),
            stop_after=5,
        )
    resumed, model, optimizer, step_fn = fit_with(
        "captured",
        build(),
        device=CUDA,
        dtype=torch.float32,
        checkpointer=Checkpointer(tmp_path, tmp_path / "run", {"test": 1}),
    )
    assert resumed.steps == 8 and optimizer.param_groups[0]["lr"].device.type == "cuda"
    for a, b in zip(whole_model.parameters(), model.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_a_bf16_hamr_trainer_run_matches_the_loops_bf16_run(tmp_path):
    """hamr.hf.HamrTrainer(bf16=True) against the loop's trainer.precision=bf16 on the same data,
    seeds and optimiser (tests/test_hf.py's equivalence, float32 weights under bf16 autocast)."""
    hp = test_hf.hamr_values()
    model_a, method_a, _, _ = test_hf.loop_run("cls", hp, device="cuda", precision="bf16")
    model = test_hf.tiny_model("cls").float().train()
    trainer, _ = test_hf.trainer_run("cls", hp, tmp_path, model=model, use_cpu=False, bf16=True)
    assert trainer.hamr_method.precision == "bf16" and next(trainer.model.parameters()).is_cuda
    for a, b in zip(model_a.state_dict().values(), trainer.model.state_dict().values()):
        torch.testing.assert_close(a.float(), b.float(), rtol=2e-2, atol=2e-3)
    for a, b in zip(method_a.weight_net.parameters(), trainer.hamr_method.weight_net.parameters()):
        torch.testing.assert_close(a, b, rtol=2e-2, atol=2e-3)
    np.testing.assert_allclose(method_a.h, trainer.hamr_method.h, rtol=5e-2)
