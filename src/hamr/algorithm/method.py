"""HAMR as a training method of :mod:`hamr.loop`: meta-weighted updates, hardness EMA, and
hardness-aware neighbourhood resampling, with the ablation switches of docs/method.md section 3."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader

from hamr.algorithm.diagnostics import epoch_diagnostics, parameter_norm
from hamr.algorithm.hardness import (
    initial_hardness,
    relative_loss,
    update_global_decay,
    update_per_example,
)
from hamr.algorithm.meta_set import balanced_meta_indices
from hamr.algorithm.meta_step import meta_step, scope_parameter_names
from hamr.algorithm.neighbors import embed_texts, hard_examples, knn_graph, neighbourhood_scores
from hamr.algorithm.rates import StepRates, step_rates, steps_per_epoch
from hamr.algorithm.sampling import draw, draws_per_epoch, sampling_probabilities
from hamr.algorithm.weights import WeightNet
from hamr.config import ConfigError
from hamr.data.subset import stratum_of
from hamr.losses import CrossEntropyLoss, ElementwiseLoss, reduce_tokens
from hamr.steps import graph_ready_optimizer, hamr_loss, hamr_step, lr_on_device

log = logging.getLogger(__name__)


def endless(loader: DataLoader) -> Iterator[dict]:
    """Batches of a shuffled loader forever (a new shuffle each pass)."""
    while True:
        yield from loader


def _ensure_double_backward_attention(model: torch.nn.Module) -> None:
    """Fused attention kernels lack double backward: keep eager or SDPA (run under the math
    kernel by meta_step), switch anything else (flash-attention) to eager."""
    implementation = getattr(model.config, "_attn_implementation", None)
    if implementation not in (None, "eager", "sdpa"):
        model.set_attn_implementation("eager")
        implementation = "eager"
    log.info("meta step: attention %r, run under the math SDPA kernel (double backward)", implementation)


class HamrMethod:
    """Per batch: a meta step on f_θ, then the real update with post-meta weights, and the hardness
    EMA. Per epoch: sampling from p ∝ (h + ε)^τ (1 + λ b); every ``refresh_every`` epochs a new b.

    Per-example state (h, b) lives over the *pool*: the training examples left after the balanced
    meta set took its share; ``pool[j]`` is the training-split index of pool position j. ``rates``
    holds the per-step values of γ, α and f_θ's lr (:func:`hamr.algorithm.rates.step_rates`).
    """

    def __init__(
        self,
        *,
        name: str,
        loss: ElementwiseLoss,
        hp,
        rates: StepRates,
        ablation,
        task: str,
        device: torch.device,
        pool: np.ndarray,
        n_train: int,
        meta_batches: Iterator[dict],
        neighbours: np.ndarray | None,
        pool_classes: list[str],
        precision: str = "fp32",
        seed: int = 0,
        scope: set[str] | None = None,
        restart_meta_batches: Callable[[], Iterator[dict]] | None = None,
        meta_step_fn: Callable = meta_step,
    ):
        self.name, self.loss, self.hp, self.rates, self.ablation, self.task = name, loss, hp, rates, ablation, task
        self.device, self.precision = device, precision
        self.pool = pool
        self.position = np.full(n_train, -1, dtype=np.int64)  # training index -> pool position
        self.position[pool] = np.arange(len(pool))
        self.meta_batches, self.neighbours, self.pool_classes = meta_batches, neighbours, pool_classes
        # a fresh meta-batch stream (same seed) for resuming: fast-forwarded by the batches consumed
        self.restart_meta_batches, self.meta_batches_consumed = restart_meta_batches, 0
        self.scope = scope  # parameter names of the virtual step; None = all (exact)
        self.meta_step_fn = meta_step_fn  # the exact meta step; the benchmark passes the authors' for comparison
        self.steps = 0
        self.skipped_meta_steps = 0
        torch.manual_seed(seed)
        self.weight_net = WeightNet(
            hp.weight_net_hidden, hp.weight_activation, normalisation=hp.weight_normalisation
        ).to(device)
        self.weight_optimizer = torch.optim.Adam(
            self.weight_net.parameters(), lr=rates.weight_net_lr, weight_decay=hp.weight_net_weight_decay
        )
        # f_θ's parameter norm at initialisation: the diagnostics report the norm relative to it, because
        # a net whose norm falls towards 0 (Adam's L2 term outpulling a small meta gradient) has collapsed
        # to a flat curve however much it "moved"
        self.weight_net_initial_norm = parameter_norm(self.weight_net)
        self.meta_loss = CrossEntropyLoss()
        self.h = initial_hardness(len(pool), hp.ema_rule)
        self.b = np.zeros(len(pool))
        # (pool positions, EMA input v, hardness signal) of each step, applied to h at the epoch's
        # end: h is only read between epochs, and keeping them on the device avoids a host sync
        # every step. The signal is kept for the diagnostics (does high h mean high loss?).
        self._pending_hardness: list[tuple[np.ndarray, torch.Tensor, torch.Tensor]] = []
        self._epoch_weights: list[torch.Tensor] = []
        self._epoch_meta_losses: list[torch.Tensor] = []
        self._epoch_sampled: np.ndarray = np.arange(len(pool))

    @classmethod
    def from_context(cls, context, name: str) -> HamrMethod:
        """``method=hamr``'s target (conf/method/hamr.yaml): :func:`build_hamr_method`."""
        return build_hamr_method(context, name)

    # --- the loop's interface -------------------------------------------------------------
    def epoch_size(self, n_train: int) -> int:
        return hamr_epoch_size(self.hp, self.ablation, len(self.pool))

    def probabilities(self) -> np.ndarray:
        b = self.b if self.ablation.neighbor_boost else np.zeros_like(self.b)
        return sampling_probabilities(self.h, b, self.hp.tau, self.hp.lambda_, self.hp.epsilon)

    def epoch_order(self, epoch: int, n_train: int, generator: torch.Generator) -> torch.Tensor:
        if self.ablation.resampling:
            positions = draw(self.probabilities(), self.hp.oversample, generator).numpy()
        else:
            positions = torch.randperm(len(self.pool), generator=generator).numpy()
        self._epoch_sampled = positions
        return torch.as_tensor(self.pool[positions])

    def example_loss(self, logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(hardness signal, optimised loss), each (B,): the example's loss for classification;
        for NER the max token loss, and the loss ``ner_example_loss`` names (losses.reduce_tokens)."""
        elements = self.loss.element_losses(logits, labels)
        signal = reduce_tokens(elements, labels, "max")
        optimised = (
            signal
            if self.task == "cls" or self.hp.ner_example_loss == "max"
            else reduce_tokens(elements, labels, self.hp.ner_example_loss)
        )
        return signal, optimised

    def _next_meta_batch(self) -> dict:
        self.meta_batches_consumed += 1
        return next(self.meta_batches)

    def _clip(self) -> tuple[float, float]:
        return self.hp.weight_clip_low, self.hp.weight_clip_high

    # --- the step (hamr.steps.hamr_step), run by the loop or replayed as a CUDA graph ----------
    @property
    def extra_batch_sizes(self) -> tuple[int, ...]:
        return (self.hp.meta_batch_size,)

    def step_function(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer, *, grad_clip: float):
        """:func:`hamr.steps.hamr_step` over this method's f_θ, its optimiser and meta-step function."""
        return hamr_step(
            model, self.weight_net, self.weight_optimizer, optimizer, grad_clip=grad_clip, **self._step_options()
        )

    def loss_function(
        self,
        model: torch.nn.Module,
        *,
        functional_model: torch.nn.Module | None = None,
        reduce_weight_net_grads: Callable | None = None,
    ):
        """:func:`hamr.steps.hamr_loss`: the same step without the real update, for a caller that
        owns the backward and the optimiser step (``hamr.hf.HamrTrainer``)."""
        return hamr_loss(
            model,
            self.weight_net,
            self.weight_optimizer,
            functional_model=functional_model,
            reduce_weight_net_grads=reduce_weight_net_grads,
            **self._step_options(),
        )

    def _step_options(self) -> dict:
        return {
            "example_loss": self.example_loss,
            "meta_loss": self.meta_loss,
            "inner_lr": self.rates.inner_lr,
            "clip": self._clip(),
            "precision": self.precision,
            "scope": self.scope,
            "weighted_update": self.ablation.weighted_update,
            "meta_step_fn": self.meta_step_fn,
        }

    def next_extra_batches(self) -> list[dict]:
        """The next meta batch on a meta step (every ``hamr.meta.every``-th step), else none."""
        return [self._next_meta_batch()] if self.steps % self.hp.meta.every == 0 else []

    def record_step(self, batch: dict, outputs: tuple, flags: list[bool]) -> None:
        _, _, signal, w_post, meta_loss = outputs
        if meta_loss is not None:
            self._record_meta_step(meta_loss.clone(), flags[1])
        self._record_step(batch, signal.clone(), w_post.clone())

    def make_graph_ready(self) -> None:
        """For trainer.cuda_graphs: f_θ's optimiser rebuilt graph-ready (fused, capturable; before any
        state is loaded into it). Refused for a step a graph cannot replay."""
        if self.hp.meta.every != 1 or self.meta_step_fn is not meta_step:
            raise ConfigError(
                f"config: trainer.cuda_graphs=true is invalid with hamr.meta.every={self.hp.meta.every}; "
                "allowed: hamr.meta.every=1 (a graph replays a step with a meta step)"
            )
        self.weight_optimizer = graph_ready_optimizer(
            torch.optim.Adam,
            self.weight_net.parameters(),
            lr=self.rates.weight_net_lr,
            device=self.device,
            weight_decay=self.hp.weight_net_weight_decay,
        )

    def _record_meta_step(self, meta_loss: torch.Tensor, finite: bool) -> None:
        if finite:
            self._epoch_meta_losses.append(meta_loss)
        else:
            self.skipped_meta_steps += 1
            log.warning("non-finite meta loss %s or weight-network gradient: meta update skipped", meta_loss.item())

    def _record_step(self, batch: dict, signal: torch.Tensor, w_post: torch.Tensor) -> None:
        """Keep the step's hardness input and weights (on the device) for the epoch's end."""
        self.steps += 1
        ema_input = w_post if self.hp.hardness_signal == "weight" else relative_loss(signal)
        self._pending_hardness.append((self.position[batch["index"].numpy()], ema_input, signal))
        self._epoch_weights.append(w_post)

    def state_dict(self) -> dict:
        """Everything that changes during training, for checkpoints (tensors on the CPU)."""
        return {
            "weight_net": self.weight_net.state_dict(),
            "weight_optimizer": self.weight_optimizer.state_dict(),
            "weight_net_initial_norm": self.weight_net_initial_norm,
            "h": self.h.copy(),
            "b": self.b.copy(),
            "steps": self.steps,
            "skipped_meta_steps": self.skipped_meta_steps,
            "meta_batches_consumed": self.meta_batches_consumed,
            "epoch_sampled": self._epoch_sampled.copy(),
            "epoch_records": self.epoch_records(),
        }

    def epoch_records(self) -> dict:
        """The epoch's records so far, on the CPU: each step's (pool positions, EMA input, signal),
        each step's weights, each meta step's loss (what :meth:`end_epoch` applies and reports)."""
        return {
            "pending": [(p, v.cpu(), s.cpu()) for p, v, s in self._pending_hardness],
            "weights": [w.cpu() for w in self._epoch_weights],
            "meta_losses": [m.cpu() for m in self._epoch_meta_losses],
        }

    def set_epoch_records(self, records: dict) -> None:
        """Replace the epoch's records with ``records`` (:meth:`epoch_records`' form; under DDP the
        merge of every process's, so that each applies the same EMA)."""
        device = self.device
        self._pending_hardness = [(p, v.to(device), s.to(device)) for p, v, s in records["pending"]]
        self._epoch_weights = [w.to(device) for w in records["weights"]]
        self._epoch_meta_losses = [m.to(device) for m in records["meta_losses"]]

    def load_state_dict(self, state: dict) -> None:
        self.weight_net.load_state_dict(state["weight_net"])
        self.weight_optimizer.load_state_dict(state["weight_optimizer"])
        if getattr(self.weight_optimizer, "found_inf", None) is not None:  # graph-ready (trainer.cuda_graphs)
            lr_on_device(self.weight_optimizer, self.device)
        self.weight_net_initial_norm = state["weight_net_initial_norm"]
        self.h, self.b = state["h"].copy(), state["b"].copy()
        self.steps, self.skipped_meta_steps = state["steps"], state["skipped_meta_steps"]
        self._epoch_sampled = state["epoch_sampled"]
        records = state.get("epoch_records") or {  # checkpoints written before epoch_records existed
            "pending": state["pending_hardness"],
            "weights": state["epoch_weights"],
            "meta_losses": state["epoch_meta_losses"],
        }
        self.set_epoch_records(records)
        if self.restart_meta_batches is None:
            raise ValueError("HamrMethod.load_state_dict needs restart_meta_batches to restore the meta-batch stream")
        self.meta_batches = self.restart_meta_batches()
        for _ in range(state["meta_batches_consumed"]):
            next(self.meta_batches)
        self.meta_batches_consumed = state["meta_batches_consumed"]

    def _apply_hardness_updates(self) -> np.ndarray:
        """The EMA updates of the epoch, step by step in the order they happened. Returns each pool
        example's last hardness signal of the epoch (NaN where it was not visited)."""
        last_signal = np.full(len(self.pool), np.nan)
        if not self._pending_hardness:
            return last_signal
        values = torch.cat([v for _, v, _ in self._pending_hardness]).double().cpu().numpy()  # one sync
        signals = torch.cat([s for _, _, s in self._pending_hardness]).double().cpu().numpy()
        start = 0
        for positions, _, _ in self._pending_hardness:
            stop = start + len(positions)
            if self.hp.ema_rule == "per_example":
                self.h = update_per_example(self.h, positions, values[start:stop], self.rates.gamma)
            else:
                self.h = update_global_decay(
                    self.h, positions, values[start:stop], self.rates.gamma, self.hp.global_decay_floor
                )
            last_signal[positions] = signals[start:stop]
            start = stop
        self._pending_hardness = []
        return last_signal

    def end_epoch(self, epoch: int) -> dict:
        last_signal = self._apply_hardness_updates()
        hard = hard_examples(self.h, self.hp.hard_ratio)
        boost = self.neighbours is not None and self.ablation.resampling and self.ablation.neighbor_boost
        if boost and (epoch + 1) % self.hp.refresh_every == 0:
            self.b = neighbourhood_scores(self.neighbours, hard)
        diagnostics = self._diagnostics(hard, last_signal)
        self._epoch_weights, self._epoch_meta_losses = [], []
        return diagnostics

    def _diagnostics(self, hard: np.ndarray, last_signal: np.ndarray) -> dict:
        return epoch_diagnostics(
            weights=self._epoch_weights,
            meta_losses=self._epoch_meta_losses,
            h=self.h,
            p=self.probabilities(),
            b=self.b,
            last_signal=last_signal,
            hard=hard,
            pool_classes=self.pool_classes,
            sampled=self._epoch_sampled,
            weight_net=self.weight_net,
            initial_norm=self.weight_net_initial_norm,
            rates=self.rates,
            skipped_meta_steps=self.skipped_meta_steps,
        )


def hamr_epoch_size(hp, ablation, pool_size: int) -> int:
    """Examples one HAMR epoch visits: oversample x the pool when it resamples, else the pool once."""
    return draws_per_epoch(pool_size, hp.oversample) if ablation.resampling else pool_size


def build_hamr_method(context, name: str) -> HamrMethod:
    """A HamrMethod for a run (``context``: hamr.loop.RunContext): its meta set and pool, the k-NN
    graph of the pool's sentence embeddings, the per-step rates of this run's length, the scope of
    the virtual step; what it chose is logged."""
    settings, data = context.settings, context.task_data
    hp, ablation, seed = settings.hamr, settings.ablation, settings.trainer.seed
    if hp.meta_set == "balanced":
        moved, dev_counts, meta_counts = balanced_meta_indices(
            data.train.targets, data.dev.targets, data.task, seed, hp.meta_max_share, hp.meta_min_train_count
        )
        log.info(
            "meta set: dev class counts %s; after moving %d training examples: %s", dev_counts, len(moved), meta_counts
        )
    else:
        moved = []
        log.info("meta set: the dev split alone (%d examples); every training example is trained on", len(data.dev))
    pool = np.setdiff1d(np.arange(len(data.train)), np.asarray(moved, dtype=np.int64))
    if ablation.neighbor_boost and ablation.resampling and hp.k >= len(pool):
        raise ConfigError(
            f"config: hamr.k={hp.k} is invalid; allowed: < the {len(pool)} training examples "
            "left after the meta set (lower hamr.k or raise dataset.max_train_examples)"
        )
    train_features = context.encoded["train"].features
    meta_features = context.encoded["dev"].features + [train_features[i] for i in moved]

    def meta_stream() -> Iterator[dict]:
        return endless(
            DataLoader(
                meta_features,
                batch_size=hp.meta_batch_size,
                shuffle=True,
                drop_last=False,
                collate_fn=context.collate,
                generator=torch.Generator().manual_seed(seed),
            )
        )

    neighbours = None
    if ablation.resampling and ablation.neighbor_boost:
        texts = [data.train.inputs[i] if data.task == "cls" else " ".join(data.train.inputs[i]) for i in pool]
        embeddings = embed_texts(
            texts,
            hp.sentence_encoder,
            hp.embed_batch_size,
            hp.embed_max_length,
            str(context.device),
            context.cache_dir,
            name=settings.dataset.name,
        )
        neighbours = knn_graph(embeddings, hp.k, hp.knn_index, hp.knn_exact_max)
    type_counts = Counter(data.class_counts("train"))
    pool_classes = [stratum_of(data.train.targets[i], data.task, type_counts) for i in pool]
    _ensure_double_backward_attention(context.model)
    scope = None if hp.meta.scope is None else scope_parameter_names(context.model, hp.meta.scope)
    if scope is not None:
        log.info(
            "meta step: virtual update over the head and top %d layers (%d of %d parameter tensors)",
            hp.meta.scope,
            len(scope),
            sum(p.requires_grad for p in context.model.parameters()),
        )
    if hp.meta.every > 1:
        log.info("meta step: every %d training steps; weights from the current f_θ in between", hp.meta.every)
    trainer = settings.trainer
    rates = step_rates(
        hp,
        trainer_lr=trainer.lr,
        steps_per_epoch=steps_per_epoch(hamr_epoch_size(hp, ablation, len(pool)), trainer.batch_size),
        epochs=trainer.epochs,
    )
    log.info(
        "HAMR per-step rates: hardness EMA decay %.4g per %s, inner lr %.3g, weight-net lr %.3g (%d meta steps)",
        rates.gamma,
        "visit" if hp.ema_rule == "per_example" else "step",
        rates.inner_lr,
        rates.weight_net_lr,
        rates.meta_steps,
    )
    return HamrMethod(
        name=name,
        loss=context.loss,
        hp=hp,
        rates=rates,
        ablation=ablation,
        task=data.task,
        device=context.device,
        pool=pool,
        n_train=len(data.train),
        meta_batches=meta_stream(),
        neighbours=neighbours,
        pool_classes=pool_classes,
        precision=settings.trainer.precision,
        seed=seed,
        scope=scope,
        restart_meta_batches=meta_stream,
    )
