"""Build the paper's tables and figures from finished runs (the end of `make reproduce-table`).

    python scripts/build_tables.py results/table_cpu --out results/tables --profile cpu

Reads every `runs/<dataset>/<method>/seed=<s>/metrics.json` (and `error.json` of failed runs)
under the results folder and writes to --out:
  main.{md,csv,tex}      six datasets x CE, Focal, Dice, ICF, HAMR: test Macro-F1 mean ± std over
                         seeds, best per dataset in bold, the paper's numbers, HAMR's gain over the
                         best baseline (the baseline with the best mean *dev* Macro-F1) with a
                         paired bootstrap over test items (95% interval, two-sided p)
  ablation.{md,csv,tex}  HAMR and its three ablations on BioNLP and Irma17, with the paper's numbers
  minority.{md,csv}      test F1 of each dataset's three rarest training classes: CE, best baseline, HAMR
and to --figures (default: <out>/../figures): per-class F1, the learned loss -> weight curve over
epochs, and the sampling share per class over epochs. Missing cells read "missing", failed ones
"failed", never 0. With W&B installed the tables and figures are also logged to one summary run
(WANDB_MODE=offline by default).
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
from hamr.results import atomic_write_bytes, load_runs
from hamr.significance import item_counts, paired_bootstrap

BASELINES = ["ce", "focal", "dice", "icf"]
MAIN_METHODS = [*BASELINES, "hamr_full"]
ABLATIONS = ["hamr_full", "hamr_no_resampling", "hamr_no_meta_weight", "hamr_no_neighbor_boost"]
ABLATION_DATASETS = ["bionlp2004", "hurricane_irma_2017"]
NAMES = {"ce": "CE", "focal": "Focal", "dice": "Dice", "icf": "ICF", "hamr_full": "HAMR",
         "hamr_no_resampling": "w/o resampling", "hamr_no_meta_weight": "w/o meta-weight",
         "hamr_no_neighbor_boost": "w/o neighbourhood boost"}


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("results", type=Path, help="folder holding runs/")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--figures", type=Path, default=None)
    parser.add_argument("--profile", default="custom", help="named in captions and the W&B group")
    parser.add_argument("--resamples", type=int, default=1000)
    parser.add_argument("--no-wandb", action="store_true")
    return parser.parse_args(argv)


def cell(runs: pd.DataFrame, failed: pd.DataFrame, dataset: str, method: str) -> dict:
    sel = runs[(runs.dataset == dataset) & (runs.method == method)] if len(runs) else runs
    n_failed = int(((failed.dataset == dataset) & (failed.method == method)).sum()) if len(failed) else 0
    if len(sel) == 0:
        return {"status": "failed" if n_failed else "missing", "n": 0, "failed": n_failed}
    return {"status": "ok", "n": len(sel), "failed": n_failed, "mean": 100 * sel.test.mean(),
            "std": 100 * sel.test.std(ddof=1) if len(sel) > 1 else float("nan"), "dev": 100 * sel.dev.mean()}


def fmt(c: dict, bold: bool = False, tex: bool = False) -> str:
    if c["status"] != "ok":
        return c["status"]
    std = "" if np.isnan(c["std"]) else (f" $\\pm$ {c['std']:.1f}" if tex else f" ± {c['std']:.1f}")
    text = f"{c['mean']:.1f}{std}"
    if c["n"] < 3:
        text += f" (n={c['n']})"
    if c["failed"]:
        text += f" ({c['failed']} failed)"
    if bold:
        text = f"\\textbf{{{text}}}" if tex else f"**{text}**"
    return text


def run_counts(row) -> tuple[np.ndarray, list[str]]:
    m = row.metrics
    pred = np.load(row.folder / "predictions.npz")
    task = m["config"]["dataset"]["task"]
    return item_counts(pred["gold"], pred["pred"], m["label_names"], task, pred.get("lengths"))


def significance(runs: pd.DataFrame, dataset: str, method: str, baseline: str, resamples: int) -> dict | None:
    a = runs[(runs.dataset == dataset) & (runs.method == method)].set_index("seed")
    b = runs[(runs.dataset == dataset) & (runs.method == baseline)].set_index("seed")
    seeds = sorted(set(a.index) & set(b.index))
    if not seeds or "label_names" not in a.iloc[0].metrics:
        return None
    result = paired_bootstrap([run_counts(a.loc[s])[0] for s in seeds], [run_counts(b.loc[s])[0] for s in seeds],
                              n_resamples=resamples)
    return {**result, "seeds": seeds}


def fmt_p(p_value: float, resamples: int) -> str:
    # with R resamples the smallest p the bootstrap can show is about 1/R
    return f"{p_value:.3f}" if p_value >= 1 / resamples else f"<{1 / resamples:g}"


def best_baseline(runs: pd.DataFrame, dataset: str) -> str | None:
    sel = runs[(runs.dataset == dataset) & runs.method.isin(BASELINES)] if len(runs) else runs
    if len(sel) == 0:
        return None
    return sel.groupby("method").dev.mean().idxmax()  # chosen on dev, like every choice here


def main_table(runs, failed, resamples) -> pd.DataFrame:
    rows = []
    for dataset in paper.DATASETS:
        cells = {m: cell(runs, failed, dataset, m) for m in MAIN_METHODS}
        done = {m: round(c["mean"], 1) for m, c in cells.items() if c["status"] == "ok"}
        best = {m for m, value in done.items() if value == max(done.values())}  # ties as shown: all bold
        baseline = best_baseline(runs, dataset)
        row = {"dataset": paper.DISPLAY[dataset]}
        row.update({NAMES[m]: fmt(c, bold=(m in best)) for m, c in cells.items()})
        row["_tex"] = {NAMES[m]: fmt(c, bold=(m in best), tex=True) for m, c in cells.items()}
        hamr_paper, base_paper, base_name = paper.MAIN[dataset]
        row["paper HAMR"] = f"{hamr_paper:.1f}"
        row["paper best baseline"] = f"{base_paper:.1f} ({base_name})"
        test = significance(runs, dataset, "hamr_full", baseline, resamples) if baseline else None
        if test and cells["hamr_full"]["status"] == "ok":
            row["best baseline (dev)"] = NAMES[baseline]
            row["HAMR - best baseline"] = f"{100 * test['delta']:+.1f}"
            row["95% CI"] = f"[{100 * test['ci_low']:+.1f}, {100 * test['ci_high']:+.1f}]"
            row["p"] = fmt_p(test["p_value"], resamples)
            row["_test"] = test
        else:
            row.update({"best baseline (dev)": NAMES.get(baseline, "missing"), "HAMR - best baseline": "missing",
                        "95% CI": "missing", "p": "missing"})
        rows.append(row)
    return pd.DataFrame(rows)


def ablation_table(runs, failed, resamples) -> pd.DataFrame:
    """One row per configuration; per dataset its cell, its difference from full HAMR with the paired
    bootstrap's p (the seeds both have), and the paper's number."""
    rows = []
    for method in ABLATIONS:
        row = {"configuration": NAMES[method] if method != "hamr_full" else "HAMR (full)", "_tex": {}, "_tests": {}}
        for dataset in ABLATION_DATASETS:
            name = paper.DISPLAY[dataset]
            c = cell(runs, failed, dataset, method)
            row[name] = fmt(c)
            row["_tex"][name] = fmt(c, tex=True)
            difference = f"{name} - full (p)"
            if method == "hamr_full":
                row[difference] = ""
            elif c["status"] == "ok" and (test := significance(runs, dataset, method, "hamr_full", resamples)):
                row[difference] = f"{100 * test['delta']:+.1f} (p {fmt_p(test['p_value'], resamples)})"
                row["_tests"][dataset] = test
            else:
                row[difference] = "missing"
            row[f"paper {name}"] = f"{paper.ABLATION[method][dataset]:.1f}"
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
            for label, method in (("CE", "ce"), ("best baseline", baseline), ("HAMR", "hamr_full")):
                m = sel[sel.method == method]
                row[label] = (f"{100 * np.mean([r['test']['per_class_f1'].get(c, 0.0) for r in m.metrics]):.1f}"
                              if len(m) else "missing")
            row["best baseline is"] = NAMES.get(baseline, "missing")
            rows.append(row)
    return pd.DataFrame(rows)


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
        body = tex.to_latex(index=False, escape=False, caption=caption.replace("%", "\\%").replace("`", ""),
                            label=f"tab:{stem.name}")
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


def figures(runs: pd.DataFrame, folder: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    datasets = [d for d in paper.DATASETS if len(runs) and (runs.dataset == d).any()]
    written = []
    if not datasets:
        return written

    def grid(title):
        fig, axes = plt.subplots(len(datasets), 1, figsize=(9, 2.8 * len(datasets)), squeeze=False)
        fig.suptitle(title)
        return fig, axes[:, 0]

    def save(fig, name):
        fig.tight_layout()
        path = folder / name
        fig.savefig(path, dpi=80)
        plt.close(fig)
        written.append(path)

    fig, axes = grid("Test F1 per class (mean over seeds): HAMR vs the best baseline (chosen on dev)")
    for ax, dataset in zip(axes, datasets):
        sel, baseline = runs[runs.dataset == dataset], best_baseline(runs, dataset)
        counts = sel.iloc[0].metrics["train_class_counts"]
        classes = sorted(counts, key=lambda c: -counts[c])
        for offset, method in ((-0.2, baseline), (0.2, "hamr_full")):
            m = sel[sel.method == method]
            if len(m):
                f1 = [np.mean([r["test"]["per_class_f1"].get(c, 0.0) for r in m.metrics]) for c in classes]
                ax.bar(np.arange(len(classes)) + offset, f1, width=0.4, label=NAMES.get(method, method))
        ax.set_xticks(np.arange(len(classes)), [f"{c[:18]} ({counts[c]})" for c in classes], rotation=30, ha="right",
                      fontsize=7)
        ax.set_title(paper.DISPLAY[dataset], fontsize=9)
        ax.set_ylabel("F1")
        ax.legend(fontsize=7)
    save(fig, "per_class_f1.png")

    hamr = runs[runs.method == "hamr_full"] if len(runs) else runs
    hamr_datasets = [d for d in datasets if (hamr.dataset == d).any()]
    if hamr_datasets:
        fig, axes = plt.subplots(1, len(hamr_datasets), figsize=(3 * len(hamr_datasets), 3), squeeze=False)
        fig.suptitle("Learned loss -> weight curve g(f_θ(z)) after each epoch (HAMR, mean over seeds)")
        histories = {d: mean_history([m["history"] for m in hamr[hamr.dataset == d].metrics]) for d in hamr_datasets}
        for ax, dataset in zip(axes[0], hamr_datasets):
            history = histories[dataset]
            keys = sorted((k for k in history[0] if k.startswith("weight_curve/z=")), key=lambda k: float(k.split("=")[1]))
            z = [float(k.split("=")[1]) for k in keys]
            for row in history:
                ax.plot(z, [row[k] for k in keys], marker=".", label=f"epoch {row['epoch']}")
            ax.set_title(f"{paper.DISPLAY[dataset]} ({history[0]['n_seeds']} seeds)", fontsize=9)
            ax.set_xlabel("batch z-score of the loss")
            ax.legend(fontsize=6)
        save(fig, "weight_curve.png")

        fig, axes = grid("Share of each class among sampled examples per epoch vs its share of the data "
                         "(HAMR, mean over seeds)")
        for ax, dataset in zip(axes, hamr_datasets):
            history = histories[dataset]
            classes = sorted((k.split("/", 1)[1] for k in history[0] if k.startswith("data_share/")),
                             key=lambda c: -history[0][f"data_share/{c}"])
            x = np.arange(len(classes))
            ax.bar(x, [history[0][f"data_share/{c}"] for c in classes], color="lightgray", label="data")
            for row in history:
                ax.plot(x, [row[f"sample_share/{c}"] for c in classes], marker="o", linestyle="", label=f"epoch {row['epoch']}")
            ax.set_xticks(x, [c[:18] for c in classes], rotation=30, ha="right", fontsize=7)
            ax.set_title(paper.DISPLAY[dataset], fontsize=9)
            ax.legend(fontsize=6)
        save(fig, "sampling_share.png")
    return written


def log_to_wandb(profile: str, tables: dict[str, pd.DataFrame], images: list[Path], out: Path) -> None:
    """One W&B summary run holding the tables and figures; a failure is a warning only."""
    try:
        import wandb

        run = wandb.init(project=os.environ.get("WANDB_PROJECT", "hamr"), group=f"table_{profile}",
                         name=f"tables-{profile}", job_type="summary", dir=os.environ.get("WANDB_DIR", "outputs"),
                         mode=os.environ.get("WANDB_MODE", "offline"), reinit="finish_previous")
        for name, df in tables.items():
            public = df[[c for c in df.columns if not c.startswith("_")]].astype(str)
            run.log({f"table/{name}": wandb.Table(dataframe=public)})
        run.log({f"figure/{p.stem}": wandb.Image(str(p)) for p in images})
        run.finish()
    except Exception as err:  # noqa: BLE001 - the tables are written already
        print(f"warning: W&B logging of the tables failed ({type(err).__name__}: {err})")


def main(argv=None) -> int:
    args = parse_args(argv)
    runs, failed = load_runs(args.results)
    if len(runs) == 0 and len(failed) == 0:
        raise SystemExit(f"error: no runs under {args.results}/runs: run `make reproduce-table` first")
    args.out.mkdir(parents=True, exist_ok=True)
    model = runs.iloc[0].metrics["model"] if len(runs) else "?"
    train_caps = sorted({str(m["config"]["dataset"]["max_train_examples"]) for m in runs.metrics}) if len(runs) else []
    trainer = runs.iloc[0].metrics["config"]["trainer"] if len(runs) else {}
    lrs = sorted({m["config"]["trainer"]["lr"] for m in runs.metrics}) if len(runs) else []
    setting = (f"profile `{args.profile}`: {model}, at most {', '.join(train_caps)} training examples (stratified), "
               f"{trainer.get('epochs')} epochs, max length {trainer.get('max_length')}, batch {trainer.get('batch_size')}, "
               f"lr {', '.join(map(str, lrs))}, test scored with the best-dev epoch; "
               + ("full dev and test splits" if all(m["config"]["dataset"]["max_eval_examples"] is None for m in runs.metrics)
                  else "dev and test capped (smoke only: not comparable to anything)"))
    main_df = main_table(runs, failed, args.resamples)
    caption = (f"Test Macro-F1 (x100), mean ± std over seeds; {setting}. Bold: best per dataset. "
               "Paper numbers: BERT-based encoders, full data (method.md section 5). Best baseline: best mean dev "
               f"Macro-F1; 95% CI and two-sided p from a paired bootstrap over test items ({args.resamples} resamples, "
               "per seed, pooled as the mean over seeds).")
    text = write_table(main_df, args.out / "main", "Main results", caption)
    ablation_df = ablation_table(runs, failed, args.resamples)
    text += "\n" + write_table(ablation_df, args.out / "ablation", "Ablations", "Test Macro-F1 (x100), mean ± std "
                               f"over seeds; {setting}. '- full (p)': difference from full HAMR and the two-sided p "
                               f"of a paired bootstrap over test items ({args.resamples} resamples, per seed, pooled). "
                               "Paper numbers from a secondary summary (unverified).")
    minority_df = minority_table(runs)
    if len(minority_df):
        text += "\n" + write_table(minority_df, args.out / "minority", "Rarest classes", "Test F1 (x100, mean over "
                                   "seeds) of each dataset's three rarest training classes.")
    significance_rows = [{"dataset": r["dataset"], "vs": "best baseline (dev)", **r["_test"]}
                         for r in main_df.to_dict("records") if isinstance(r.get("_test"), dict)]
    significance_rows += [{"dataset": paper.DISPLAY[dataset], "configuration": r["configuration"], "vs": "HAMR (full)",
                           **test} for r in ablation_df.to_dict("records") for dataset, test in r["_tests"].items()]
    atomic_write_bytes(args.out / "significance.json", json.dumps(significance_rows, indent=2).encode())
    images = figures(runs, args.figures or args.out.parent / "figures")
    provenance = {"built_at": time.strftime("%Y-%m-%d %H:%M %Z"), "machine": platform.platform(),
                  "runs": len(runs), "failed": len(failed),
                  "train_hours": float(sum(m["wall_seconds"] for m in runs.metrics) / 3600) if len(runs) else 0.0}
    atomic_write_bytes(args.out / "provenance.json", json.dumps(provenance, indent=2).encode())
    if not args.no_wandb:
        log_to_wandb(args.profile, {"main": main_df, "ablation": ablation_df, "minority": minority_df}, images, args.out)
    print(text)
    print(f"{len(runs)} finished runs, {len(failed)} failed; tables in {args.out}, figures: {len(images)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
