"""hamr.tables (scripts/build_tables.py) on synthetic run folders whose every number is known in advance."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from hamr.results import write_run

ROOT = Path(__file__).resolve().parents[1]
LABELS = ["neg", "pos"]
GOLD = np.array([0, 1] * 20)  # 40 balanced test items


@pytest.fixture(scope="module")
def build_tables():
    import hamr.tables

    return hamr.tables


def fake_run(
    results: Path,
    method: str,
    seed: int,
    dev: float,
    test: float,
    pred: np.ndarray,
    dataset: str = "sst5",
    collapsed: bool = False,
    steps: int = 189,
    dev_curve: tuple[float, float] | None = None,
) -> None:
    history = [
        {
            "epoch": epoch,
            "weight_curve/z=-1.0": 0.4,
            "weight_curve/z=1.0": 0.6,
            "data_share/neg": 0.5,
            "data_share/pos": 0.5,
            "sample_share/neg": 0.4,
            "sample_share/pos": 0.6,
            "weight_p90": 1.0 + 0.1 * seed * epoch,
            "spearman_h_loss": 0.5,
            **({"dev_macro_f1": dev_curve[epoch - 1]} if dev_curve else {}),
        }
        for epoch in (1, 2)
    ]
    metrics = {
        "dataset": dataset,
        "method": method,
        "seed": seed,
        "dev_macro_f1": dev,
        "test_macro_f1": test,
        "model": "minilm",
        "label_names": LABELS,
        "train_class_counts": {"neg": 30, "pos": 10},
        "test": {"per_class_f1": {"neg": test, "pos": test}},
        "history": history,
        "wall_seconds": 60.0,
        # collapsed (hamr.metrics.collapsed): more than half the classes at dev F1 0
        "dev": {"per_class_f1": {"neg": 0.0, "pos": 0.0} if collapsed else {"neg": dev, "pos": dev}},
        "steps": steps,
        "config": {
            "dataset": {"task": "cls", "max_train_examples": 1000, "max_eval_examples": None},
            "trainer": {"epochs": 3, "max_length": 64, "batch_size": 16, "lr": 1e-4},
        },
    }
    write_run(results / "runs" / dataset / method / f"seed={seed}", metrics, {"gold": GOLD, "pred": pred})


@pytest.fixture(scope="module")
def tables(tmp_path_factory, build_tables):
    results = tmp_path_factory.mktemp("results")
    perfect, all_neg = GOLD.copy(), np.zeros_like(GOLD)
    for seed, test in zip((1, 2, 3), (0.40, 0.50, 0.60)):  # CE: best baseline on test, not on dev
        fake_run(results, "ce", seed, dev=0.50, test=test, pred=all_neg)
    for seed in (1, 2, 3):  # Focal: best on dev -> the baseline HAMR is tested against
        fake_run(results, "focal", seed, dev=0.60, test=0.30, pred=all_neg)
        fake_run(results, "hamr_full", seed, dev=0.70, test=0.70, pred=perfect)
    (results / "runs" / "sst5" / "icf" / "seed=1").mkdir(parents=True)
    (results / "runs" / "sst5" / "icf" / "seed=1" / "error.json").write_text(json.dumps({"error": "x"}))
    out = results / "tables"
    assert (
        build_tables.main(
            [
                str(results),
                "--out",
                str(out),
                "--figures",
                str(results / "figures"),
                "--resamples",
                "1000",
                "--no-wandb",
            ]
        )
        == 0
    )
    return out


def main_row(tables: Path, dataset: str = "SST-5") -> dict:
    main = pd.read_csv(tables / "main.csv", dtype=str, keep_default_na=False)
    return main.set_index("dataset").loc[dataset].to_dict()


def test_cells_are_means_and_sample_stds_over_seeds_with_the_best_in_bold(tables):
    row = main_row(tables)
    assert row["CE"] == "50.0 ± 10.0"  # mean of 40, 50, 60; std with ddof=1
    assert row["Focal"] == "30.0 ± 0.0"
    assert row["HAMR"] == "**70.0 ± 0.0**"


def test_missing_and_failed_cells_are_named_never_zero(tables):
    row = main_row(tables)
    assert row["Dice"] == "missing" and row["ICF"] == "failed"
    other = main_row(tables, "BioNLP")
    assert {other[m] for m in ("CE", "Focal", "Dice", "ICF", "HAMR")} == {"missing"}
    assert other["p"] == "missing"
    ablation = (tables / "ablation.md").read_text()
    assert "missing" in ablation and " 0.0 " not in ablation


def test_gain_and_bootstrap_against_the_baseline_chosen_on_dev(tables):
    row = main_row(tables)
    assert row["best baseline (dev)"] == "Focal"  # best dev (60), though CE is better on test
    # Perfect predictions vs always "neg" on balanced items: Macro-F1 1 vs (2/3 + 0) / 2 = 1/3.
    assert row["HAMR - best baseline"] == "+66.7" and row["p"] == "<0.001"
    significance = json.loads((tables / "significance.json").read_text())[0]
    assert significance["delta"] == pytest.approx(2 / 3)
    assert significance["p_value"] < 0.01 and 0 < significance["ci_low"] <= 2 / 3 <= significance["ci_high"]
    assert significance["seeds"] == [1, 2, 3] and significance["n_resamples"] == 1000


def test_a_tie_gives_a_zero_gain_and_p_of_one(tmp_path, build_tables):
    for seed in (1, 2):
        fake_run(tmp_path, "ce", seed, dev=0.5, test=0.5, pred=np.zeros_like(GOLD))
        fake_run(tmp_path, "hamr_full", seed, dev=0.5, test=0.5, pred=np.zeros_like(GOLD))
    build_tables.main([str(tmp_path), "--out", str(tmp_path / "t"), "--figures", str(tmp_path / "f"), "--no-wandb"])
    row = main_row(tmp_path / "t")
    assert row["HAMR - best baseline"] == "+0.0" and row["p"] == "1.000" and row["95% CI"] == "[+0.0, +0.0]"
    assert row["CE"] == row["HAMR"] == "**50.0 ± 0.0 (n=2)**"  # a tie: both bold; fewer than 3 seeds is said


def test_figures_and_the_numbers_they_draw(tables):
    figures = sorted(p.name for p in (tables.parent / "figures").glob("*.png"))
    assert figures == ["modules_sst5.png", "per_class_f1.png", "sampling_share.png", "weight_curve.png"]
    data = json.loads((tables.parent / "figures" / "figure_data.json").read_text())
    assert data["per_class_f1"]["sst5"]["ce"] == {
        "neg": pytest.approx(0.5),
        "pos": pytest.approx(0.5),
    }  # mean of .4 .5 .6
    assert data["per_class_f1"]["sst5"]["hamr_full"]["pos"] == pytest.approx(0.7)
    history = data["histories"]["hamr_full"]["sst5"]  # HAMR seeds 1-3: weight_p90 = 1 + 0.1 seed epoch
    assert [row["weight_p90"] for row in history] == pytest.approx([1.2, 1.4])
    assert [row["max_share_gap"] for row in history] == pytest.approx([0.1, 0.1])  # |0.4 - 0.5|, derived
    assert [row["n_seeds"] for row in history] == [3, 3] and list(data["histories"]) == ["hamr_full"]


def test_modules_table_gives_last_epoch_means_over_seeds(tables):
    modules = pd.read_csv(tables / "modules.csv", dtype=str, keep_default_na=False)
    assert len(modules) == 1  # only the HAMR runs: SST-5, hamr=default
    row = modules.iloc[0].to_dict()
    assert (row["dataset"], row["configuration"], row["seeds"]) == ("SST-5", "HAMR", "3")
    assert row["w p90"] == "1.40"  # epoch 2 of seeds 1-3: mean of 1.2, 1.4, 1.6 (epoch 1 would give 1.20)
    assert row["max share gap"] == "0.10" and row["Spearman(h, loss)"] == "0.50"
    assert row["w p10"] == "-"  # never logged by these runs: named, not zero


def test_figure_histories_are_per_epoch_means_over_seeds_cut_to_the_shortest_run(build_tables):
    seed_1 = [
        {"epoch": 1, "weight_curve/z=0.0": 0.2, "sample_share/neg": 0.5},
        {"epoch": 2, "weight_curve/z=0.0": 0.4, "sample_share/neg": 0.7},
    ]
    seed_2 = [{"epoch": 1, "weight_curve/z=0.0": 0.6, "sample_share/neg": 0.3}]
    merged = build_tables.mean_history([seed_1, seed_2])
    assert merged == [
        {"epoch": 1, "weight_curve/z=0.0": pytest.approx(0.4), "sample_share/neg": pytest.approx(0.4), "n_seeds": 2}
    ]
    assert build_tables.mean_history([seed_1])[1]["weight_curve/z=0.0"] == pytest.approx(0.4)


def test_each_ablation_is_bootstrapped_against_full_hamr_on_the_seeds_both_have(tmp_path, build_tables):
    for seed in (1, 2):
        fake_run(tmp_path, "hamr_full", seed, dev=0.7, test=1.0, pred=GOLD.copy(), dataset="bionlp2004")
    for seed in (1, 2, 3):  # seed 3 has no full-HAMR partner: left out of the paired test
        fake_run(
            tmp_path, "hamr_no_resampling", seed, dev=0.5, test=1 / 3, pred=np.zeros_like(GOLD), dataset="bionlp2004"
        )
    build_tables.main([str(tmp_path), "--out", str(tmp_path / "t"), "--figures", str(tmp_path / "f"), "--no-wandb"])
    ablation = pd.read_csv(tmp_path / "t" / "ablation.csv", dtype=str, keep_default_na=False)
    row = ablation.set_index("configuration").loc["HAMR w/o resampling"]
    assert row["BioNLP - full (p)"] == "-66.7 (p <0.001)"  # 1/3 vs 1, as in the main-table test
    assert row["Irma17 - full (p)"] == "missing" and row["Irma17"] == "missing"
    tests = [t for t in json.loads((tmp_path / "t" / "significance.json").read_text()) if t["vs"] == "HAMR (full)"]
    assert [(t["configuration"], t["dataset"], t["seeds"]) for t in tests] == [
        ("HAMR w/o resampling", "BioNLP", [1, 2])
    ]
    assert tests[0]["delta"] == pytest.approx(-2 / 3)


def test_seeds_table_lists_every_runs_test_and_dev_score(tables):
    seeds = pd.read_csv(tables / "seeds.csv", dtype=str, keep_default_na=False).set_index("configuration")
    assert list(seeds.columns) == ["dataset", "seed 1", "seed 2", "seed 3"]
    assert seeds.loc["CE", ["seed 1", "seed 2", "seed 3"]].tolist() == ["40.0 (50.0)", "50.0 (50.0)", "60.0 (50.0)"]
    assert seeds.loc["HAMR", "seed 2"] == "70.0 (70.0)"
    assert "ICF" not in seeds.index  # its only seed failed and nothing else of it finished


def test_seeds_table_names_a_failed_seed_beside_finished_ones(tmp_path, build_tables):
    fake_run(tmp_path, "ce", 1, dev=0.5, test=0.25, pred=GOLD)
    (tmp_path / "runs" / "sst5" / "ce" / "seed=2").mkdir(parents=True)
    (tmp_path / "runs" / "sst5" / "ce" / "seed=2" / "error.json").write_text(json.dumps({"error": "x"}))
    from hamr.runs import load_runs

    row = build_tables.seeds_table(*load_runs(tmp_path)).iloc[0].to_dict()
    assert row == {"dataset": "SST-5", "configuration": "CE", "seed 1": "25.0 (50.0)", "seed 2": "failed"}


def test_a_collapsed_seed_is_counted_marked_and_left_out_of_the_best_baseline_choice(tmp_path, build_tables):
    """ICF has the best dev mean without its collapsed seed, and is chosen; its cell gives the mean
    with and without that seed; seeds.md marks it."""
    for seed in (1, 2, 3):
        fake_run(tmp_path, "ce", seed, dev=0.50, test=0.50, pred=np.zeros_like(GOLD))
        fake_run(
            tmp_path,
            "icf",
            seed,
            dev=0.05 if seed == 1 else 0.60,
            test=0.05 if seed == 1 else 0.65,
            pred=np.zeros_like(GOLD),
            collapsed=seed == 1,
        )  # dev mean with it 0.42 < CE's 0.50
        fake_run(tmp_path, "hamr_full", seed, dev=0.55, test=0.55, pred=np.zeros_like(GOLD))
    build_tables.main([str(tmp_path), "--out", str(tmp_path / "t"), "--figures", str(tmp_path / "f"), "--no-wandb"])
    row = main_row(tmp_path / "t")
    assert row["best baseline (dev)"] == "ICF"
    assert row["ICF"] == "45.0 ± 34.6 (1 collapsed; 65.0 without)" and row["CE"] == "50.0 ± 0.0"
    seeds = pd.read_csv(tmp_path / "t" / "seeds.csv", dtype=str, keep_default_na=False).set_index("configuration")
    assert seeds.loc["ICF", "seed 1"] == "5.0 (5.0) collapsed" and seeds.loc["ICF", "seed 2"] == "65.0 (60.0)"


def test_the_caption_states_the_steps_and_names_a_dataset_whose_methods_took_unequal_steps(tmp_path, build_tables):
    for seed in (1, 2):
        fake_run(tmp_path, "ce", seed, dev=0.5, test=0.5, pred=GOLD, steps=125)
        fake_run(tmp_path, "hamr_full", seed, dev=0.5, test=0.5, pred=GOLD, steps=125)
        fake_run(tmp_path, "ce", seed, dev=0.5, test=0.5, pred=GOLD, dataset="bionlp2004", steps=189)
        fake_run(tmp_path, "hamr_full", seed, dev=0.5, test=0.5, pred=GOLD, dataset="bionlp2004", steps=225)
    build_tables.main([str(tmp_path), "--out", str(tmp_path / "t"), "--figures", str(tmp_path / "f"), "--no-wandb"])
    caption = (tmp_path / "t" / "main.md").read_text().split("\n")[2]
    assert "optimizer steps per run: BioNLP UNEQUAL: 189 (CE); 225 (HAMR), SST-5 125;" in caption


def test_hamr_over_the_loss_chosen_on_dev_has_its_column_and_its_gain(tmp_path, build_tables):
    for seed in (1, 2):
        fake_run(tmp_path, "ce", seed, dev=0.5, test=0.5, pred=np.zeros_like(GOLD))
        fake_run(tmp_path, "hamr_full", seed, dev=0.5, test=0.5, pred=np.zeros_like(GOLD))
        fake_run(tmp_path, "hamr-focal_full", seed, dev=0.6, test=1.0, pred=GOLD.copy())  # best on dev: chosen
        fake_run(tmp_path, "hamr-icf_full", seed, dev=0.55, test=1.0, pred=GOLD.copy())
    build_tables.main([str(tmp_path), "--out", str(tmp_path / "t"), "--figures", str(tmp_path / "f"), "--no-wandb"])
    row = main_row(tmp_path / "t")
    assert row["HAMR + loss (dev)"] == "**100.0 ± 0.0 (n=2)** (HAMR + Focal)"
    assert row["HAMR + loss - best baseline"] == "+66.7" and row["HAMR - best baseline"] == "+0.0"
    seeds = pd.read_csv(tmp_path / "t" / "seeds.csv", dtype=str, keep_default_na=False).set_index("configuration")
    assert seeds.loc["HAMR + ICF", "seed 1"] == "100.0 (55.0)"
    assert main_row(tmp_path / "t", "BioNLP")["HAMR + loss (dev)"] == "missing"


def test_the_gain_is_tested_on_the_seeds_where_neither_run_collapsed(tmp_path, build_tables):
    for seed in (1, 2, 3):
        fake_run(
            tmp_path,
            "ce",
            seed,
            dev=0.5,
            test=0.0 if seed == 1 else 1.0,
            pred=np.zeros_like(GOLD) if seed == 1 else GOLD.copy(),
            collapsed=seed == 1,
        )
        fake_run(tmp_path, "hamr_full", seed, dev=0.5, test=1.0, pred=GOLD.copy())
    build_tables.main([str(tmp_path), "--out", str(tmp_path / "t"), "--figures", str(tmp_path / "f"), "--no-wandb"])
    (test,) = json.loads((tmp_path / "t" / "significance.json").read_text())
    assert test["seeds"] == [2, 3] and test["collapsed_seeds"] == [1] and test["delta"] == 0.0


def test_the_overall_answer_pairs_every_dataset_and_seed_against_the_best_baseline(tmp_path, build_tables):
    """HAMR against the dev-chosen best baseline over all (dataset, seed) pairs: SST-5 +10 in three
    seeds, BioNLP -5 in two (the third's baseline collapsed: left out); Wilcoxon on 5 pairs."""
    for dataset, diff, seeds in (("sst5", 0.10, (1, 2, 3)), ("bionlp2004", -0.05, (1, 2, 3))):
        for seed in seeds:
            collapsed = dataset == "bionlp2004" and seed == 3
            fake_run(
                tmp_path,
                "ce",
                seed,
                dev=0.5,
                test=0.5,
                pred=GOLD,
                dataset=dataset,
                collapsed=collapsed,
                dev_curve=(0.4, 0.5),
            )
            fake_run(
                tmp_path, "hamr_full", seed, dev=0.5, test=0.5 + diff, pred=GOLD, dataset=dataset, dev_curve=(0.48, 0.5)
            )
    build_tables.main([str(tmp_path), "--out", str(tmp_path / "t"), "--figures", str(tmp_path / "f"), "--no-wandb"])
    overall = pd.read_csv(tmp_path / "t" / "overall.csv", dtype=str, keep_default_na=False).set_index("configuration")
    row = overall.loc["HAMR"]
    assert row["pairs"] == "5" and row["wins"] == "3/5" and row["mean difference"] == "+4.00"  # (3 x 10 - 2 x 5) / 5
    from scipy.stats import wilcoxon

    assert float(row["p (Wilcoxon)"]) == pytest.approx(wilcoxon([10, 10, 10, -5, -5]).pvalue, rel=1e-2)
    assert "HAMR + loss (dev)" not in overall.index  # no HAMR over another loss ran: no row
    convergence = pd.read_csv(tmp_path / "t" / "convergence.csv", dtype=str, keep_default_na=False)
    cells = convergence.set_index(["dataset", "configuration"])
    assert cells.loc[("SST-5", "CE"), "last-epoch dev gain"] == "+10.00"
    assert cells.loc[("SST-5", "HAMR"), "last-epoch dev gain"] == "+2.00"
    assert cells.loc[("BioNLP", "CE"), "collapsed"] == "1" and cells.loc[("BioNLP", "CE"), "steps"] == "189"
    assert cells.loc[("SST-5", "CE"), "dev below the best baseline"] == "+0.00"  # CE is the best baseline
    assert (tmp_path / "t" / "overall.md").read_text().startswith("## Does HAMR help here?")


def test_the_convergence_table_gives_each_cells_dev_gap_to_the_best_baseline(tmp_path, build_tables):
    """A cell still rising matters only if it could close its gap to the dev-chosen best baseline:
    CE (dev 60) is best over focal (50); HAMR's seeds at 55 and 45 sit 10 below it, its collapsed
    seed (dev 0) left out like everywhere else."""
    for seed in (1, 2):
        fake_run(tmp_path, "ce", seed, dev=0.6, test=0.5, pred=GOLD)
        fake_run(tmp_path, "focal", seed, dev=0.5, test=0.5, pred=GOLD)
        fake_run(tmp_path, "hamr_full", seed, dev=0.55 if seed == 1 else 0.45, test=0.5, pred=GOLD)
    fake_run(tmp_path, "hamr_full", 3, dev=0.0, test=0.1, pred=GOLD, collapsed=True)
    build_tables.main([str(tmp_path), "--out", str(tmp_path / "t"), "--figures", str(tmp_path / "f"), "--no-wandb"])
    convergence = pd.read_csv(tmp_path / "t" / "convergence.csv", dtype=str, keep_default_na=False)
    below = convergence.set_index("configuration")["dev below the best baseline"]
    assert below["CE"] == "+0.00" and below["Focal"] == "+10.00" and below["HAMR"] == "+10.00"


def test_the_caption_says_all_training_examples_where_no_cap_was_set():
    """The paper profile trains on full splits (max_train_examples null): the caption said
    "at most None training examples" (results/tables_paper, 2026-12-04)."""
    from hamr.tables import training_examples_note

    assert training_examples_note({None}) == "all training examples"
    assert training_examples_note({1000}) == "at most 1000 training examples (stratified)"
    assert training_examples_note({2000, 1000}) == "at most 1000, 2000 training examples (stratified)"
    assert training_examples_note({1000, None}) == "at most 1000 or all training examples (stratified)"


def test_the_caption_gives_each_tasks_epochs_the_warm_up_and_the_lr_range():
    """The converged profile trains classification 12 epochs and NER 8 with a 10% warm-up, each
    method at its own lr: the caption gave the first run's epochs ("8 epochs") for both tasks and
    no warm-up (results/table_cpu_converged, 2026-12-05)."""
    from hamr.tables import schedule_note

    def config(task, epochs, lr, warmup=0.1):
        trainer = {"epochs": epochs, "lr": lr, "warmup_ratio": warmup, "max_length": 64, "batch_size": 16}
        return {"dataset": {"task": task}, "trainer": trainer}

    converged = schedule_note([config("ner", 8, 2e-4), config("cls", 12, 5e-5), config("cls", 12, 1e-4)])
    assert converged == (
        "8 epochs (NER), 12 epochs (classification), a linear warm-up over 10% of the steps, then linear decay, "
        "max length 64, batch 16, lr 5e-05 to 0.0002 (each method's own)"
    )
    assert schedule_note([config("cls", 3, 1e-4, warmup=0.0), config("ner", 3, 1e-4, warmup=0.0)]) == (
        "3 epochs, no warm-up, max length 64, batch 16, lr 0.0001"
    )


def test_a_hamr_variant_no_run_used_has_no_column_and_no_ablation_rows(tmp_path, build_tables):
    """The converged profile runs hamr=default alone: its tables had a column of "missing" for the
    authors' per-step values and four ablation rows of "missing" (2026-12-05). A variant with one
    run, even a failed one, keeps its column."""
    for seed in (1, 2):
        fake_run(tmp_path, "ce", seed, dev=0.5, test=0.5, pred=GOLD)
        fake_run(tmp_path, "hamr_full", seed, dev=0.5, test=0.5, pred=GOLD)
    out = tmp_path / "t"
    build_tables.main([str(tmp_path), "--out", str(out), "--figures", str(tmp_path / "f"), "--no-wandb"])
    columns = pd.read_csv(out / "main.csv", nrows=0).columns
    assert "HAMR" in columns and not any("authors" in c for c in columns)
    assert not any("HAMR + loss" in c for c in columns)  # no HAMR over another loss ran either
    rows = pd.read_csv(out / "ablation.csv").configuration.tolist()
    assert rows == ["HAMR (full)", "HAMR w/o resampling", "HAMR w/o meta-weight", "HAMR w/o neighbourhood boost"]
    (tmp_path / "runs" / "sst5" / "hamr_authors_no_resampling" / "seed=1").mkdir(parents=True)
    (tmp_path / "runs" / "sst5" / "hamr_authors_no_resampling" / "seed=1" / "error.json").write_text("{}")
    build_tables.main([str(tmp_path), "--out", str(out), "--figures", str(tmp_path / "f"), "--no-wandb"])
    main = pd.read_csv(out / "main.csv", dtype=str).set_index("dataset")
    assert main.loc["SST-5", "HAMR (authors' per-step values)"] == "missing"
    assert "authors' - best baseline" in main.columns
    assert len(pd.read_csv(out / "ablation.csv")) == 8


def test_the_tables_summary_run_joins_its_runs_wandb_group(build_tables):
    """PROFILE=cpu builds the tables of runs whose group is table_cpu_converged: the summary run
    goes there, not to table_cpu (the first cpu profile's runs); mixed or unnamed runs fall back."""

    def runs(*names):
        return pd.DataFrame({"metrics": [{"config": {"experiment_name": n}} if n else {} for n in names]})

    assert build_tables.wandb_group(runs("table_cpu_converged", "table_cpu_converged", None), "cpu") == (
        "table_cpu_converged"
    )
    assert build_tables.wandb_group(runs("table_cpu", "table_smoke"), "cpu") == "table_cpu"
    assert build_tables.wandb_group(runs(), "smoke") == "table_smoke"
