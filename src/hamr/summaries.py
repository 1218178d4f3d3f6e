"""Summarise the runs under a results folder into one Markdown table.

    python scripts/summarize_runs.py results/cyclone_minilm --out results/cyclone_minilm/summary.md

One row per (dataset, method): mean over seeds of dev and test Macro-F1, micro F1, the test F1 of
the dataset's three rarest training classes, the selected epoch, seconds per epoch and training
examples per second, all read from each run's metrics.json.

    python scripts/summarize_runs.py results/curves_cpu --curves --out results/curves_cpu/curves.md

With ``--curves``: one row per run instead, with its dev Macro-F1 at every epoch, the best epoch,
the last epoch's dev gain over the epoch before, its optimizer steps and its wall-clock minutes (for
choosing a budget from dev curves; test is not shown).
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import pandas as pd

from hamr.runs import dev_curve, last_epoch_dev_gain, load_runs


def summary_rows(results_dir: Path) -> pd.DataFrame:
    """One row per finished run (hamr.results.load_runs) with the columns this summary shows."""
    runs, _ = load_runs(results_dir)
    rows = []
    for m in runs.metrics:
        rarest = sorted(m["train_class_counts"], key=lambda c: (m["train_class_counts"][c], c))[:3]
        row = {
            "dataset": m["dataset"],
            "method": m["method"],
            "seed": m["seed"],
            "n_train": m["n_train"],
            "dev_macro_f1": m["dev_macro_f1"],
            "test_macro_f1": m["test_macro_f1"],
            "test_micro_f1": m["test"]["micro_f1"],
            "selected_epoch": m["selected_epoch"],
            "s_per_epoch": sum(h["epoch_seconds"] for h in m["history"]) / len(m["history"]),
            "epoch_seconds": [h["epoch_seconds"] for h in m["history"]],
            "train_ex_per_s": m["train_examples_per_second"],
            "device": m["device"],
            "commit": m["git_commit"],
        }
        for rank, c in enumerate(rarest, start=1):
            row[f"rare{rank}"] = f"{c} ({m['train_class_counts'][c]})"
            row[f"rare{rank}_f1"] = m["test"]["per_class_f1"].get(c, 0.0)
        rows.append(row)
    return pd.DataFrame(rows)


BASELINES = ("ce", "focal", "dice", "icf")
METHOD_ORDER = (
    "ce",
    "focal",
    "dice",
    "icf",
    "hamr_full",
    "hamr_no_resampling",
    "hamr_no_meta_weight",
    "hamr_no_neighbor_boost",
)


def curve_rows(results_dir: Path) -> pd.DataFrame:
    """One row per finished run: dataset, method, seed, dev (dev Macro-F1 x100 per epoch, a list),
    best_epoch (1-based, the first epoch with the highest dev; None when no epoch has a dev score),
    last_gain (dev points x100 of the last epoch over the one before; NaN after one epoch), steps,
    minutes (the run's wall clock)."""
    runs, _ = load_runs(results_dir)
    rows = []
    for m in runs.metrics:
        dev = dev_curve(m)
        gain = last_epoch_dev_gain(m)
        rows.append(
            {
                "dataset": m["dataset"],
                "method": m["method"],
                "seed": m["seed"],
                "dev": dev,
                "best_epoch": 1 + max(range(len(dev)), key=lambda i: (dev[i], -i)) if dev else None,
                "last_gain": float("nan") if gain is None else gain,
                "steps": m.get("steps"),
                "minutes": m["wall_seconds"] / 60,
            }
        )
    columns = ["dataset", "method", "seed", "dev", "best_epoch", "last_gain", "steps", "minutes"]
    return pd.DataFrame(rows, columns=columns).astype({"best_epoch": "Int64"})  # Int64: a run without one is <NA>


def curves_markdown(curves: pd.DataFrame) -> str:
    """The rows of :func:`curve_rows` as one Markdown table, by dataset, method (baselines first)
    and seed."""
    order = {m: i for i, m in enumerate(METHOD_ORDER)}
    curves = curves.assign(rank=curves.method.map(order).fillna(len(order))).sort_values(
        ["dataset", "rank", "method", "seed"]
    )
    lines = [
        "| dataset | method | seed | dev per epoch | best epoch | last-epoch gain | steps | minutes |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in curves.itertuples():
        gain = "-" if pd.isna(r.last_gain) else f"{r.last_gain:+.1f}"
        lines.append(
            f"| {r.dataset} | {r.method} | {r.seed} | {', '.join(f'{d:.1f}' for d in r.dev) or '-'} | "
            f"{'-' if pd.isna(r.best_epoch) else r.best_epoch} | {gain} | {r.steps} | {r.minutes:.0f} |"
        )
    return "\n".join(lines) + "\n"


def to_markdown(runs: pd.DataFrame) -> str:
    lines = []
    for dataset, group in runs.groupby("dataset"):
        rare = [group[f"rare{i}"].iloc[0] for i in (1, 2, 3)]
        lines += [
            f"### {dataset}",
            "",
            "| method | seeds | train examples | dev Macro-F1 | test Macro-F1 | test micro-F1 | "
            + " | ".join(f"F1 {r}" for r in rare)
            + " | selected epoch | s/epoch | train ex/s |",
            "|" + "---|" * (9 + len(rare)),
        ]
        # Every loss baseline does the same encoder work per epoch, so the median over all their
        # epochs is a reference that a few epochs slowed by other load on the machine do not move.
        baseline_epochs = [s for runs in group[group.method.isin(BASELINES)].epoch_seconds for s in runs]
        reference = float(pd.Series(baseline_epochs).median()) if baseline_epochs else None
        for method, g in group.groupby("method", sort=False):
            epoch_s = g.s_per_epoch.mean()
            ratio = f" ({epoch_s / reference:.2f}×)" if reference and method not in BASELINES else ""
            lines.append(
                f"| {method} | {len(g)} | {int(g.n_train.mean())} | {100 * g.dev_macro_f1.mean():.1f} | "
                f"**{100 * g.test_macro_f1.mean():.1f}** | {100 * g.test_micro_f1.mean():.1f} | "
                + " | ".join(f"{100 * g[f'rare{i}_f1'].mean():.1f}" for i in (1, 2, 3))
                + f" | {g.selected_epoch.iloc[0] if len(g) == 1 else '-'} | {epoch_s:.0f}{ratio} | "
                f"{g.train_ex_per_s.mean():.1f} |"
            )
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results_dir", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--command", action="append", default=[], help="the command(s) that produced the runs")
    parser.add_argument("--curves", action="store_true", help="one row per run: its dev curve, steps and minutes")
    args = parser.parse_args()
    runs = curve_rows(args.results_dir) if args.curves else summary_rows(args.results_dir)
    if runs.empty:
        raise SystemExit(f"error: no runs/*/*/*/metrics.json under {args.results_dir}")
    if args.curves:
        args.out.write_text(curves_markdown(runs))
        print(args.out.read_text())
        return
    order = {m: i for i, m in enumerate(METHOD_ORDER)}
    runs = runs.sort_values(["dataset", "method"], key=lambda s: s.map(order).fillna(99) if s.name == "method" else s)
    header = [
        "# Run summary",
        "",
        f"Made by `python scripts/summarize_runs.py {args.results_dir} --out {args.out}` on "
        f"{time.strftime('%Y-%m-%d')} ({platform.machine()}, {platform.processor() or 'CPU'}, "
        f"devices: {', '.join(sorted(runs.device.unique()))}; "
        f"commits: {', '.join(sorted(runs.commit.astype(str).unique()))}).",
        "",
        "Runs made by:",
        "",
        *[f"    {c}" for c in args.command],
        "",
        "Macro-F1 in %, mean over seeds. Rare classes: the three rarest of the training split "
        "(training count in brackets), test F1. s/epoch: training time per epoch on this machine; "
        "(n×): relative to the median over every epoch of the loss baselines, which do the same encoder work.",
        "",
    ]
    args.out.write_text("\n".join(header) + to_markdown(runs) + "\n")
    print(args.out.read_text())
