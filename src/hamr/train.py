"""The one training entry point: ``python -m hamr.train [overrides]`` (Hydra).

Validates the composed config, builds data, model, loss and method, trains, scores test once with
the checkpoint chosen on dev, writes ``metrics.json``; returns the dev Macro-F1 for Hydra's sweepers.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import hydra
import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from hamr.checkpoint import Checkpointer
from hamr.config import register_configs, validate
from hamr.data.prepare import load_dataset_splits
from hamr.evaluation import compact_predictions, predict, score
from hamr.jobs import reported
from hamr.lock import RunLock
from hamr.loop import fit
from hamr.preflight import preflight
from hamr.results import git_commit, write_run
from hamr.runs import finished_run, result_relevant, run_record
from hamr.tracking import make_tracker

log = logging.getLogger("hamr.train")


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
    task_data = load_dataset_splits(
        settings.dataset, settings.trainer.seed, strict_iob2=settings.trainer.seqeval_mode == "strict"
    )
    lock = RunLock(run_dir)
    waited = not lock.acquire()
    try:
        if waited and not settings.force and (done := finished_run(run_dir, resolved)) is not None:
            log.info("skipped: %s was finished by the job this one waited for", run_dir / "metrics.json")
            return done
        return _train(cfg, settings, resolved, task_data, lock, loss)
    finally:
        lock.release()


def _train(cfg: DictConfig, settings, resolved: dict, task_data, lock: RunLock, loss) -> dict:
    # imported here, not at the top: transformers' scheduler and seed helpers import peft (when
    # installed) and with it the generation stack, seconds that a sweep of finished runs never needs
    from transformers import set_seed

    from hamr.components import build_components

    run_dir, ds, tr = Path(settings.paths.run_dir), settings.dataset, settings.trainer
    commit, started = git_commit(), time.time()  # the code as it is when the run starts
    set_seed(tr.seed)
    if tr.num_threads:
        torch.set_num_threads(tr.num_threads)
    parts = build_components(cfg, settings, task_data, loss)
    name = f"{ds.name}/{settings.method.name}/seed={tr.seed}"
    tracker = make_tracker(
        settings.logger,
        resolved,
        name,
        [*name.split("/"), settings.model.name, *settings.tags],
        settings.logger.dir or settings.paths.output_dir,
    )

    def evaluate(split: str) -> tuple[dict, list]:
        predictions = predict(
            parts.model, parts.encoded[split], parts.collate, tr.eval_batch_size, parts.device, tr.precision
        )
        return score(task_data, task_data.split(split), predictions, tr.seqeval_mode), predictions

    if parts.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(parts.device)
    checkpointer = Checkpointer(
        Path(settings.paths.checkpoint_dir), run_dir, result_relevant(resolved), settings.resume
    )
    result = fit(
        parts.model,
        parts.method,
        parts.encoded["train"],
        parts.collate,
        parts.optimizer,
        parts.scheduler,
        epochs=tr.epochs,
        batch_size=tr.batch_size,
        grad_clip=tr.grad_clip,
        seed=tr.seed,
        evaluate_dev=lambda: evaluate("dev")[0],
        progress_bar=tr.progress_bar,
        log_metrics=lambda row, step: (lock.heartbeat(), tracker.log(row, step)),
        max_skip_share=tr.max_skip_share,
        checkpointer=checkpointer,
        step_fn=parts.step_fn,
    )
    if tr.select == "best":
        parts.model.load_state_dict(result.best_state)
    dev_scores = result.best_dev_scores if tr.select == "best" else result.last_dev_scores
    test_scores, test_predictions = evaluate("test")  # scored once, with the checkpoint chosen on dev

    metrics = run_record(
        settings,
        resolved,
        task_data,
        result,
        dev_scores,
        test_scores,
        loss=loss,
        method=parts.method,
        step_fn=parts.step_fn,
        device=parts.device,
        commit=commit,
        started=started,
        override_dirname=HydraConfig.get().job.override_dirname if HydraConfig.initialized() else None,
    )
    path = write_run(run_dir, metrics, compact_predictions(task_data, task_data.test, test_predictions))
    (run_dir / "error.json").unlink(missing_ok=True)  # an earlier failure of this run is superseded
    checkpointer.remove()  # finished: nothing left to resume
    tracker.finish_run(metrics)
    log.info("dev Macro-F1 %.4f, test Macro-F1 %.4f -> %s", metrics["dev_macro_f1"], metrics["test_macro_f1"], path)
    return metrics


def _hydra_entry(cfg: DictConfig) -> float:
    """One job: the dev Macro-F1 that sweepers maximise, of the one run or the mean over
    ``objective_seeds`` (each seed its own run and run folder, so a repeated tuning command skips
    finished seeds)."""
    seeds = list(cfg.objective_seeds) or [cfg.trainer.seed]
    scores = [reported(run, OmegaConf.merge(cfg, {"trainer": {"seed": seed}}))["dev_macro_f1"] for seed in seeds]
    return sum(scores) / len(scores)


def main() -> None:
    register_configs()
    hydra.main(version_base="1.3", config_path="../../conf", config_name="train")(_hydra_entry)()


if __name__ == "__main__":
    main()
