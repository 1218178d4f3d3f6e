"""The Makefile's grid is the one of hamr.paper, and its targets expand to the commands expected."""

from __future__ import annotations

import json
import re
import subprocess

from omegaconf import OmegaConf

from hamr import paper
from tests.conftest import ROOT


def make_variable(name: str, *assignments: str) -> list[str]:
    """The comma-separated list a Makefile variable expands to, as make itself expands it (with
    ``assignments`` such as ``PROFILE=cpu`` on its command line)."""
    printed = subprocess.run(
        [
            "make",
            "-s",
            "--no-print-directory",
            "--eval",
            f"print-variable: ; @echo '$({name})'",
            "print-variable",
            *assignments,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    return printed.split(",") if printed else []


def test_the_makefiles_lists_are_the_papers_grid():
    assert make_variable("MAIN_DATASETS") == list(paper.DATASETS)
    assert make_variable("ABLATION_DATASETS") == list(paper.ABLATION_DATASETS)
    assert make_variable("BASELINES") == list(paper.BASELINES)
    assert make_variable("ABLATIONS") == [a for a in paper.ABLATIONS if a != "full"]
    assert make_variable("HAMR_LOSSES_paper") == [b for b in paper.BASELINES if b != "ce"]


def test_the_task_lists_split_the_main_datasets_by_their_configs_task(compose_cfg):
    ner, classification = make_variable("NER_DATASETS"), make_variable("CLASSIFICATION_DATASETS")
    assert ner + classification == list(paper.DATASETS)
    task = {name: compose_cfg([f"dataset={name}"]).dataset.task for name in paper.DATASETS}
    assert {task[d] for d in ner} == {"ner"} and {task[d] for d in classification} == {"cls"}


def test_the_paper_and_smoke_grids_run_hamr_over_other_losses_and_the_first_cpu_grid_does_not():
    def dry(profile: str) -> str:
        return subprocess.run(
            ["make", "-n", "reproduce-table", f"PROFILE={profile}"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout

    assert "method=hamr hamr=default ablation=full baseline_loss=focal,dice,icf" in dry("paper")
    assert "method=hamr hamr=default ablation=full baseline_loss=focal " in dry("smoke")
    assert "ablation=full baseline_loss=" not in dry("cpu_short")


def test_the_tuning_target_tunes_every_baseline():
    dry = subprocess.run(
        ["make", "-n", "tune-baselines", "TUNE_DATASETS=sst5"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    assert re.search(r"for loss in ce focal dice icf; do", dry)


def dry_run(target: str, *variables: str) -> str:
    return subprocess.run(
        ["make", "-n", target, *variables], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout


def test_the_cpu_profile_is_the_converged_grid_five_seeds_three_in_the_ablations_and_hamr_default_alone():
    converged = dry_run("reproduce-table")  # PROFILE=cpu, the default
    sweeps = [line for line in converged.splitlines() if "hamr.train" in line]
    main, hamr, ablations = sweeps[0], sweeps[1], sweeps[-1]  # between them: HAMR + loss, once chosen
    assert "trainer.seed=1,2,3,4,5 method=baseline baseline_loss=ce,focal,dice,icf" in main
    assert "trainer.seed=1,2,3,4,5 method=hamr hamr=default ablation=full" in hamr
    assert "trainer.seed=1,2,3 method=hamr hamr=default ablation=no_resampling" in ablations
    assert "experiment=table_cpu_converged " in main
    assert "paths.results_dir=" + str(ROOT / "results" / "table_cpu_converged") in main
    assert "--experiment table_cpu_converged" in converged and "results/tuning/table_cpu_converged " in converged
    assert "--out results/tables --figures results/figures --profile cpu" in converged
    # the first cpu profile keeps its grid: 3 seeds everywhere and the authors' preset beside HAMR's
    first = dry_run("reproduce-table", "PROFILE=cpu_short")
    assert first.count("trainer.seed=1,2,3 ") == 3 and first.count("hamr=default,authors") == 2
    assert "experiment=table_cpu " in first
    assert "paths.results_dir=" + str(ROOT / "results" / "table_cpu") + " " in first
    assert "--out results/tables_cpu_short --figures results/figures_cpu_short" in first


def test_the_cpu_profile_tunes_every_methods_lr_in_the_tables_meta_mode():
    baselines = dry_run("tune-baselines", "TUNE_DATASETS=sst5")
    assert "echo lr_cpu_converged || echo lr_cpu_converged" in baselines  # focal too: its gamma is kept
    hamr = dry_run("tune-hamr", "TUNE_DATASETS=sst5")
    assert "tune=lr_cpu_converged method=hamr dataset=$ds" in hamr and "hamr.meta.every" not in hamr
    assert "tune=hamr hydra.sweeper.n_trials=8 hamr.meta.every=4" in dry_run("tune-hamr", "PROFILE=cpu_short")
    loss = dry_run("tune-hamr-loss")
    assert "experiment=table_cpu_converged" in loss and "tune=hamr_loss dataset=$ds" in loss
    assert "paths.results_dir=" + str(ROOT / "results" / "tuning" / "table_cpu_converged") in loss
    assert "paths.results_dir=" + str(ROOT / "results" / "tuning" / "table_cpu") + " " in dry_run(
        "tune-hamr", "PROFILE=cpu_short"
    )


def test_hamr_over_a_loss_can_take_a_different_loss_per_task():
    losses = ["HAMR_LOSSES_CLASSIFICATION_cpu=icf", "HAMR_LOSSES_NER_cpu=focal"]
    swept = re.findall(
        r"ablation=full baseline_loss=(\S+) dataset=(\S+)", dry_run("reproduce-table", "PROFILE=cpu", *losses)
    )
    assert swept == [
        ("icf", "hurricane_irma_2017,cyclone_idai_2019,sst5"),
        ("focal", "bionlp2004,tweetner7_2020,mit_restaurant"),
    ]
    unset = ["HAMR_LOSSES_CLASSIFICATION_cpu=", "HAMR_LOSSES_NER_cpu="]
    assert "ablation=full baseline_loss=" not in dry_run("reproduce-table", "PROFILE=cpu", *unset)


def test_the_converged_grids_hamr_losses_are_its_studys_choices_and_none_before():
    """The converged grid (PROFILE=cpu) runs HAMR over the loss that results/tuning/table_cpu_converged/hamr_loss.json
    chose per task, once that study has all its losses (conf/tune/hamr_loss), and over none until
    then: a loss typed by hand, or a grid started before the study, fails here."""
    n_losses = OmegaConf.load(ROOT / "conf" / "tune" / "hamr_loss.yaml").hydra.sweeper.n_trials
    path = ROOT / "results" / "tuning" / "table_cpu_converged" / "hamr_loss.json"
    studies = [c for c in (json.loads(path.read_text()) if path.is_file() else []) if c["losses"] == n_losses]
    for variable, task in (("HAMR_LOSSES_CLASSIFICATION", "cls"), ("HAMR_LOSSES_NER", "ner")):
        expected = [c["loss"] for c in studies if c["task"] == task]
        assert make_variable(variable, "PROFILE=cpu") == expected, variable
