"""The tables' figures (``scripts/build_tables.py --figures``), one function per figure, from the
numbers in ``figure_data.json`` (:func:`figure_data`): per-class F1 of the HAMRs against the best
baseline, the learned loss -> weight curve over epochs, each class's sampling share in the last
epoch against its share of the data, and per dataset whether each HAMR module moved."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from hamr import paper
from hamr.results import atomic_write_bytes
from hamr.tables import HAMR_NAMES, HAMRS, NAMES, best_baseline, mean_history, with_share_gap

MODULE_PANELS = (  # (title, [(history key, label)]) of the modules_<dataset>.png panels
    ("post-meta weight spread", [("weight_p10", "p10"), ("weight_p90", "p90")]),
    (
        "hardness and sampling spread",
        [("h_max_over_mean", "h max / mean"), ("p_hard_decile_over_median", "p of hardest decile / median")],
    ),
    ("largest |sample share - data share| over classes", [("max_share_gap", "gap")]),
    ("Spearman of h with the loss", [("spearman_h_loss", "rho")]),
)


def figure_data(runs: pd.DataFrame) -> dict:
    """The numbers behind the figures: test F1 per class (mean over seeds) of every method, and the
    per-epoch history (mean over seeds, :func:`hamr.tables.mean_history`) of every HAMR variant."""
    data = {"per_class_f1": {}, "histories": {}}
    for (dataset, method), sel in runs.groupby(["dataset", "method"]):
        classes = sel.iloc[0].metrics["test"]["per_class_f1"]
        data["per_class_f1"].setdefault(dataset, {})[method] = {
            c: float(np.mean([r["test"]["per_class_f1"].get(c, 0.0) for r in sel.metrics])) for c in classes
        }
        if method in (f"{h}_full" for h in HAMRS):
            histories = [[with_share_gap(row) for row in m["history"]] for m in sel.metrics]
            data["histories"].setdefault(method, {})[dataset] = mean_history(histories)
    return data


def _grid(plt, title: str, rows: int, columns: int = 1, size=(9, 2.8)):
    fig, axes = plt.subplots(rows, columns, figsize=(size[0] * columns, size[1] * rows), squeeze=False)
    fig.suptitle(title)
    return fig, axes


def per_class_f1_figure(plt, runs: pd.DataFrame, data: dict, datasets: list[str]):
    """Test F1 per class (mean over seeds) of the best baseline (chosen on dev) and each HAMR."""
    fig, axes = _grid(
        plt, "Test F1 per class (mean over seeds): the best baseline (chosen on dev) and HAMR", len(datasets)
    )
    for ax, dataset in zip(axes[:, 0], datasets):
        sel, baseline = runs[runs.dataset == dataset], best_baseline(runs, dataset)
        counts = sel.iloc[0].metrics["train_class_counts"]
        classes = sorted(counts, key=lambda c: -counts[c])
        shown = [m for m in (baseline, *(f"{h}_full" for h in HAMRS)) if m in data["per_class_f1"][dataset]]
        for i, method in enumerate(shown):
            f1 = data["per_class_f1"][dataset][method]
            ax.bar(
                np.arange(len(classes)) + (i - (len(shown) - 1) / 2) * 0.8 / len(shown),
                [f1.get(c, 0.0) for c in classes],
                width=0.8 / len(shown),
                label=NAMES.get(method, method),
            )
        ax.set_xticks(
            np.arange(len(classes)), [f"{c[:18]} ({counts[c]})" for c in classes], rotation=30, ha="right", fontsize=7
        )
        ax.set_title(paper.DISPLAY[dataset], fontsize=9)
        ax.set_ylabel("F1")
        ax.legend(fontsize=7)
    return fig


def weight_curve_figure(plt, histories: dict, variants: list[str], hamr_datasets: list[str]):
    """f_θ's learned loss -> weight curve after each epoch, per HAMR variant and dataset."""
    fig, axes = _grid(
        plt,
        "Learned loss -> weight curve f_θ(z) after each epoch (mean over seeds)",
        rows=len(variants),
        columns=len(hamr_datasets),
        size=(3, 3),
    )
    for row, variant in enumerate(variants):
        for ax, dataset in zip(axes[row], hamr_datasets):
            history = histories[variant].get(dataset)
            if not history:
                ax.set_axis_off()
                continue
            keys = sorted(
                (k for k in history[0] if k.startswith("weight_curve/z=")), key=lambda k: float(k.split("=")[1])
            )
            z = [float(k.split("=")[1]) for k in keys]
            for epoch_row in history:
                ax.plot(z, [epoch_row[k] for k in keys], marker=".", label=f"epoch {epoch_row['epoch']}")
            ax.set_title(f"{NAMES[variant]}\n{paper.DISPLAY[dataset]} ({history[0]['n_seeds']} seeds)", fontsize=8)
            ax.set_xlabel("batch z-score of the loss")
            ax.legend(fontsize=6)
    return fig


def sampling_share_figure(plt, histories: dict, variants: list[str], hamr_datasets: list[str]):
    """Each class's share of the last epoch's draws against its share of the data."""
    fig, axes = _grid(
        plt,
        "Share of each class among the examples sampled in the last epoch vs its share of the data (mean over seeds)",
        rows=len(hamr_datasets),
    )
    for ax, dataset in zip(axes[:, 0], hamr_datasets):
        first = next(histories[v][dataset] for v in variants if dataset in histories[v])[0]
        classes = sorted(
            (k.split("/", 1)[1] for k in first if k.startswith("data_share/")), key=lambda c: -first[f"data_share/{c}"]
        )
        x = np.arange(len(classes))
        ax.bar(x, [first[f"data_share/{c}"] for c in classes], color="lightgray", label="data")
        for variant in variants:
            if dataset in histories[variant]:
                last = histories[variant][dataset][-1]
                ax.plot(
                    x,
                    [last[f"sample_share/{c}"] for c in classes],
                    marker="o",
                    linestyle="",
                    label=f"{NAMES[variant]}, epoch {last['epoch']}",
                )
        ax.set_xticks(x, [c[:18] for c in classes], rotation=30, ha="right", fontsize=7)
        ax.set_title(paper.DISPLAY[dataset], fontsize=9)
        ax.legend(fontsize=6)
    return fig


def modules_figure(plt, histories: dict, variants: list[str], dataset: str):
    """Per epoch, whether each of HAMR's modules moved on ``dataset`` (MODULE_PANELS)."""
    fig, axes = _grid(
        plt,
        f"{paper.DISPLAY[dataset]}: did HAMR's modules move? (per epoch, mean over seeds)",
        rows=1,
        columns=len(MODULE_PANELS),
        size=(3.2, 3),
    )
    for ax, (title, keys) in zip(axes[0], MODULE_PANELS):
        for variant in variants:
            history = histories[variant].get(dataset, [])
            for key, label in keys:
                if history and key in history[0]:
                    ax.plot(
                        [r["epoch"] for r in history],
                        [r.get(key, np.nan) for r in history],
                        marker="o",
                        label=f"{HAMR_NAMES[variant[: -len('_full')]]}: {label}",
                    )
        ax.set_title(title, fontsize=8)
        ax.set_xlabel("epoch")
        if ax.lines:
            ax.legend(fontsize=5)
        else:  # runs from before this diagnostic was logged
            ax.text(0.5, 0.5, "not logged", ha="center", va="center", transform=ax.transAxes)
    return fig


def figures(runs: pd.DataFrame, folder: Path) -> list[Path]:
    """Every figure (and figure_data.json) of the finished runs into ``folder``; returns their paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    datasets = [d for d in paper.DATASETS if len(runs) and (runs.dataset == d).any()]
    written: list[Path] = []
    if not datasets:
        return written
    data = figure_data(runs)
    atomic_write_bytes(folder / "figure_data.json", json.dumps(data, indent=1).encode())
    written.append(folder / "figure_data.json")

    def save(fig, name: str) -> None:
        fig.tight_layout()
        fig.savefig(folder / name, dpi=80)
        plt.close(fig)
        written.append(folder / name)

    save(per_class_f1_figure(plt, runs, data, datasets), "per_class_f1.png")
    histories = data["histories"]
    variants = [f"{h}_full" for h in HAMRS if f"{h}_full" in histories]
    if not variants:
        return written
    hamr_datasets = [d for d in datasets if any(d in histories[v] for v in variants)]
    save(weight_curve_figure(plt, histories, variants, hamr_datasets), "weight_curve.png")
    save(sampling_share_figure(plt, histories, variants, hamr_datasets), "sampling_share.png")
    for dataset in hamr_datasets:
        save(modules_figure(plt, histories, variants, dataset), f"modules_{dataset}.png")
    return written
