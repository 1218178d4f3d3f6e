"""The paper's tables and figures from finished runs (`scripts/build_tables.py`, the end of
`make reproduce-table`).

Reads every `runs/<dataset>/<method>/seed=<s>/metrics.json` (and `error.json` of failed runs)
under the results folder and writes to --out:
  main.{md,csv,tex}      six datasets x CE, Focal, Dice, ICF, HAMR with the authors' per-step values,
                         HAMR: test Macro-F1 mean ± std over seeds, best per dataset in bold, the
                         paper's numbers, each HAMR's gain over the best baseline (the baseline with
                         the best mean *dev* Macro-F1) with a paired bootstrap over test items
                         (95% interval, two-sided p)
  ablation.{md,csv,tex}  each HAMR and its three ablations on BioNLP and Irma17, with the paper's numbers
  minority.{md,csv}      test F1 of each dataset's three rarest training classes: CE, best baseline, HAMRs
  seeds.{md,csv}         every run's test (and dev) Macro-F1 per seed: the spread behind each mean ± std, and
                         any seed that did not learn
  modules.{md,csv}       per dataset and full HAMR: the last epoch's weight spread, weight curve, hardness and
                         sampling spread, class share gap and Spearman(h, loss), mean over seeds
and to --figures (default: <out>/../figures): per-class F1, the learned loss -> weight curve over
epochs, the sampling share per class over epochs, one figure per dataset of whether HAMR's modules
moved (modules_<dataset>.png), and the numbers behind every figure (figure_data.json). Missing
cells read "missing", failed ones "failed", never 0. With W&B installed the tables and figures are
also logged to one summary run (WANDB_MODE=offline by default).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
import pandas as pd

from hamr import paper
from hamr.algorithm.diagnostics import DIAGNOSTICS
from hamr.results import atomic_write_bytes
from hamr.runs import last_epoch_dev_gain, load_runs
from hamr.significance import item_counts, paired_bootstrap

BASELINES = list(paper.BASELINES)
HAMRS = ["hamr_authors", "hamr"]  # hamr=authors (the authors' per-step values), hamr=default
MAIN_METHODS = [*BASELINES, *(f"{h}_full" for h in HAMRS)]
ABLATION_NAMES = {
    "full": "full",
    "no_resampling": "w/o resampling",
    "no_meta_weight": "w/o meta-weight",
    "no_neighbor_boost": "w/o neighbourhood boost",
}
ABLATIONS = [f"{h}_{a}" for h in HAMRS for a in ABLATION_NAMES]
ABLATION_DATASETS = list(paper.ABLATION_DATASETS)
HAMR_NAMES = {"hamr": "HAMR", "hamr_authors": "HAMR (authors' per-step values)"}
HAMR_LOSSES = ["focal", "dice", "icf"]  # HAMR over another loss: method=hamr baseline_loss=<loss>
HAMR_OVER_LOSS = [f"hamr-{loss}_full" for loss in HAMR_LOSSES]
NAMES = {
    "ce": "CE",
    "focal": "Focal",
    "dice": "Dice",
    "icf": "ICF",
    **{f"{h}_full": HAMR_NAMES[h] for h in HAMRS},
    **{f"hamr-{loss}_full": f"HAMR + {name}" for loss, name in (("focal", "Focal"), ("dice", "Dice"), ("icf", "ICF"))},
    **{f"{h}_{a}": f"{HAMR_NAMES[h]} {name}" for h in HAMRS for a, name in ABLATION_NAMES.items() if a != "full"},
}


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("results", type=Path, help="folder holding runs/")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--figures", type=Path, default=None)
    parser.add_argument("--profile", default="custom", help="named in captions and the W&B group")
    parser.add_argument("--resamples", type=int, default=1000)
    parser.add_argument("--no-wandb", action="store_true")
    parser.add_argument(
        "--keep-collapsed",
        action="store_true",
        help="compare collapsed runs like any other (the smoke profile, whose toy runs all collapse)",
    )
    return parser.parse_args(argv)


def cell(runs: pd.DataFrame, failed: pd.DataFrame, dataset: str, method: str) -> dict:
    """Test Macro-F1 (x100) of one configuration: mean and std over every seed, the number of
    collapsed seeds (hamr.metrics.collapsed) and the mean without them ("kept")."""
    sel = runs[(runs.dataset == dataset) & (runs.method == method)] if len(runs) else runs
    n_failed = int(((failed.dataset == dataset) & (failed.method == method)).sum()) if len(failed) else 0
    if len(sel) == 0:
        return {"status": "failed" if n_failed else "missing", "n": 0, "failed": n_failed}
    kept = sel[~sel.collapsed.astype(bool)]
    return {
        "status": "ok",
        "n": len(sel),
        "failed": n_failed,
        "mean": 100 * sel.test.mean(),
        "std": 100 * sel.test.std(ddof=1) if len(sel) > 1 else float("nan"),
        "dev": 100 * sel.dev.mean(),
        "collapsed": len(sel) - len(kept),
        "kept_mean": 100 * kept.test.mean() if len(kept) else float("nan"),
    }


def fmt(c: dict, bold: bool = False, tex: bool = False) -> str:
    if c["status"] != "ok":
        return c["status"]
    std = "" if np.isnan(c["std"]) else (f" $\\pm$ {c['std']:.1f}" if tex else f" ± {c['std']:.1f}")
    text = f"{c['mean']:.1f}{std}"
    if c["n"] < 3:
        text += f" (n={c['n']})"
    if c["failed"]:
        text += f" ({c['failed']} failed)"
    if c.get("collapsed"):
        without = "none left" if np.isnan(c["kept_mean"]) else f"{c['kept_mean']:.1f} without"
        text += f" ({c['collapsed']} collapsed; {without})"
    if bold:
        text = f"\\textbf{{{text}}}" if tex else f"**{text}**"
    return text


def run_counts(row) -> tuple[np.ndarray, list[str]]:
    m = row.metrics
    pred = np.load(row.folder / "predictions.npz")
    task = m["config"]["dataset"]["task"]
    return item_counts(pred["gold"], pred["pred"], m["label_names"], task, pred.get("lengths"))


def significance(runs: pd.DataFrame, dataset: str, method: str, baseline: str, resamples: int) -> dict | None:
    """Paired bootstrap of ``method`` against ``baseline`` over the seeds both have and neither
    collapsed on (a collapsed seed is counted in its cell, not compared); ``collapsed_seeds`` lists
    the seeds left out for that."""
    a = runs[(runs.dataset == dataset) & (runs.method == method)].set_index("seed")
    b = runs[(runs.dataset == dataset) & (runs.method == baseline)].set_index("seed")
    shared = sorted(set(a.index) & set(b.index))
    collapsed_seeds = [s for s in shared if a.collapsed[s] or b.collapsed[s]]
    seeds = [s for s in shared if s not in collapsed_seeds]
    if not seeds or "label_names" not in a.iloc[0].metrics:
        return None
    result = paired_bootstrap(
        [run_counts(a.loc[s])[0] for s in seeds], [run_counts(b.loc[s])[0] for s in seeds], n_resamples=resamples
    )
    return {**result, "seeds": seeds, "collapsed_seeds": collapsed_seeds}


def fmt_p(p_value: float, resamples: int) -> str:
    # with R resamples the smallest p the bootstrap can show is about 1/R
    return f"{p_value:.3f}" if p_value >= 1 / resamples else f"<{1 / resamples:g}"


def best_baseline(runs: pd.DataFrame, dataset: str, candidates: list[str] = BASELINES) -> str | None:
    """Of ``candidates`` (the baselines; or HAMR over each loss), the one with the best mean dev
    Macro-F1 over its seeds that did not collapse (the rule every method's mean is also shown
    under); None when none has such a seed."""
    sel = runs[(runs.dataset == dataset) & runs.method.isin(candidates)] if len(runs) else runs
    sel = sel[~sel.collapsed.astype(bool)] if len(sel) else sel
    if len(sel) == 0:
        return None
    return sel.groupby("method").dev.mean().idxmax()  # chosen on dev, like every choice here


GAIN_COLUMNS = {
    "hamr": ("HAMR - best baseline", "95% CI", "p"),
    "hamr+loss": ("HAMR + loss - best baseline", "HAMR + loss 95% CI", "HAMR + loss p"),
    "hamr_authors": ("authors' - best baseline", "authors' 95% CI", "authors' p"),
}
TASK_NAMES = {"cls": "classification", "ner": "NER"}
HAMR_PLUS_LOSS = "HAMR + loss (dev)"  # the main table's column: HAMR over the loss chosen on dev


def hamrs_run(runs: pd.DataFrame, failed: pd.DataFrame) -> list[str]:
    """The HAMR variants (of HAMRS) with at least one finished or failed run of any configuration: a
    profile that never runs one (the converged cpu profile runs hamr=default alone) gets no column or
    ablation rows of it, rather than a column of "missing". Where no HAMR ran at all, every variant
    (each cell "missing")."""
    methods = set(runs.method) | set(failed.method)
    return [h for h in HAMRS if any(m.startswith(f"{h}_") for m in methods)] or HAMRS


def hamr_over_loss_run(runs: pd.DataFrame, failed: pd.DataFrame) -> bool:
    """Whether any run, finished or failed, trained HAMR over a loss other than CE: a profile that
    never does (the first cpu profile, cpu_short) gets no "HAMR + loss" column, gain or overall row,
    rather than cells of "missing"; a profile that does and has not finished them shows "missing"."""
    return bool((set(runs.method) | set(failed.method)) & set(HAMR_OVER_LOSS))


def main_table(runs, failed, resamples) -> pd.DataFrame:
    rows = []
    hamrs = hamrs_run(runs, failed)
    with_loss = hamr_over_loss_run(runs, failed)
    main_methods = [*BASELINES, *(f"{h}_full" for h in hamrs)]
    for dataset in paper.DATASETS:
        over_loss = best_baseline(runs, dataset, HAMR_OVER_LOSS)  # HAMR over the loss chosen on dev, if any ran
        cells = {m: cell(runs, failed, dataset, m) for m in main_methods}
        shown = {**cells, **({over_loss: cell(runs, failed, dataset, over_loss)} if over_loss else {})}
        done = {m: round(c["mean"], 1) for m, c in shown.items() if c["status"] == "ok"}
        best = {m for m, value in done.items() if value == max(done.values())}  # ties as shown: all bold
        baseline = best_baseline(runs, dataset)
        row = {"dataset": paper.DISPLAY[dataset], "_tests": {}}
        row.update({NAMES[m]: fmt(c, bold=(m in best)) for m, c in cells.items()})
        row["_tex"] = {NAMES[m]: fmt(c, bold=(m in best), tex=True) for m, c in cells.items()}
        if over_loss:
            row[HAMR_PLUS_LOSS] = f"{fmt(shown[over_loss], bold=over_loss in best)} ({NAMES[over_loss]})"
            row["_tex"][HAMR_PLUS_LOSS] = (
                f"{fmt(shown[over_loss], bold=over_loss in best, tex=True)} ({NAMES[over_loss]})"
            )
        elif with_loss:
            row[HAMR_PLUS_LOSS] = "missing"
        hamr_paper, base_paper, base_name = paper.MAIN[dataset]
        row["paper HAMR"] = f"{hamr_paper:.1f}"
        row["paper best baseline"] = f"{base_paper:.1f} ({base_name})"
        row["best baseline (dev)"] = NAMES.get(baseline, "missing")
        compared = [("hamr", "hamr_full")] + ([("hamr+loss", over_loss)] if with_loss else [])
        compared += [("hamr_authors", "hamr_authors_full")] if "hamr_authors" in hamrs else []
        for key, method in compared:
            gain, interval, p = GAIN_COLUMNS[key]
            test = significance(runs, dataset, method, baseline, resamples) if baseline and method else None
            if test and shown[method]["status"] == "ok":
                row[gain] = f"{100 * test['delta']:+.1f}"
                row[interval] = f"[{100 * test['ci_low']:+.1f}, {100 * test['ci_high']:+.1f}]"
                row[p] = fmt_p(test["p_value"], resamples)
                row["_tests"][method] = test
            else:
                row.update({gain: "missing", interval: "missing", p: "missing"})
        rows.append(row)
    return pd.DataFrame(rows)


def ablation_table(runs, failed, resamples) -> pd.DataFrame:
    """One row per configuration; per dataset its cell, its difference from its own full HAMR with
    the paired bootstrap's p (the seeds both have), and the paper's number."""
    rows = []
    for hamr, ablation in [(h, a) for h in hamrs_run(runs, failed) for a in ABLATION_NAMES]:
        method = f"{hamr}_{ablation}"
        full = f"{hamr}_full"
        row = {
            "configuration": NAMES[method] if method != full else f"{HAMR_NAMES[hamr]} (full)",
            "_tex": {},
            "_tests": {},
        }
        for dataset in ABLATION_DATASETS:
            name = paper.DISPLAY[dataset]
            c = cell(runs, failed, dataset, method)
            row[name] = fmt(c)
            row["_tex"][name] = fmt(c, tex=True)
            difference = f"{name} - full (p)"
            if method == full:
                row[difference] = ""
            elif c["status"] == "ok" and (test := significance(runs, dataset, method, full, resamples)):
                row[difference] = f"{100 * test['delta']:+.1f} (p {fmt_p(test['p_value'], resamples)})"
                row["_tests"][dataset] = {**test, "vs": f"{HAMR_NAMES[hamr]} (full)"}
            else:
                row[difference] = "missing"
            row[f"paper {name}"] = f"{paper.ABLATION[f'hamr_{ablation}'][dataset]:.1f}"
        rows.append(row)
    return pd.DataFrame(rows)


def minority_table(runs) -> pd.DataFrame:
    rows = []
    for dataset in paper.DATASETS:
        sel = runs[runs.dataset == dataset] if len(runs) else runs
        if len(sel) == 0:
            continue
        counts = sel.iloc[0].metrics["train_class_counts"]
        rarest = sorted(counts, key=lambda c: (counts[c], c))[:3]
        baseline = best_baseline(runs, dataset)
        for c in rarest:
            row = {"dataset": paper.DISPLAY[dataset], "class": c, "train count": counts[c]}
            for label, method in (
                ("CE", "ce"),
                ("best baseline", baseline),
                *((HAMR_NAMES[h], f"{h}_full") for h in HAMRS),
            ):
                m = sel[sel.method == method]
                row[label] = (
                    f"{100 * np.mean([r['test']['per_class_f1'].get(c, 0.0) for r in m.metrics]):.1f}"
                    if len(m)
                    else "missing"
                )
            row["best baseline is"] = NAMES.get(baseline, "missing")
            rows.append(row)
    return pd.DataFrame(rows)


def seeds_table(runs, failed) -> pd.DataFrame:
    """Per dataset and configuration: each seed's test Macro-F1 (x100) with its dev Macro-F1 in
    brackets and "collapsed" after a collapsed run, "failed" or "missing" where a seed has no score."""
    seeds = sorted(set(runs.seed) | set(failed.seed)) if len(runs) else []
    rows = []
    for dataset in paper.DATASETS:
        for method in [*MAIN_METHODS, *HAMR_OVER_LOSS, *(a for a in ABLATIONS if a not in MAIN_METHODS)]:
            sel = runs[(runs.dataset == dataset) & (runs.method == method)].set_index("seed")
            if len(sel) == 0:
                continue
            lost = set(failed[(failed.dataset == dataset) & (failed.method == method)].seed) if len(failed) else set()
            row = {"dataset": paper.DISPLAY[dataset], "configuration": NAMES[method]}
            for seed in seeds:
                if seed in sel.index:
                    mark = " collapsed" if sel.collapsed[seed] else ""
                    row[f"seed {seed}"] = f"{100 * sel.test[seed]:.1f} ({100 * sel.dev[seed]:.1f}){mark}"
                else:
                    row[f"seed {seed}"] = "failed" if seed in lost else "missing"
            rows.append(row)
    return pd.DataFrame(rows)


def modules_table(runs) -> pd.DataFrame:
    """Per dataset and full HAMR variant: each diagnostic of the last epoch, mean over seeds
    ("-" where the runs predate it)."""
    rows = []
    for dataset in paper.DATASETS:
        for hamr in HAMRS:
            sel = runs[(runs.dataset == dataset) & (runs.method == f"{hamr}_full")] if len(runs) else runs
            if len(sel) == 0:
                continue
            last = [with_share_gap(m["history"][-1]) for m in sel.metrics if m.get("history")]
            row = {"dataset": paper.DISPLAY[dataset], "configuration": HAMR_NAMES[hamr], "seeds": str(len(sel))}
            for key, column in DIAGNOSTICS.items():  # the tuning summary's columns, same labels
                values = [r[key] for r in last if key in r]
                row[column] = f"{np.mean(values):.2f}" if values else "-"
            rows.append(row)
    return pd.DataFrame(rows)


def overall_table(runs: pd.DataFrame, resamples: int, seed: int = 0, with_loss: bool = True) -> pd.DataFrame:
    """The table's single answer to "does HAMR help here?": for HAMR and HAMR over the loss chosen
    on dev, its test Macro-F1 minus the dev-chosen best baseline's, paired by (dataset, seed) over
    every pair where neither run collapsed; the mean difference with a bootstrap 95% interval over
    the pairs, the wins, and the two-sided p of Wilcoxon's signed-rank test on the pairs. Without
    ``with_loss`` (no HAMR over another loss ran: hamr_over_loss_run) only HAMR's row."""
    from scipy.stats import wilcoxon

    rows = []
    picks = [("HAMR", lambda d: "hamr_full")]
    picks += [(HAMR_PLUS_LOSS, lambda d: best_baseline(runs, d, HAMR_OVER_LOSS))] if with_loss else []
    for label, pick in picks:
        diffs = []
        for dataset in paper.DATASETS:
            method, baseline = pick(dataset), best_baseline(runs, dataset)
            if method is None or baseline is None:
                continue
            a = runs[(runs.dataset == dataset) & (runs.method == method)].set_index("seed")
            b = runs[(runs.dataset == dataset) & (runs.method == baseline)].set_index("seed")
            diffs += [
                100 * (a.test[s] - b.test[s])
                for s in sorted(set(a.index) & set(b.index))
                if not (a.collapsed[s] or b.collapsed[s])
            ]
        if not diffs:
            rows.append(
                {
                    "configuration": label,
                    "pairs": "0",
                    "mean difference": "missing",
                    "95% CI": "missing",
                    "wins": "missing",
                    "p (Wilcoxon)": "missing",
                }
            )
            continue
        values = np.asarray(diffs)
        means = np.random.default_rng(seed).choice(values, (resamples, len(values))).mean(axis=1)
        p_value = float(wilcoxon(values).pvalue) if len(values) > 1 and np.any(values != 0) else 1.0
        rows.append(
            {
                "configuration": label,
                "pairs": str(len(values)),
                "mean difference": f"{values.mean():+.2f}",
                "95% CI": f"[{np.quantile(means, 0.025):+.2f}, {np.quantile(means, 0.975):+.2f}]",
                "wins": f"{int((values > 0).sum())}/{len(values)}",
                "p (Wilcoxon)": f"{p_value:.3g}",
            }
        )
    return pd.DataFrame(rows)


def convergence_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Per dataset and configuration: the mean over seeds of the last epoch's dev Macro-F1 gain over
    the epoch before (x100; near 0: the runs stopped improving), the share of seeds whose best dev
    epoch was the last, how far the cell's mean dev Macro-F1 sits below the dev-chosen best
    baseline's (x100, seeds that did not collapse; a cell that still rises, but by much less than
    this per epoch, cannot change which method the table finds best), the optimizer steps, and the
    collapsed seeds."""
    rows = []
    kept_dev = runs[~runs.collapsed.astype(bool)].groupby(["dataset", "method"]).dev.mean()
    baselines = {dataset: best_baseline(runs, dataset) for dataset in set(runs.dataset)}
    for (dataset, method), sel in runs.groupby(["dataset", "method"], sort=False):
        gains = [g for g in map(last_epoch_dev_gain, sel.metrics) if g is not None]
        last_best = sum(m.get("selected_epoch") == len(m.get("history", [])) for m in sel.metrics)
        baseline = baselines[dataset]
        if baseline is None or (dataset, method) not in kept_dev.index:
            below = "-"
        else:
            below = f"{100 * (kept_dev[(dataset, baseline)] - kept_dev[(dataset, method)]):+.2f}"
        rows.append(
            {
                "dataset": paper.DISPLAY.get(dataset, dataset),
                "configuration": NAMES.get(method, method),
                "seeds": str(len(sel)),
                "last-epoch dev gain": f"{np.mean(gains):+.2f}" if gains else "-",
                "best epoch is the last": f"{last_best}/{len(sel)}",
                "dev below the best baseline": below,
                "steps": str(sel.steps.iloc[0]),
                "collapsed": str(int(sel.collapsed.sum())),
            }
        )
    order = {d: i for i, d in enumerate(paper.DISPLAY.values())}
    return (
        pd.DataFrame(rows).sort_values("dataset", key=lambda c: c.map(order), kind="stable")
        if rows
        else pd.DataFrame(rows)
    )


def steps_note(runs: pd.DataFrame) -> str:
    """The optimizer steps per run of each dataset, for the captions; a dataset whose methods took
    different numbers of steps is named with each count (a comparison that is not at equal steps)."""
    if len(runs) == 0:
        return "no runs"
    parts = []
    for dataset in [d for d in paper.DATASETS if d in set(runs.dataset)]:
        counts = runs[runs.dataset == dataset].groupby("method").steps.first()
        if counts.nunique(dropna=False) == 1:
            parts.append(f"{paper.DISPLAY[dataset]} {counts.iloc[0]}")
        else:
            by_count = counts.groupby(counts).groups
            parts.append(
                f"{paper.DISPLAY[dataset]} UNEQUAL: "
                + "; ".join(
                    f"{steps} ({', '.join(NAMES.get(m, m) for m in methods)})" for steps, methods in by_count.items()
                )
            )
    return "optimizer steps per run: " + ", ".join(parts)


def write_table(df: pd.DataFrame, stem: Path, title: str, caption: str) -> str:
    public = df[[c for c in df.columns if not c.startswith("_")]]
    markdown = f"## {title}\n\n{caption}\n\n{public.to_markdown(index=False, disable_numparse=True)}\n"
    atomic_write_bytes(stem.with_suffix(".md"), markdown.encode())
    atomic_write_bytes(stem.with_suffix(".csv"), public.to_csv(index=False).encode())
    if "_tex" in df:
        tex = public.copy()
        for i, overrides in enumerate(df["_tex"]):
            for column, value in overrides.items():
                tex.loc[tex.index[i], column] = value
        tex.columns = [c.replace("%", "\\%").replace("_", "\\_") for c in tex.columns]
        body = tex.to_latex(
            index=False, escape=False, caption=caption.replace("%", "\\%").replace("`", ""), label=f"tab:{stem.name}"
        )
        atomic_write_bytes(stem.with_suffix(".tex"), body.encode())
    return markdown


def mean_history(histories: list[list[dict]]) -> list[dict]:
    """Per-epoch means over seeds of the numeric entries of several runs' `history` lists.

    Only epochs that every run reached are kept; `n_seeds` is the number of runs averaged.
    """
    merged = []
    for epoch_rows in zip(*histories):
        keys = [k for k in epoch_rows[0] if isinstance(epoch_rows[0][k], (int, float))]
        row = {k: float(np.mean([r[k] for r in epoch_rows if k in r])) for k in keys}
        merged.append({**row, "epoch": epoch_rows[0]["epoch"], "n_seeds": len(epoch_rows)})
    return merged


def with_share_gap(row: dict) -> dict:
    """The row with ``max_share_gap`` (largest |sample share - data share| over classes), derived
    from its shares where the run predates that key."""
    classes = [k.split("/", 1)[1] for k in row if k.startswith("data_share/")]
    if "max_share_gap" in row or not classes:
        return row
    return {**row, "max_share_gap": max(abs(row[f"sample_share/{c}"] - row[f"data_share/{c}"]) for c in classes)}


def wandb_group(runs: pd.DataFrame, profile: str) -> str:
    """The W&B group of the tables' summary run: the runs' own group (their ``experiment_name``,
    conf/logger/wandb.yaml) where they share one, so the summary sits beside its runs (PROFILE=cpu's
    runs are ``table_cpu_converged``); else ``table_<profile>``."""
    names = {m.get("config", {}).get("experiment_name") for m in runs.metrics} - {None}
    return names.pop() if len(names) == 1 else f"table_{profile}"


def log_to_wandb(
    profile: str, tables: dict[str, pd.DataFrame], images: list[Path], out: Path, group: str | None = None
) -> None:
    """One W&B summary run holding the tables and figures, in ``group`` (default ``table_<profile>``);
    a failure is a warning only."""
    try:
        import wandb

        run = wandb.init(
            project=os.environ.get("WANDB_PROJECT", "hamr"),
            group=group or f"table_{profile}",
            name=f"tables-{profile}",
            job_type="summary",
            dir=os.environ.get("WANDB_DIR", "outputs"),
            mode=os.environ.get("WANDB_MODE", "offline"),
            reinit="finish_previous",
        )
        for name, df in tables.items():
            public = df[[c for c in df.columns if not c.startswith("_")]].astype(str)
            run.log({f"table/{name}": wandb.Table(dataframe=public)})
        run.log({f"figure/{p.stem}": wandb.Image(str(p)) for p in images if p.suffix == ".png"})
        run.finish()
    except Exception as err:  # noqa: BLE001 - the tables are written already
        print(f"warning: W&B logging of the tables failed ({type(err).__name__}: {err})")


def training_examples_note(caps: set[int | None]) -> str:
    """The caption's words for the runs' ``dataset.max_train_examples`` values (None: the full split)."""
    if caps == {None}:
        return "all training examples"
    listed = ", ".join(sorted(str(cap) for cap in caps if cap is not None)) + (" or all" if None in caps else "")
    return f"at most {listed} training examples (stratified)"


def schedule_note(configs: list[dict]) -> str:
    """The caption's words for the runs' training schedule: epochs (per task where the tasks differ),
    the warm-up, max length, batch, and the learning rate (its range where methods were tuned to
    different ones). ``configs``: each run's recorded config (``metrics.json``'s ``config``)."""
    if not configs:
        return "no runs"
    trainers = [c["trainer"] for c in configs]
    epochs = {}
    for config in configs:
        epochs.setdefault(TASK_NAMES.get(config["dataset"].get("task"), "?"), set()).add(config["trainer"]["epochs"])
    if len({e for values in epochs.values() for e in values}) == 1:
        epoch_words = f"{trainers[0]['epochs']} epochs"
    else:
        epoch_words = ", ".join(
            f"{'/'.join(map(str, sorted(values)))} epochs ({task})" for task, values in sorted(epochs.items())
        )
    warmups = sorted({t.get("warmup_ratio") or 0.0 for t in trainers})
    warmup_words = (
        "no warm-up"
        if warmups == [0.0]
        else "a linear warm-up over " + "/".join(f"{100 * w:g}%" for w in warmups) + " of the steps, then linear decay"
    )
    lrs = sorted({t["lr"] for t in trainers})
    lr_words = f"lr {lrs[0]:g}" if len(lrs) == 1 else f"lr {lrs[0]:g} to {lrs[-1]:g} (each method's own)"
    sizes = [
        f"{name} {'/'.join(map(str, sorted({t.get(key) for t in trainers}, key=str)))}"
        for name, key in (("max length", "max_length"), ("batch", "batch_size"))
    ]
    return ", ".join([epoch_words, warmup_words, *sizes, lr_words])


def main(argv=None) -> int:
    args = parse_args(argv)
    runs, failed = load_runs(args.results)
    if args.keep_collapsed:  # every run is compared as it is: nothing set apart, nothing marked
        runs = runs.assign(collapsed=False)
    if len(runs) == 0 and len(failed) == 0:
        raise SystemExit(f"error: no runs under {args.results}/runs: run `make reproduce-table` first")
    args.out.mkdir(parents=True, exist_ok=True)
    model = runs.iloc[0].metrics["model"] if len(runs) else "?"
    train_caps = {m["config"]["dataset"]["max_train_examples"] for m in runs.metrics}
    setting = (
        f"profile `{args.profile}`: {model}, {training_examples_note(train_caps)}, "
        f"{schedule_note([m['config'] for m in runs.metrics])}, test scored with the best-dev epoch; "
        f"{steps_note(runs)}; "
        + (
            "full dev and test splits"
            if all(m["config"]["dataset"]["max_eval_examples"] is None for m in runs.metrics)
            else "dev and test capped (smoke only: not comparable to anything)"
        )
    )
    main_df = main_table(runs, failed, args.resamples)
    caption = (
        f"Test Macro-F1 (x100), mean ± std over seeds; {setting}. Bold: best per dataset. "
        "Paper numbers: BERT-based encoders, full data (docs/method.md section 5). A collapsed seed (more than half "
        "of the classes at dev F1 0 in its dev-chosen epoch) is counted in its cell, which also gives the mean "
        "without it. Best baseline: best mean dev Macro-F1 over the seeds that did not collapse; the gain, 95% CI and "
        f"two-sided p from a paired bootstrap over test items ({args.resamples} resamples, "
        "per seed, pooled as the mean over seeds) over the seeds where neither run collapsed."
    )
    text = write_table(main_df, args.out / "main", "Main results", caption)
    ablation_df = ablation_table(runs, failed, args.resamples)
    text += "\n" + write_table(
        ablation_df,
        args.out / "ablation",
        "Ablations",
        "Test Macro-F1 (x100), mean ± std "
        f"over seeds; {setting}. '- full (p)': difference from full HAMR and the two-sided p "
        f"of a paired bootstrap over test items ({args.resamples} resamples, per seed, pooled). "
        "Paper numbers from a secondary summary (unverified).",
    )
    minority_df = minority_table(runs)
    if len(minority_df):
        text += "\n" + write_table(
            minority_df,
            args.out / "minority",
            "Rarest classes",
            "Test F1 (x100, mean over seeds) of each dataset's three rarest training classes.",
        )
    overall_df = overall_table(runs, args.resamples, with_loss=hamr_over_loss_run(runs, failed))
    text = (
        write_table(
            overall_df,
            args.out / "overall",
            "Does HAMR help here?",
            "Test Macro-F1 (x100) of each "
            "HAMR minus the best baseline chosen on dev, paired by (dataset, seed) over every pair where "
            "neither run collapsed: mean difference, bootstrap 95% interval over the pairs "
            f"({args.resamples} resamples), wins, and the two-sided p of Wilcoxon's signed-rank test.",
        )
        + "\n"
        + text
    )
    convergence_df = convergence_table(runs)
    if len(convergence_df):
        text += "\n" + write_table(
            convergence_df,
            args.out / "convergence",
            "Did the runs converge?",
            "Per cell: the "
            "mean over seeds of the last epoch's dev Macro-F1 gain over the epoch before "
            "(x100), how many seeds had their best dev epoch last, how far the cell's mean dev "
            "Macro-F1 sits below the dev-chosen best baseline's (x100; over seeds that did not "
            "collapse), the optimizer steps of a run, and the seeds that collapsed (more than "
            "half the classes at dev F1 0).",
        )
    seeds_df = seeds_table(runs, failed)
    if len(seeds_df):
        text += "\n" + write_table(
            seeds_df,
            args.out / "seeds",
            "Every seed",
            "Test Macro-F1 (x100) of each run, "
            "with the dev Macro-F1 of its selected epoch in brackets: the spread behind each "
            "mean ± std; a seed far below the others is a run that did not learn.",
        )
    modules_df = modules_table(runs)
    if len(modules_df):
        text += "\n" + write_table(
            modules_df,
            args.out / "modules",
            "Did HAMR's modules move?",
            "Last epoch, mean over "
            "seeds: post-meta weights (p10, p90), the weight network's curve f at batch z-scores "
            "-3, 0, +3, the hardness spread (max / mean of h), the sampling probability of the "
            "hardest decile over the median's, the largest |sample share - data share| over "
            "classes, and the Spearman correlation of h with the loss (hard means hard when > 0). "
            "Unmoved: weights near 1, h max/mean near 1, share gap near 0.",
        )
    significance_rows = [
        {"dataset": r["dataset"], "configuration": NAMES[method], "vs": "best baseline (dev)", **test}
        for r in main_df.to_dict("records")
        for method, test in r["_tests"].items()
    ]
    significance_rows += [
        {"dataset": paper.DISPLAY[dataset], "configuration": r["configuration"], **test}
        for r in ablation_df.to_dict("records")
        for dataset, test in r["_tests"].items()
    ]
    atomic_write_bytes(args.out / "significance.json", json.dumps(significance_rows, indent=2).encode())
    from hamr.figures import figures

    images = figures(runs, args.figures or args.out.parent / "figures")
    provenance = {
        "built_at": time.strftime("%Y-%m-%d %H:%M %Z"),
        "machine": platform.platform(),
        "runs": len(runs),
        "failed": len(failed),
        "train_hours": float(sum(m["wall_seconds"] for m in runs.metrics) / 3600) if len(runs) else 0.0,
    }
    atomic_write_bytes(args.out / "provenance.json", json.dumps(provenance, indent=2).encode())
    if not args.no_wandb:
        log_to_wandb(
            args.profile,
            {"main": main_df, "ablation": ablation_df, "minority": minority_df},
            images,
            args.out,
            group=wandb_group(runs, args.profile),
        )
    print(text)
    print(
        f"{len(runs)} finished runs, {len(failed)} failed; tables in {args.out}, "
        f"figures: {sum(p.suffix == '.png' for p in images)}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
