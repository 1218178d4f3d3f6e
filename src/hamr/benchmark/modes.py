"""Accuracy and speed of HAMR's cheaper meta modes against the exact step.

    make bench-modes          # the training runs (skipped when finished), then this script
    python scripts/bench_modes.py --exact results/table_cpu --modes results/bench/modes

Reads the exact HAMR runs (``<exact>/runs/<dataset>/<method>/seed=*``, the `cpu_short` table's own
runs) and each mode's runs (``<modes>/<mode>/runs/<dataset>/<method>/seed=*``; method
``hamr_authors_full``, the hamr=authors preset these were measured with), and the step
benchmark (``results/bench/step_cpu.json``, the modes' step time / CE step time measured side by
side; the run's own dataset's ratio where the benchmark measured it, else every dataset's). A
mode keeps the accuracy when its mean dev Macro-F1 is at most one seed-std (ddof 1) of the exact
runs below the exact step's mean (a mode that scores higher keeps it too). Writes
``<modes>/modes.{md,json}`` (or ``--out``), one shape for one or several datasets: per dataset
and mode dev and test mean ± std, the step ratios, and the cheapest mode that keeps the
accuracy, with whether it is ≤ 1.3× CE. Runs kept elsewhere are named mode by mode, e.g. the
curve regime's check:

    python scripts/bench_modes.py --exact results/curves_cpu --mode scope0=results/curves_cpu_meta_scope_0 \
      --method hamr_full --dataset hurricane_irma_2017 bionlp2004 sst5 \
      --step-bench results/bench/sizing/step_cpu.json --out results/curves_cpu_meta_scope_0
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from hamr.results import atomic_write_bytes
from hamr.runs import load_runs

# mode folder -> (the override that makes it, the step benchmark's variant)
MODES = {
    "exact": ("hamr.meta.every=1 hamr.meta.scope=null", "hamr_exact"),
    "every4": ("hamr.meta.every=4", "hamr_every4"),
    "scope2": ("hamr.meta.scope=2", "hamr_scope2"),
    "scope0": ("hamr.meta.scope=0", "hamr_scope0"),
}
TARGET_RATIO = 1.3


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--exact", type=Path, default=Path("results/table_cpu"), help="folder holding the exact runs")
    parser.add_argument("--modes", type=Path, default=Path("results/bench/modes"), help="folder of <mode>/runs")
    parser.add_argument("--step-bench", type=Path, default=Path("results/bench/step_cpu.json"))
    parser.add_argument(
        "--mode",
        action="append",
        default=[],
        metavar="MODE=DIR",
        help=f"a mode's runs in DIR instead of <modes>/MODE, MODE one of {list(MODES)[1:]} (repeatable; only these)",
    )
    parser.add_argument("--dataset", nargs="+", default=["cyclone_idai_2019"])
    parser.add_argument("--method", default="hamr_authors_full", help="the run folders' method name")
    parser.add_argument("--out", type=Path, default=None, help="folder for modes.{md,json} (default: --modes)")
    args = parser.parse_args(argv)
    folders = {}
    for item in args.mode:
        mode, sep, folder = item.partition("=")
        if not sep or mode not in MODES or mode == "exact":
            parser.error(f"--mode {item}: expected MODE=DIR with MODE one of {list(MODES)[1:]}")
        folders[mode] = Path(folder)
    args.mode_folders = folders or {mode: args.modes / mode for mode in list(MODES)[1:]}
    args.out = args.out or args.modes
    return args


def mode_scores(folder: Path, dataset: str, method: str) -> dict | None:
    runs, _ = load_runs(folder)
    runs = runs[(runs.dataset == dataset) & (runs.method == method)] if len(runs) else runs
    if len(runs) == 0:
        return None
    seconds_per_step = [m["train_seconds"] / m["steps"] for m in runs.metrics]
    return {
        "seeds": sorted(int(s) for s in runs.seed),
        "dev": [float(x) for x in runs.dev],
        "test": [float(x) for x in runs.test],
        "dev_mean": float(runs.dev.mean()),
        "dev_std": float(runs.dev.std(ddof=1)) if len(runs) > 1 else float("nan"),
        "test_mean": float(runs.test.mean()),
        "test_std": float(runs.test.std(ddof=1)) if len(runs) > 1 else float("nan"),
        "train_seconds_per_step": float(np.median(seconds_per_step)),
    }


def read_step_bench(path: Path) -> dict:
    """The step benchmark's JSON; a missing file gives no ratios (the modes' speed column reads "-")."""
    return json.loads(path.read_text()) if path.is_file() else {"datasets": {}}


def summarise(args: argparse.Namespace, dataset: str, step: dict) -> dict:
    """One dataset's modes: scores, the step ratios of ``step`` (read_step_bench) and the cheapest keeping mode."""
    rows = {}
    for mode, folder in {"exact": args.exact, **args.mode_folders}.items():
        override, variant = MODES[mode]
        scores = mode_scores(folder, dataset, args.method)
        # the run's own dataset where the bench measured it, otherwise every dataset it measured
        measured = {dataset: step["datasets"][dataset]} if dataset in step["datasets"] else step["datasets"]
        ratios = {
            name: d["variants"][variant]["ratio_to_ce_median"]
            for name, d in measured.items()
            if variant in d["variants"]
        }
        rows[mode] = {"override": override, "scores": scores, "step_ratio_to_ce": ratios}
    exact = rows["exact"]["scores"]
    for row in rows.values():
        s = row["scores"]
        row["keeps_accuracy"] = (
            None
            if s is None or exact is None or len(exact["seeds"]) < 2
            else bool(s["dev_mean"] >= exact["dev_mean"] - exact["dev_std"])
        )
    keeping = [m for m, r in rows.items() if m != "exact" and r["keeps_accuracy"] and r["step_ratio_to_ce"]]
    cheapest = min(keeping, key=lambda m: max(rows[m]["step_ratio_to_ce"].values()), default=None)
    return {"dataset": dataset, "modes": rows, "cheapest_keeping_accuracy": cheapest}


def pct(mean: float, std: float) -> str:
    return f"{100 * mean:.1f}" + ("" if np.isnan(std) else f" ± {100 * std:.1f}")


def markdown(record: dict) -> str:
    lines = [
        "# Cheaper meta modes vs the exact step",
        "",
        f"Made by `{record['command']}` on {record['built_at']} from the runs' metrics.json and the step "
        f"benchmark (`{record['step_bench']['command']}`, {record['step_bench']['date']}).",
        "",
        f"Runs of `{record['method']}`, one row per mode; Macro-F1 in %, mean ± std over seeds (dev: the dev-selected "
        "epoch's). Step / CE: the mode's training step time over a CE step measured side by side on the same "
        "batches (scripts/bench_step.py). Keeps accuracy: mean dev Macro-F1 at most one seed-std (of the exact "
        "runs) below the exact step's.",
    ]
    for summary in record["datasets"]:
        lines += ["", f"## {summary['dataset']}", "", *dataset_lines(summary, record["target_ratio"])]
    return "\n".join(lines) + "\n"


def dataset_lines(summary: dict, target_ratio: float) -> list[str]:
    lines = [
        "| mode | override | seeds | dev Macro-F1 | test Macro-F1 | step / CE | keeps accuracy |",
        "|---|---|---|---|---|---|---|",
    ]
    for mode, row in summary["modes"].items():
        s = row["scores"]
        ratio = ", ".join(f"{v:.2f}× {k}" for k, v in row["step_ratio_to_ce"].items()) or "-"
        keeps = {None: "-", True: "yes", False: "no"}[row["keeps_accuracy"]] if mode != "exact" else "(reference)"
        if s is None:
            lines.append(f"| {mode} | `{row['override']}` | 0 | missing | missing | {ratio} | - |")
        else:
            lines.append(
                f"| {mode} | `{row['override']}` | {','.join(map(str, s['seeds']))} | "
                f"{pct(s['dev_mean'], s['dev_std'])} | {pct(s['test_mean'], s['test_std'])} | {ratio} | {keeps} |"
            )
    cheapest = summary["cheapest_keeping_accuracy"]
    lines.append("")
    if cheapest is None:
        lines.append("No cheaper mode keeps the exact step's dev Macro-F1 (or runs are missing).")
    else:
        ratios = summary["modes"][cheapest]["step_ratio_to_ce"]
        verdicts = [f"{'met' if v <= target_ratio else 'not met'} on {k} ({v:.2f}×)" for k, v in ratios.items()]
        lines.append(
            f"Cheapest mode that keeps the accuracy: **{cheapest}**; target ≤ {target_ratio}× a CE "
            f"step: **{', '.join(verdicts)}**."
        )
    return lines


def main(argv=None) -> int:
    args = parse_args(argv)
    step = read_step_bench(args.step_bench)
    record = {
        "command": "python " + " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]),
        "built_at": time.strftime("%Y-%m-%d %H:%M %Z"),
        "method": args.method,
        "target_ratio": TARGET_RATIO,
        "step_bench": {k: step.get(k) for k in ("command", "date", "machine")},
        "datasets": [summarise(args, dataset, step) for dataset in args.dataset],
    }
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(args.out / "modes.json", json.dumps(record, indent=2).encode())
    text = markdown(record)
    atomic_write_bytes(args.out / "modes.md", text.encode())
    print(text)
    return 0
