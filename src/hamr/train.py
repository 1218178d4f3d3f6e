"""The one training entry point: ``python -m hamr.train [overrides]`` (Hydra).

Composes the config, validates it, builds data, model, loss and training method, trains, scores
test once with the checkpoint chosen on dev, writes ``metrics.json``; returns the dev Macro-F1
so that Hydra sweepers can optimise it.
"""

from __future__ import annotations

import logging
import os
import resource
import signal
import time
import traceback
from pathlib import Path

import hydra
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import MissingMandatoryValue
from transformers import get_scheduler, set_seed

from hamr.algorithm.rates import steps_per_epoch
from hamr.checkpoint import Checkpointer, Stopped
from hamr.config import ConfigError, is_baseline_method, register_configs, validate
from hamr.cuda_graphs import GraphedTraining, graph_ready_optimizer
from hamr.data.encode import IGNORE_INDEX, collator_for, encode_split_cached
from hamr.data.prepare import load_dataset_splits
from hamr.data.records import DataError
from hamr.evaluation import compact_predictions, predict, score
from hamr.lock import RunLock
from hamr.loop import NumericalError, RunContext, fit, train_step
from hamr.metrics import collapsed, zero_f1_classes
from hamr.models import build_model, load_tokenizer
from hamr.preflight import preflight
from hamr.results import atomic_write_json, git_commit, write_run
from hamr.tracking import make_tracker

log = logging.getLogger("hamr.train")


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


# Keys that do not change a run's result: a finished run whose config differs only here is reused.
# `tuned` only holds values to pick from; the values picked (trainer.lr, ...) are compared.
VOLATILE_KEYS = ("paths", "logger", "force", "resume", "experiment_name", "tags", "objective_seeds", "tuned")
VOLATILE_TRAINER_KEYS = ("progress_bar", "num_threads", "device", "eval_batch_size")
# Where the dataset's files live (HAMR_DATA_DIR, absolute or relative, or the Hub repository they
# would be fetched from) is not what they hold; the run folder is keyed by the dataset's name already.
VOLATILE_DATASET_KEYS = ("dir", "hub")


# Options added after runs were recorded, with the value that reproduces the code before them: a
# recorded config without the key is read as having that value.
LATER_KEYS = {("hamr", "weight_normalisation"): "detached_mean", ("trainer", "cuda_graphs"): False,
              ("trainer", "graph_lengths"): None}


# Sections a baseline run never reads: a change of HAMR's defaults does not make it another configuration.
BASELINE_UNUSED_KEYS = ("hamr", "ablation")


def result_relevant(config: dict) -> dict:
    """The parts of a resolved config that decide the result (for resuming sweeps)."""
    kept = {k: v for k, v in config.items() if k not in VOLATILE_KEYS}
    if is_baseline_method(kept.get("method", {})):
        kept = {k: v for k, v in kept.items() if k not in BASELINE_UNUSED_KEYS}
    for (section, key), before in LATER_KEYS.items():
        if isinstance(kept.get(section), dict) and key not in kept[section]:
            kept[section] = {**kept[section], key: before}
    kept["trainer"] = {k: v for k, v in kept.get("trainer", {}).items() if k not in VOLATILE_TRAINER_KEYS}
    kept["dataset"] = {k: v for k, v in kept.get("dataset", {}).items() if k not in VOLATILE_DATASET_KEYS}
    return kept


def finished_run(run_dir: Path, resolved: dict) -> dict | None:
    """The metrics of a finished run of the same configuration in ``run_dir``, if there is one (an
    unreadable metrics.json is named in a warning and counts as no finished run: it is replaced)."""
    path = run_dir / "metrics.json"
    if not path.is_file():
        return None
    from hamr.results import read_metrics

    metrics = read_metrics(path)
    if metrics is None:
        log.warning("%s is not a readable metrics.json (cut short or edited): the run is trained again and "
                    "the file replaced", path)
        return None
    if result_relevant(metrics.get("config", {})) != result_relevant(resolved):
        log.warning("%s holds a run of another configuration: it is rerun and replaced", path)
        return None
    return metrics


def run(cfg: DictConfig) -> dict:
    """Train and evaluate one configuration; returns the metrics written to metrics.json. A run
    whose metrics.json already exists for the same configuration is not repeated (``force=true``
    repeats it), so an interrupted sweep resumes where it stopped; a run folder that another job is
    training is waited for (hamr.lock)."""
    settings = validate(cfg)  # every range check, before any data or model is touched
    loss = preflight(settings, cfg.baseline_loss)  # the device, model files, output folders, the loss's values
    resolved = OmegaConf.to_container(cfg, resolve=True)
    run_dir = Path(settings.paths.run_dir)
    if not settings.force and (done := finished_run(run_dir, resolved)) is not None:
        log.info("skipped: %s is finished (force=true reruns it)", run_dir / "metrics.json")
        return done
    # bad input stops here, before anything is written or the model loads
    task_data = load_dataset_splits(settings.dataset, settings.trainer.seed,
                                    strict_iob2=settings.trainer.seqeval_mode == "strict")
    lock = RunLock(run_dir)
    waited = not lock.acquire()
    try:
        if waited and not settings.force and (done := finished_run(run_dir, resolved)) is not None:
            log.info("skipped: %s was finished by the job this one waited for", run_dir / "metrics.json")
            return done
        return _train(cfg, settings, resolved, task_data, lock, loss)
    finally:
        lock.release()


def _load_encoder(model_cfg, task: str, label_names: list[str]):
    """Tokenizer and model, a failure to find or fetch them as one ConfigError line."""
    try:
        return load_tokenizer(model_cfg), build_model(model_cfg, task, label_names)
    except OSError as err:  # not on the Hub, no network, a broken folder
        raise ConfigError(f"config: model.name_or_path={model_cfg.name_or_path} could not be loaded: "
                          f"{str(err).splitlines()[0]} (a local folder, a reachable Hub id, or package:<module>)") from None


def _train(cfg: DictConfig, settings, resolved: dict, task_data, lock: RunLock, loss) -> dict:
    run_dir = Path(settings.paths.run_dir)
    commit = git_commit()  # the code as it is when the run starts
    ds, tr = settings.dataset, settings.trainer
    set_seed(tr.seed)
    if tr.num_threads:
        torch.set_num_threads(tr.num_threads)
    device = pick_device(tr.device)
    if tr.cuda_graphs and device.type != "cuda":
        raise ConfigError(f"config: trainer.cuda_graphs=true is invalid on device {device}; allowed: a CUDA device "
                          "(set trainer.cuda_graphs=false, or trainer.device=cuda on a GPU machine)")
    if device.type == "cpu":
        torch.use_deterministic_algorithms(True, warn_only=True)

    tokenizer, model = _load_encoder(settings.model, ds.task, task_data.label_names)
    encoded = {name: encode_split_cached(task_data.split(name), ds.task, task_data.label2id, tokenizer,
                                         tr.max_length, Path(settings.paths.cache_dir))
               for name in ("train", "dev", "test")}
    for name, data in encoded.items():
        if data.truncated:
            log.warning("%s: %d of %d %s examples are longer than max_length=%d and are truncated",
                        ds.name, data.truncated, len(data), name, tr.max_length)
        if data.unrepresented:
            log.warning("%s: %d %s words have no sub-word in the tokenizer (e.g. zero-width spaces): they are "
                        "not trained on and are predicted O", ds.name, data.unrepresented, name)
    collate = collator_for(ds.task, tokenizer)
    train_labels = torch.tensor([y for f in encoded["train"].features
                                 for y in (f["labels"] if ds.task == "ner" else [f["labels"]])])
    loss.prepare(torch.bincount(train_labels[train_labels != IGNORE_INDEX], minlength=len(task_data.label_names)))

    model = model.to(device)
    loss.to(device)
    context = RunContext(settings, task_data, encoded, collate, model, loss, device, Path(settings.paths.cache_dir))
    method = instantiate(cfg.method)(context)
    if tr.cuda_graphs:
        optimizer = graph_ready_optimizer(torch.optim.AdamW, model.parameters(), lr=tr.lr, device=device,
                                          weight_decay=tr.weight_decay)
        step_fn = GraphedTraining(model, method, optimizer, grad_clip=tr.grad_clip, batch_size=tr.batch_size,
                                  lengths=tr.graph_lengths or [tr.max_length], pad_token_id=tokenizer.pad_token_id or 0,
                                  device=device)
    else:
        optimizer, step_fn = torch.optim.AdamW(model.parameters(), lr=tr.lr, weight_decay=tr.weight_decay), train_step
    total_steps = tr.epochs * steps_per_epoch(method.epoch_size(len(encoded["train"])), tr.batch_size)
    scheduler = get_scheduler(tr.scheduler, optimizer, num_warmup_steps=int(tr.warmup_ratio * total_steps),
                              num_training_steps=total_steps)

    tags = [ds.name, settings.method.name, f"seed={tr.seed}", settings.model.name, *settings.tags]
    tracker = make_tracker(settings.logger, resolved, f"{ds.name}/{settings.method.name}/seed={tr.seed}",
                           tags, settings.logger.dir or settings.paths.output_dir)

    def evaluate(split: str) -> tuple[dict, list]:
        predictions = predict(model, encoded[split], collate, tr.eval_batch_size, device, tr.precision)
        return score(task_data, task_data.split(split), predictions, tr.seqeval_mode), predictions

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    started = time.time()
    checkpointer = Checkpointer(Path(settings.paths.checkpoint_dir), run_dir, result_relevant(resolved), settings.resume)
    result = fit(model, method, encoded["train"], collate, optimizer, scheduler, epochs=tr.epochs,
                 batch_size=tr.batch_size, grad_clip=tr.grad_clip, seed=tr.seed,
                 evaluate_dev=lambda: evaluate("dev")[0], progress_bar=tr.progress_bar,
                 log_metrics=lambda row, step: (lock.heartbeat(), tracker.log(row, step)),
                 max_skip_share=tr.max_skip_share, checkpointer=checkpointer, step_fn=step_fn)
    if tr.select == "best":
        model.load_state_dict(result.best_state)
    dev_scores = result.best_dev_scores if tr.select == "best" else result.last_dev_scores
    test_scores, test_predictions = evaluate("test")  # scored once, with the checkpoint chosen on dev

    metrics = {
        "dataset": ds.name, "method": settings.method.name, "model": settings.model.name, "seed": tr.seed,
        "loss": type(loss).__name__,  # the loss object the run built (HAMR: the per-example loss it weights)
        "dev_macro_f1": dev_scores["macro_f1"], "test_macro_f1": test_scores["macro_f1"],
        # the run did not learn (hamr.metrics.collapsed, from dev alone): counted in the tables, rejected by tuning
        "collapsed": collapsed(dev_scores), "dev_zero_f1_classes": zero_f1_classes(dev_scores),
        "selected_epoch": result.best_epoch if tr.select == "best" else tr.epochs, "select": tr.select,
        "train_class_counts": task_data.class_counts("train"), "n_train": len(task_data.train),
        "label_names": task_data.label_names,
        "dev": dev_scores, "test": test_scores, "history": result.history,
        "train_seconds": result.train_seconds, "steps": result.steps, "skipped_steps": result.skipped_steps,
        "skipped_meta_steps": getattr(method, "skipped_meta_steps", 0),
        # trainer.cuda_graphs: how many steps replayed a graph and how many ran eagerly (warm-up, odd shapes)
        "cuda_graph_steps": dict(step_fn.steps_by_kind) if tr.cuda_graphs else None,
        "train_examples_per_second": result.train_examples / max(result.train_seconds, 1e-9),
        "wall_seconds": time.time() - started,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "peak_cuda_mb": torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None,
        "device": str(device), "torch": torch.__version__, "git_commit": commit,
        "finished_at": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "config": resolved,
        # the command line's overrides as Hydra names output folders (in full: a folder name may be shortened)
        "override_dirname": HydraConfig.get().job.override_dirname if HydraConfig.initialized() else None,
    }
    path = write_run(run_dir, metrics, compact_predictions(task_data, task_data.test, test_predictions))
    (run_dir / "error.json").unlink(missing_ok=True)  # an earlier failure of this run is superseded
    checkpointer.remove()  # finished: nothing left to resume
    tracker.summary({k: metrics[k] for k in ("dev_macro_f1", "test_macro_f1", "selected_epoch", "train_seconds")})
    tracker.table("per_class_f1", ["class", "dev_f1", "test_f1", "test_support"],
                  [[c, dev_scores["per_class_f1"].get(c, 0.0), f1, test_scores["support"][c]]
                   for c, f1 in test_scores["per_class_f1"].items()])
    tracker.finish()
    log.info("dev Macro-F1 %.4f, test Macro-F1 %.4f -> %s", metrics["dev_macro_f1"], metrics["test_macro_f1"], path)
    return metrics


def record_failure(cfg: DictConfig, err: Exception) -> Path | None:
    """Write ``error.json`` (config, exception, traceback tail) into the run folder, so that a
    sweep's table shows the cell as failed; metrics.json is never written for a failed run."""
    try:
        resolved = OmegaConf.to_container(cfg, resolve=True)
        path = Path(resolved["paths"]["run_dir"]) / "error.json"
        atomic_write_json(path, {"exception": f"{type(err).__name__}: {err}",
                                 "traceback": traceback.format_exc().splitlines()[-30:],
                                 "failed_at": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "config": resolved})
        return path
    except Exception:  # noqa: BLE001 - never hide the original error
        return None


def run_objective(cfg: DictConfig) -> float:
    """The dev Macro-F1 that sweepers maximise: of the one run, or the mean over ``objective_seeds``
    (each seed its own run and run folder, so a repeated tuning command skips finished seeds)."""
    scores = []
    for seed in cfg.objective_seeds or [cfg.trainer.seed]:
        cfg.trainer.seed = seed
        scores.append(run(cfg)["dev_macro_f1"])
    return sum(scores) / len(scores)


def _hydra_entry(cfg: DictConfig) -> float:
    """One job. A single run stops on bad input with one line; in a multirun every failure is
    recorded in the job's error.json, Hydra goes on with the other jobs and exits non-zero at the end."""
    multirun = HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN
    try:
        try:
            return run_objective(cfg)
        except MissingMandatoryValue as err:  # e.g. a dataset YAML without name:
            raise ConfigError(f"config: {err.full_key} is not set; set it in its YAML file or on the command line "
                              f"({err.full_key}=...)") from None
    except Stopped as stop:  # the checkpoint is saved; exit as a terminated process does
        log.warning("%s", stop)
        previous = signal.getsignal(stop.signum)
        if stop.signum != signal.SIGINT and callable(previous):
            previous(stop.signum, None)  # a scheduler's handler (submitit: requeue the job, which resumes)
        raise SystemExit(128 + stop.signum) from None
    except (ConfigError, DataError, NumericalError) as err:  # the user's input: one line, no traceback
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise  # the traceback, on request
        if not multirun:
            raise SystemExit(f"error: {err}") from None
        path = record_failure(cfg, err)
        log.error("job failed: %s (details: %s)", err, path)
        raise RuntimeError(f"error: {err}") from None
    except Exception as err:  # a bug: its traceback; a sweep job also leaves error.json for the tables
        path = record_failure(cfg, err) if multirun else None
        log.error("job failed: %s: %s%s", type(err).__name__, err, f" (details: {path})" if path else "")
        raise


def main() -> None:
    register_configs()
    hydra.main(version_base="1.3", config_path="../../conf", config_name="train")(_hydra_entry)()


if __name__ == "__main__":
    main()
