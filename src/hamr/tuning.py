"""What a dev-only tuning study found: the trials of `tune=...` sweeps read back from their run
folders, ranked by mean dev Macro-F1 over seeds, with the seed spread beside the differences that
decide the choice. Test scores are never read.

Run folders: ``<results>/runs/<dataset>/<method>/<trial overrides>/seed=<n>/metrics.json`` (the
``tune/`` presets' ``paths.run_dir``).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from hamr.algorithm.diagnostics import DIAGNOSTICS
from hamr.runs import run_collapsed

FIXED_KEYS = (
    "dataset",
    "method",
    "baseline_loss",
    "hamr",
    "ablation",
    "trainer.seed",
)  # name the study or the seed, not a trial


def parse_overrides(name: str) -> dict[str, str]:
    """``a=1,b.c=x`` (Hydra's override_dirname) -> {"a": "1", "b.c": "x"}."""
    return dict(item.split("=", 1) for item in name.split(",") if "=" in item)


def load_trials(results_dir: Path) -> pd.DataFrame:
    """One row per finished seed of a trial: dataset, method, trial (its overrides without the
    study's fixed keys, as ``key=value`` joined by commas), seed, dev (Macro-F1 in [0, 1]),
    collapsed (hamr.metrics.collapsed, from its dev scores), selected_epoch, epochs, wall_seconds."""
    rows = []
    for path in sorted(Path(results_dir).glob("runs/*/*/*/seed=*/metrics.json")):
        trial_folder = path.parent.parent
        m = json.loads(path.read_text())
        # the full override_dirname is recorded since folder names may be shortened (short_dirname)
        values = {
            k: v
            for k, v in parse_overrides(m.get("override_dirname") or trial_folder.name).items()
            if k not in FIXED_KEYS
        }
        last = m["history"][-1] if m.get("history") else {}
        rows.append(
            {
                "dataset": m["dataset"],
                "task": m.get("config", {}).get("dataset", {}).get("task"),
                "method": m["method"],
                "trial": ",".join(f"{k}={v}" for k, v in values.items()),
                "seed": m["seed"],
                "dev": m["dev_macro_f1"],
                "collapsed": run_collapsed(m),
                "selected_epoch": m["selected_epoch"],
                "epochs": m["config"]["trainer"]["epochs"],
                "wall_seconds": m["wall_seconds"],
                **{k: last.get(k, np.nan) for k in DIAGNOSTICS},
            }
        )
    return pd.DataFrame(
        rows,
        columns=[
            "dataset",
            "task",
            "method",
            "trial",
            "seed",
            "dev",
            "collapsed",
            "selected_epoch",
            "epochs",
            "wall_seconds",
            *DIAGNOSTICS,
        ],
    )


def rank_trials(trials: pd.DataFrame, min_seeds: int = 2) -> pd.DataFrame:
    """Per (dataset, method, trial): mean and sample std of dev over seeds, the seeds, how many
    collapsed, how often the last epoch was the best; ranked within each study by mean dev. Trials
    with fewer than ``min_seeds`` finished seeds, or with a collapsed seed, are listed but not ranked
    (a choice whose seed may not learn is no choice)."""
    trials = trials.assign(last_is_best=trials.selected_epoch == trials.epochs, collapsed=trials.collapsed.astype(int))
    table = (
        trials.groupby(["dataset", "method", "trial"], dropna=False)
        .agg(
            task=("task", "first"),
            dev_mean=("dev", "mean"),
            dev_std=("dev", "std"),
            seeds=("seed", lambda s: sorted(s)),
            n=("seed", "size"),
            collapsed=("collapsed", "sum"),
            last_epoch_best=("last_is_best", "sum"),
            hours=("wall_seconds", lambda w: w.sum() / 3600),
            **{k: (k, "mean") for k in DIAGNOSTICS},
        )
        .reset_index()
    )
    complete = (table.n >= min_seeds) & (table.collapsed == 0)
    table["rank"] = np.nan
    table.loc[complete, "rank"] = (
        table[complete].groupby(["dataset", "method"]).dev_mean.rank(ascending=False, method="min")
    )
    return table.sort_values(["dataset", "method", "rank", "trial"], na_position="last").reset_index(drop=True)


def _comparison(best: tuple[float, float], second: tuple[float, float] | None) -> dict:
    """The chosen option's (mean, std) dev against the runner-up's: their difference, the seed spread
    (the mean of the two stds that are known) it should exceed, and whether it does. Margin and spread
    are None (strict JSON null, not Python's NaN token) where there is no runner-up or no second seed."""
    stds = [std for _, std in ((best,) if second is None else (best, second)) if std == std]
    spread = float(np.mean(stds)) if stds else None
    margin = float(best[0] - second[0]) if second is not None else None
    return {
        "margin": margin,
        "seed_spread": spread,
        "margin_exceeds_spread": margin is not None and spread is not None and margin > spread,
    }


def _points(value: float | None, fmt: str) -> str:
    """A dev difference in points (x100) for the Markdown tables; "-" where there is none."""
    return "-" if value is None else format(100 * value, fmt)


def choices(ranked: pd.DataFrame) -> list[dict]:
    """Per study: the chosen trial (best mean dev), the runner-up, their difference and the seed
    spread (the mean of the two trials' dev stds) that the difference should exceed; margin and
    spread are None where there is no runner-up or no second seed."""
    out = []
    for (dataset, method), study in ranked[ranked["rank"].notna()].groupby(["dataset", "method"]):
        study = study.sort_values("dev_mean", ascending=False)
        best = study.iloc[0]
        second = study.iloc[1] if len(study) > 1 else None
        out.append(
            {
                "dataset": dataset,
                "task": best.task,
                "method": method,
                "chosen": best.trial,
                "values": parse_overrides(best.trial),
                "dev_mean": float(best.dev_mean),
                "dev_std": float(best.dev_std),
                "seeds": list(best.seeds),
                "runner_up": None if second is None else second.trial,
                **_comparison(
                    (best.dev_mean, best.dev_std), None if second is None else (second.dev_mean, second.dev_std)
                ),
                "trials": int(len(study)),
            }
        )
    return out


def loss_choices(chosen: list[dict]) -> list[dict]:
    """Per dataset, the loss HAMR weights best on dev (HAMR + loss, ``tune=hamr_loss``): of the
    studies of ``hamr-<loss>_full`` in ``chosen`` (choices), the one with the best mean dev, with the
    runner-up loss, their difference and the seed spread as in :func:`choices`."""
    out = []
    by_dataset: dict[str, list[dict]] = {}
    for c in chosen:
        if c["method"].startswith("hamr-") and c["method"].endswith("_full"):
            by_dataset.setdefault(c["dataset"], []).append(c)
    for dataset, studies in by_dataset.items():
        best, *rest = sorted(studies, key=lambda c: c["dev_mean"], reverse=True)
        second = rest[0] if rest else None
        out.append(
            {
                "dataset": dataset,
                "task": best["task"],
                "loss": best["method"].removeprefix("hamr-").removesuffix("_full"),
                "dev_mean": best["dev_mean"],
                "dev_std": best["dev_std"],
                "seeds": best["seeds"],
                "runner_up": None if second is None else second["method"].removeprefix("hamr-").removesuffix("_full"),
                **_comparison(
                    (best["dev_mean"], best["dev_std"]),
                    None if second is None else (second["dev_mean"], second["dev_std"]),
                ),
                "losses": len(studies),
            }
        )
    return out


def loss_markdown(losses: list[dict]) -> str:
    """The :func:`loss_choices` as a Markdown table (dev x100)."""
    lines = [
        "HAMR + loss: the loss HAMR weights, chosen on dev per dataset (`tune=hamr_loss`):",
        "",
        "| dataset | chosen loss | dev (mean ± std, x100) | runner-up | margin | seed spread | margin > spread "
        "| losses |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for c in losses:
        lines.append(
            f"| {c['dataset']} | {c['loss']} | {100 * c['dev_mean']:.1f} ± {100 * c['dev_std']:.1f} | "
            f"{c['runner_up']} | {_points(c['margin'], '+.1f')} | {_points(c['seed_spread'], '.1f')} | "
            f"{'yes' if c['margin_exceeds_spread'] else 'no'} | {c['losses']} |"
        )
    return "\n".join(lines) + "\n"


def summary_markdown(ranked: pd.DataFrame, chosen: list[dict]) -> str:
    lines = [
        "| dataset | method | chosen | dev (mean ± std, x100) | runner-up | margin | seed spread | "
        "margin > spread | trials |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for c in chosen:
        lines.append(
            f"| {c['dataset']} | {c['method']} | `{c['chosen']}` | {100 * c['dev_mean']:.1f} ± "
            f"{100 * c['dev_std']:.1f} | `{c['runner_up']}` | {_points(c['margin'], '+.1f')} | "
            f"{_points(c['seed_spread'], '.1f')} | {'yes' if c['margin_exceeds_spread'] else 'no'} | {c['trials']} |"
        )
    lines += [
        "",
        "All trials (dev Macro-F1 x100; `last best`: seeds whose best dev epoch was the last; `collapsed`: "
        "seeds that collapsed, a trial with one is not ranked):",
        "",
        "| dataset | method | trial | rank | dev mean | dev std | seeds | collapsed | last best | run hours |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in ranked.itertuples():
        rank = "-" if np.isnan(r.rank) else f"{r.rank:.0f}"
        std = "-" if np.isnan(r.dev_std) else f"{100 * r.dev_std:.1f}"
        lines.append(
            f"| {r.dataset} | {r.method} | `{r.trial}` | {rank} | {100 * r.dev_mean:.1f} | {std} | "
            f"{','.join(map(str, r.seeds))} | {r.collapsed} | {r.last_epoch_best}/{r.n} | {r.hours:.2f} |"
        )
    moved = ranked[ranked[list(DIAGNOSTICS)].notna().any(axis=1)]
    if len(moved):
        lines += [
            "",
            "HAMR trials: did each module move? Last epoch, mean over seeds: the post-meta weights' "
            "p10/p90, h's max/mean, the hardest decile's sampling probability over the median one, the "
            "largest gap between a class's sample share and its data share, Spearman's correlation of h "
            "with the loss, and the learned curve f_θ at z = -3, 0, +3.",
            "",
            "| dataset | method | trial | " + " | ".join(DIAGNOSTICS.values()) + " |",
            "|---|---|---|" + "---|" * len(DIAGNOSTICS),
        ]
        for r in moved.itertuples():
            values = [moved.loc[r.Index, k] for k in DIAGNOSTICS]
            lines.append(
                f"| {r.dataset} | {r.method} | `{r.trial}` | "
                + " | ".join("-" if np.isnan(v) else f"{v:.2f}" for v in values)
                + " |"
            )
    return "\n".join(lines) + "\n"


# trial keys that set how the search ran, not what it chose (the exact step is re-checked after it)
SEARCH_SETTINGS = ("hamr.meta.every",)


def tuned_values(chosen: list[dict], significant: int | None = None) -> dict[str, dict[str, list]]:
    """The chosen values as ``{option: {method: [classification value, NER value]}}``, the shape of a
    profile's ``tuned`` block (config.tuned): ``trainer.lr`` -> ``lr``, ``baseline_loss.gamma`` ->
    ``gamma``, ``hamr.<knob>`` -> ``<knob>``; a method is a baseline's loss or the HAMR preset
    (``hamr_full`` -> ``hamr``), each value rounded to ``significant`` digits (None: as chosen;
    Optuna's floats carry digits no dev score can tell apart). A task no study chose for is None;
    two studies of one method and task are an error (which would the profile use?)."""
    out: dict[str, dict[str, list]] = {}
    for c in chosen:
        if c.get("task") not in ("cls", "ner"):
            raise ValueError(f"the {c['method']} study on {c['dataset']} records no task (cls or ner)")
        slot = 0 if c["task"] == "cls" else 1
        method = c["method"].removesuffix("_full")
        for key, value in c["values"].items():
            if key in SEARCH_SETTINGS:
                continue
            pair = out.setdefault(key.split(".", 1)[1], {}).setdefault(method, [None, None])
            if pair[slot] is not None:
                raise ValueError(f"two {c['task']} studies chose {key} for {method}: tune one dataset per task")
            pair[slot] = float(value) if significant is None else float(f"{float(value):.{significant}g}")
    return out
