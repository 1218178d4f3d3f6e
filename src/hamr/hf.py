"""HAMR inside any ``transformers.Trainer`` script: :class:`HamrTrainer` (docs/trainer.md).

The Trainer keeps what it owns (the model's forward and backward, its optimiser, scheduler,
gradient clipping and accumulation, evaluation, checkpoints, logging, distributed launch); HAMR
adds what :mod:`hamr.loop` adds, through the same :class:`hamr.algorithm.method.HamrMethod`:

- the training sampler draws each epoch from HAMR's sampling probabilities (:class:`HamrSampler`);
- ``compute_loss`` runs the meta step on f_θ and returns the post-meta weighted loss
  (:func:`hamr.steps.hamr_loss`), which the Trainer back-propagates and steps;
- at each epoch's end the hardness EMA, the neighbourhood refresh and HAMR's diagnostics (logged
  under ``hamr/``, so ``report_to`` sends them to W&B or TensorBoard);
- ``hamr_state.pt`` beside every ``checkpoint-<step>``, read back by ``resume_from_checkpoint``.

Under DDP (``torchrun``, ``accelerate launch``) every process draws the same epoch order (its own
generator, seeded alike), f_θ's gradients are averaged over the processes before its update, and
the hardness updates of all processes are gathered, so that θ, h and b stay identical everywhere.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.data import DataLoader, Dataset, IterableDataset, Sampler
from transformers import Trainer, TrainerCallback, TrainerState
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR, get_last_checkpoint

from hamr.algorithm.meta_step import scope_parameter_names
from hamr.algorithm.method import HamrMethod, endless, hamr_epoch_size
from hamr.algorithm.neighbors import embed_texts, knn_graph
from hamr.algorithm.rates import step_rates
from hamr.checkpoint import UnreadableCheckpoint, decode_checkpoint, encode_checkpoint
from hamr.config import AblationConfig, HamrConfig, MetaConfig, default_lambda
from hamr.data.encode import IGNORE_INDEX
from hamr.data.records import entity_types
from hamr.data.subset import stratum_of
from hamr.losses import CrossEntropyLoss, ElementwiseLoss
from hamr.results import atomic_write_bytes

log = logging.getLogger(__name__)

INDEX_COLUMN = "hamr_index"  # each training example's position, added to the training set
STATE_FILE = "hamr_state.pt"  # HAMR's state beside a Trainer checkpoint
# the ablations of the paper's Table 2 (conf/ablation/*.yaml)
ABLATIONS = {
    "full": AblationConfig("full", True, True, True),
    "no_meta_weight": AblationConfig("no_meta_weight", False, True, True),
    "no_resampling": AblationConfig("no_resampling", True, False, False),
    "no_neighbor_boost": AblationConfig("no_neighbor_boost", True, True, False),
}


# --- refusals --------------------------------------------------------------------------------
def refusals(
    args, *, compute_loss_func=None, train_dataset=None, model=None, hp: HamrConfig | None = None
) -> list[str]:
    """Why HamrTrainer cannot run these settings (each a one-line reason and what to use instead);
    empty when it can."""
    reasons = []
    if args.fp16:
        reasons.append("fp16=True: GradScaler does not scale the meta step's torch.autograd.grad; use bf16=True")
    if args.torch_compile:
        reasons.append("torch_compile=True: torch.compile's aot_autograd refuses the meta step's double backward")
    if args.deepspeed:
        reasons.append(
            "deepspeed: DeepSpeed owns the backward the meta step differentiates through; use DDP (torchrun)"
        )
    if args.fsdp:
        reasons.append("fsdp: FSDP shards the parameters the virtual step updates; use DDP (torchrun)")
    if getattr(args, "parallelism_config", None) is not None:
        reasons.append(
            "parallelism_config (tensor/context/sequence parallelism): the virtual step needs whole parameters"
        )
    if args.n_gpu > 1:
        reasons.append(
            f"{args.n_gpu} GPUs in one process (DataParallel): replicas cannot share the meta step; "
            "launch one process per GPU with torchrun --nproc_per_node"
        )
    if args.ddp_static_graph:
        reasons.append("ddp_static_graph=True: DDP loses gradient synchronisation after the meta step; leave it False")
    # transformers 5.24 renamed gradient_checkpointing to activation_checkpointing (the old names still alias)
    renamed = hasattr(args, "activation_checkpointing")
    checkpointing = args.activation_checkpointing if renamed else args.gradient_checkpointing
    options = (args.activation_checkpointing_kwargs if renamed else args.gradient_checkpointing_kwargs) or {}
    if checkpointing and options.get("use_reentrant") is True:
        reasons.append(
            "activation_checkpointing_kwargs={'use_reentrant': True}: reentrant checkpointing cannot run the "
            "meta step's double backward; use {'use_reentrant': False}"
        )
    if compute_loss_func is not None:
        reasons.append(
            "compute_loss_func: HAMR computes the training loss itself; pass the loss as HamrTrainer(loss=...)"
        )
    if args.label_smoothing_factor:
        reasons.append(
            "label_smoothing_factor: HAMR weighs plain per-example losses; pass a loss as HamrTrainer(loss=...)"
        )
    if getattr(args, "use_liger_kernel", False):
        reasons.append("use_liger_kernel=True: Liger's fused loss returns no logits to weigh; leave it False")
    if getattr(args, "train_sampling_strategy", "random") != "random":
        reasons.append(
            f"train_sampling_strategy={args.train_sampling_strategy!r}: HAMR's sampler draws the epochs; leave 'random'"
        )
    if args.optim in ("lomo", "adalomo"):
        reasons.append(
            f"optim={args.optim!r}: LOMO fuses backward and update, leaving no loss to weigh; use adamw_torch"
        )
    if isinstance(train_dataset, IterableDataset):
        reasons.append(
            "an IterableDataset: HAMR keeps per-example hardness and samples by index; use a map-style Dataset"
        )
    config = getattr(model, "config", None)
    if config is not None:
        if getattr(config, "problem_type", None) in ("multi_label_classification", "regression"):
            reasons.append(f"problem_type={config.problem_type!r}: HAMR weighs single-label cross-entropy losses")
        elif getattr(config, "num_labels", 2) == 1:
            reasons.append("num_labels=1 (regression): HAMR weighs single-label cross-entropy losses")
    if hp is not None and hp.meta_set != "dev":
        reasons.append(f"hamr.meta_set={hp.meta_set!r}: the Trainer takes its meta set as meta_dataset; leave 'dev'")
    return reasons


def infer_task(model) -> str:
    """``cls`` for ...ForSequenceClassification, ``ner`` for ...ForTokenClassification (a PEFT
    model by its base); raises ValueError otherwise."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    name = type(base).__name__
    if name.endswith("ForSequenceClassification"):
        return "cls"
    if name.endswith("ForTokenClassification"):
        return "ner"
    raise ValueError(
        f"HamrTrainer: cannot tell the task of a {name}; pass task='cls' (one label per example) or "
        "task='ner' (one label per token)"
    )


# --- data ------------------------------------------------------------------------------------
class IndexedDataset(Dataset):
    """A map-style dataset whose items carry their position under ``hamr_index``."""

    def __init__(self, dataset: Dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int) -> dict:
        return {**self.dataset[i], INDEX_COLUMN: i}


def with_index(dataset):
    """``dataset`` with an ``hamr_index`` column (a datasets.Dataset) or item key (any other)."""
    if hasattr(dataset, "add_column") and hasattr(dataset, "column_names"):
        if INDEX_COLUMN in dataset.column_names:
            dataset = dataset.remove_columns(INDEX_COLUMN)
        return dataset.add_column(INDEX_COLUMN, list(range(len(dataset))))
    return IndexedDataset(dataset)


def example_labels(dataset) -> list:
    """Each example's label (cls: an int) or label sequence (ner), from a ``labels`` or ``label``
    column or item key."""
    if hasattr(dataset, "column_names"):
        for column in ("labels", "label"):
            if column in dataset.column_names:
                return list(dataset[column])
    items = [dataset[i] for i in range(len(dataset))]
    for key in ("labels", "label"):
        if items and key in items[0]:
            return [item[key] for item in items]
    raise ValueError("HamrTrainer: the training set has no 'labels' or 'label' column; add one")


def pool_classes(labels: list, task: str, id2label: dict) -> list[str]:
    """Each example's class (cls) or rarest entity type (ner), for the diagnostics' shares."""
    name = {int(k): v for k, v in (id2label or {}).items()}
    if task == "cls":
        return [name.get(int(y), str(int(y))) for y in labels]
    tags = [[name.get(int(t), str(int(t))) for t in sequence if int(t) != IGNORE_INDEX] for sequence in labels]
    type_counts = Counter(t for sentence in tags for t in entity_types(sentence))
    return [stratum_of(sentence, "ner", type_counts) for sentence in tags]


class HamrSampler(Sampler[int]):
    """Each epoch's order from the trainer's HamrMethod (the same on every process: its own
    generator, seeded with ``args.seed``); iterating it begins an epoch."""

    def __init__(self, trainer: HamrTrainer):
        self.trainer = trainer

    def __len__(self) -> int:
        return self.trainer.hamr_method.epoch_size(len(self.trainer.train_dataset))

    def __iter__(self) -> Iterator[int]:
        yield from self.trainer._begin_epoch().tolist()


class _EpochEnd(TrainerCallback):
    """Runs HAMR's epoch end (EMA, refresh, diagnostics) before the Trainer evaluates."""

    def __init__(self, trainer: HamrTrainer):
        self.trainer = trainer

    def on_epoch_end(self, args, state, control, **kwargs):
        self.trainer._end_epoch()


def merge_epoch_records(per_process: list[dict]) -> dict:
    """One epoch's records (:meth:`HamrMethod.epoch_records`) of every process as one process's:
    step i of process 0, of process 1, ... (the order the batches were drawn in), then the meta losses."""
    steps = max(len(r["pending"]) for r in per_process)
    merged = {"pending": [], "weights": [], "meta_losses": []}
    for i in range(steps):
        for records in per_process:
            if i < len(records["pending"]):
                merged["pending"].append(records["pending"][i])
                merged["weights"].append(records["weights"][i])
    merged["meta_losses"] = [m for records in per_process for m in records["meta_losses"]]
    return merged


# --- the trainer -----------------------------------------------------------------------------
def hamr_config(hamr: HamrConfig | dict | None, task: str, batch_size: int) -> HamrConfig:
    """HAMR's hyper-parameters: HamrConfig's defaults (conf/hamr/default.yaml's), with λ by task
    and the meta batch as large as the training batch as there, then ``hamr``'s values."""
    if isinstance(hamr, HamrConfig):
        return hamr
    values = dict(hamr or {})
    if "meta" in values and isinstance(values["meta"], dict):
        values["meta"] = MetaConfig(**values["meta"])
    unknown = sorted(set(values) - {f.name for f in dataclasses.fields(HamrConfig)})
    if unknown:
        raise ValueError(f"HamrTrainer: hamr has unknown keys {unknown}; allowed: the fields of hamr.config.HamrConfig")
    values.setdefault("lambda_", default_lambda(task))
    values.setdefault("meta_batch_size", batch_size)
    return HamrConfig(**values)


class HamrTrainer(Trainer):
    """``transformers.Trainer`` with HAMR. Besides the Trainer's arguments:

    - ``meta_dataset``: the meta set (default ``eval_dataset``), collated like the training set;
    - ``hamr``: HAMR's hyper-parameters, a :class:`hamr.config.HamrConfig` or a dict of its fields
      (defaults: those of ``conf/hamr/default.yaml``, λ by task);
    - ``ablation``: ``full`` | ``no_meta_weight`` | ``no_resampling`` | ``no_neighbor_boost``;
    - ``task``: ``cls`` or ``ner`` (default: from the model's class);
    - what the k-NN graph embeds: ``text_column`` of the training set (NER: a list of tokens,
      joined by spaces) with ``hamr.sentence_encoder``, or ``embeddings`` (N, D), one row per
      training example (L2-normalised by the caller, as the neighbours are by inner product);
    - ``loss``: the per-example loss HAMR weighs (a :class:`hamr.losses.ElementwiseLoss`; default CE).

    Evaluation and prediction use the model's own unweighted loss and leave HAMR's state alone.
    Settings that would make HAMR silently wrong are refused at construction (:func:`refusals`).
    """

    def __init__(
        self,
        model=None,
        args=None,
        *,
        train_dataset=None,
        meta_dataset=None,
        hamr: HamrConfig | dict | None = None,
        ablation: str | AblationConfig = "full",
        task: str | None = None,
        text_column: str | None = "text",
        embeddings: np.ndarray | None = None,
        loss: ElementwiseLoss | None = None,
        **kwargs,
    ):
        if args is None:
            raise ValueError("HamrTrainer: pass args=TrainingArguments(...) (its seed seeds HAMR's sampler)")
        if train_dataset is None:
            raise ValueError("HamrTrainer: pass train_dataset (HAMR keeps per-example state over it)")
        task = task or infer_task(model)
        if task not in ("cls", "ner"):
            raise ValueError(f"HamrTrainer: task={task!r}; allowed: 'cls' | 'ner'")
        hp = hamr_config(hamr, task, args.per_device_train_batch_size)
        reasons = refusals(
            args, compute_loss_func=kwargs.get("compute_loss_func"), train_dataset=train_dataset, model=model, hp=hp
        )
        if reasons:
            raise ValueError(f"HamrTrainer refuses {reasons[0]}")
        if isinstance(ablation, str):
            if ablation not in ABLATIONS:
                raise ValueError(f"HamrTrainer: ablation={ablation!r}; allowed: {' | '.join(ABLATIONS)}")
            ablation = ABLATIONS[ablation]
        meta_dataset = meta_dataset if meta_dataset is not None else kwargs.get("eval_dataset")
        if meta_dataset is None or isinstance(meta_dataset, dict):
            raise ValueError("HamrTrainer: pass meta_dataset (a Dataset; the default is eval_dataset when it is one)")
        boost = ablation.resampling and ablation.neighbor_boost
        if (
            boost
            and embeddings is None
            and not (hasattr(train_dataset, "column_names") and text_column in train_dataset.column_names)
        ):
            raise ValueError(
                f"HamrTrainer: the k-NN graph needs the training set's text column {text_column!r} or embeddings= "
                "(one row per training example); or use ablation='no_neighbor_boost'"
            )
        if embeddings is not None and len(embeddings) != len(train_dataset):
            raise ValueError(
                f"HamrTrainer: embeddings has {len(embeddings)} rows for {len(train_dataset)} training examples"
            )
        super().__init__(model=model, args=args, train_dataset=with_index(train_dataset), **kwargs)
        # the weighted loss is a per-batch mean: the Trainer divides it by the accumulation steps
        self.model_accepts_loss_kwargs = False
        self.loss_is_scaled_for_ga = False
        self.hamr_hp, self.hamr_ablation, self.hamr_task = hp, ablation, task
        self.hamr_loss = loss if loss is not None else CrossEntropyLoss()
        self.meta_dataset = meta_dataset
        self._texts = None
        if boost and embeddings is None:
            column = train_dataset[text_column]
            self._texts = [" ".join(t) if isinstance(t, (list, tuple)) else str(t) for t in column]
        self._embeddings = embeddings
        self._labels = example_labels(train_dataset)
        self.hamr_method: HamrMethod | None = None
        self._resume_from: str | None = None
        self._generator = torch.Generator().manual_seed(args.seed)
        self._order: torch.Tensor | None = None  # the current epoch's order (training indices)
        self._replay_order: torch.Tensor | None = None  # a resumed epoch's order, replayed once
        self._epochs_begun, self._epoch_open = 0, False
        self._loss_functions: dict[int, object] = {}
        self.hamr_history: list[dict] = []  # HAMR's diagnostics, one dict per ended epoch (also in the logs)
        self.add_callback(_EpochEnd(self))

    # --- building HAMR at the start of training ------------------------------------------------
    def _set_signature_columns_if_needed(self):
        super()._set_signature_columns_if_needed()
        if INDEX_COLUMN not in self._signature_columns:
            self._signature_columns = [*self._signature_columns, INDEX_COLUMN]

    def _get_train_sampler(self, train_dataset=None):
        return HamrSampler(self)

    def get_train_dataloader(self) -> DataLoader:
        if self.hamr_method is None:
            self.hamr_method = self._build_method()
            if self._resume_from is not None:
                self._load_hamr_state(self._resume_from)
        return super().get_train_dataloader()

    def _micro_batches(self) -> tuple[int, float]:
        """(micro-batches one process takes per epoch, epochs the run takes, possibly fractional)."""
        pool = len(self.train_dataset)
        batches = math.ceil(
            hamr_epoch_size(self.hamr_hp, self.hamr_ablation, pool) / self.args.per_device_train_batch_size
        )
        per_process = math.ceil(batches / max(self.args.world_size, 1))
        if self.args.max_steps <= 0:
            return per_process, float(self.args.num_train_epochs)
        # as the Trainer counts: an epoch's last update may take fewer micro-batches
        accumulation = self.args.gradient_accumulation_steps
        updates_per_epoch = math.ceil(per_process / accumulation)
        full_epochs, updates_left = divmod(self.args.max_steps, updates_per_epoch)
        micro_batches = full_epochs * per_process + min(updates_left * accumulation, per_process)
        return per_process, micro_batches / per_process

    def _build_method(self) -> HamrMethod:
        hp, ablation, seed = self.hamr_hp, self.hamr_ablation, self.args.seed
        device = self.args.device
        model = self.accelerator.unwrap_model(self.model)
        per_epoch, epochs = self._micro_batches()
        rates = step_rates(hp, trainer_lr=self.args.learning_rate, steps_per_epoch=per_epoch, epochs=epochs)
        meta_set = self.meta_dataset
        collate = self.data_collator
        if hasattr(meta_set, "column_names"):
            meta_set = self._remove_unused_columns(meta_set, description="meta")
        else:
            collate = self._get_collator_with_removed_columns(self.data_collator, description="meta")

        def meta_stream() -> Iterator[dict]:
            loader = DataLoader(
                meta_set,
                batch_size=hp.meta_batch_size,
                shuffle=True,
                drop_last=False,
                collate_fn=collate,
                generator=torch.Generator().manual_seed(seed),
            )
            return endless(loader)

        neighbours = None
        if ablation.resampling and ablation.neighbor_boost:
            embeddings = self._embeddings
            if embeddings is None:
                embeddings = embed_texts(
                    self._texts, hp.sentence_encoder, hp.embed_batch_size, hp.embed_max_length, str(device), None
                )
            neighbours = knn_graph(np.asarray(embeddings, dtype=np.float32), hp.k, hp.knn_index, hp.knn_exact_max)
        precision = "bf16" if self.args.bf16 else "fp32"
        torch_state = torch.get_rng_state()  # HamrMethod seeds f_θ's initialisation: leave the Trainer's RNG as it was
        method = HamrMethod(
            name=f"hamr_{ablation.name}",
            loss=self.hamr_loss,
            hp=hp,
            rates=rates,
            ablation=ablation,
            task=self.hamr_task,
            device=device,
            pool=np.arange(len(self.train_dataset)),
            n_train=len(self.train_dataset),
            meta_batches=meta_stream(),
            neighbours=neighbours,
            pool_classes=pool_classes(self._labels, self.hamr_task, getattr(model.config, "id2label", None)),
            precision=precision,
            seed=seed,
            scope=None,
            restart_meta_batches=meta_stream,
        )
        torch.set_rng_state(torch_state)
        if hp.meta.scope is not None:
            method.scope = scope_parameter_names(model, hp.meta.scope)
        log.info(
            "HAMR: %s, %d training examples, %d meta examples; weight-net lr %.3g over %d meta steps",
            self.hamr_task,
            len(self.train_dataset),
            len(self.meta_dataset),
            rates.weight_net_lr,
            rates.meta_steps,
        )
        return method

    # --- epochs --------------------------------------------------------------------------------
    def _begin_epoch(self) -> torch.Tensor:
        """The order of the epoch the sampler begins: a resumed epoch's saved order once, else (after
        ending an epoch left open, as when resuming from its last step) a new draw."""
        if self._replay_order is not None:
            self._order, self._replay_order = self._replay_order, None
            return self._order
        self._end_epoch()
        self._order = self.hamr_method.epoch_order(self._epochs_begun, len(self.train_dataset), self._generator)
        self._epochs_begun += 1
        self._epoch_open = True
        return self._order

    def _end_epoch(self) -> None:
        if not self._epoch_open:
            return
        self._gather_pending()
        diagnostics = self.hamr_method.end_epoch(self._epochs_begun - 1)
        self._epoch_open = False
        numbers = {f"hamr/{k}": float(v) for k, v in diagnostics.items() if isinstance(v, (int, float, np.number))}
        self.hamr_history.append(numbers)
        self.log(dict(numbers))  # Trainer.log adds the epoch to the dict it is given

    def _gather_pending(self) -> None:
        """Under DDP: every process's hardness updates and weights of the epoch, step by step in
        process order, so that each applies the same EMA."""
        if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
            return
        gathered = [None] * dist.get_world_size()
        dist.all_gather_object(gathered, self.hamr_method.epoch_records())
        self.hamr_method.set_epoch_records(merge_epoch_records(gathered))

    # --- the step -------------------------------------------------------------------------------
    def _loss_function(self, model):
        key = id(model)
        if key not in self._loss_functions:
            bare = self.accelerator.unwrap_model(model)
            reduce = None
            if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:

                def reduce(grads: list[torch.Tensor]) -> list[torch.Tensor]:
                    flat = torch.cat([g.reshape(-1) for g in grads])
                    dist.all_reduce(flat)
                    flat /= dist.get_world_size()
                    return [part.view_as(g) for part, g in zip(flat.split([g.numel() for g in grads]), grads)]

            self._loss_functions[key] = self.hamr_method.loss_function(
                model, functional_model=bare if bare is not model else None, reduce_weight_net_grads=reduce
            )
        return self._loss_functions[key]

    def training_step(self, model, inputs, num_items_in_batch=None):
        # The meta step's forward runs under the math SDPA kernel (double backward); a checkpointed
        # layer recomputes it during the Trainer's backward, which must then pick the same kernel.
        with sdpa_kernel([SDPBackend.MATH]):
            return super().training_step(model, inputs, num_items_in_batch)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        index = inputs.pop(INDEX_COLUMN, None)
        if not model.training or return_outputs or index is None:
            return super().compute_loss(
                model, inputs, return_outputs=return_outputs, num_items_in_batch=num_items_in_batch
            )
        method = self.hamr_method
        extra = [self._prepare_inputs(b) for b in method.next_extra_batches()]
        loss, meta_finite, signal, w_post, meta_loss = self._loss_function(model)(inputs, *extra)
        flags = [True, bool(meta_finite)]
        method.record_step({"index": index.cpu()}, (loss.detach(), None, signal, w_post, meta_loss), flags)
        return loss

    # --- checkpoints ----------------------------------------------------------------------------
    def hamr_state_dict(self) -> dict:
        """HAMR's state at a step boundary: the method's (θ, its Adam state, h, b, meta-batch
        position, the epoch's pending updates), the sampler's generator, the epoch's order."""
        return {
            "method": self.hamr_method.state_dict(),
            "generator": self._generator.get_state(),
            "order": self._order,
            "epochs_begun": self._epochs_begun,
            "epoch_open": self._epoch_open,
            "history": list(self.hamr_history),
        }

    def _save_checkpoint(self, model, trial):
        super()._save_checkpoint(model, trial)
        if self.hamr_method is None or not self.args.should_save:
            return
        folder = Path(self._get_output_dir(trial=trial)) / f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}"
        atomic_write_bytes(folder / STATE_FILE, encode_checkpoint(self.hamr_state_dict()))

    def train(self, resume_from_checkpoint=None, **kwargs):
        if resume_from_checkpoint is not None and resume_from_checkpoint is not False:
            if resume_from_checkpoint is True:
                resume_from_checkpoint = get_last_checkpoint(self.args.output_dir)
                if resume_from_checkpoint is None:
                    raise ValueError(f"resume_from_checkpoint=True: no checkpoint-* folder in {self.args.output_dir}")
            state = Path(resume_from_checkpoint) / STATE_FILE
            if not state.is_file():
                raise ValueError(
                    f"resume_from_checkpoint: {resume_from_checkpoint} has no {STATE_FILE} (not saved by HamrTrainer); "
                    "resume from a HamrTrainer checkpoint or start afresh"
                )
            self._resume_from = os.fspath(resume_from_checkpoint)
        return super().train(resume_from_checkpoint=resume_from_checkpoint, **kwargs)

    def _load_hamr_state(self, checkpoint: str) -> None:
        path = Path(checkpoint) / STATE_FILE
        try:
            state = decode_checkpoint(path.read_bytes())
        except UnreadableCheckpoint as err:
            raise ValueError(f"resume_from_checkpoint: {path} is unreadable: {err}; start afresh") from None
        self.hamr_method.load_state_dict(state["method"])
        self._generator.set_state(state["generator"])
        self._epochs_begun, self._epoch_open = state["epochs_begun"], state["epoch_open"]
        self.hamr_history = list(state["history"])
        batches = self._micro_batches()[0]
        consumed = self.state_steps_in_epoch(checkpoint, batches)
        # mid-epoch: the Trainer skips the batches taken, so the sampler replays the epoch's order;
        # at an epoch's last step the next iteration ends that epoch and draws a new one
        if self._epoch_open and state["order"] is not None and 0 < consumed < batches:
            self._order = self._replay_order = state["order"]

    def state_steps_in_epoch(self, checkpoint: str, batches_per_epoch: int) -> int:
        """Micro-batches of the current epoch taken at ``checkpoint`` (from its trainer_state.json),
        counted as the Trainer counts the batches it skips when resuming."""
        accumulation = self.args.gradient_accumulation_steps
        state = TrainerState.load_from_json(os.path.join(checkpoint, "trainer_state.json"))
        updates_per_epoch = max(math.ceil(batches_per_epoch / accumulation), 1)
        return (state.global_step % updates_per_epoch) * accumulation
