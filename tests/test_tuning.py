"""hamr.tuning on synthetic tuning folders whose every number is known in advance."""

import json
import math

import pytest

from hamr.results import atomic_write_json
from hamr.tuning import (
    choices,
    load_trials,
    loss_choices,
    parse_overrides,
    rank_trials,
    summary_markdown,
    tuned_values,
)
from tests.conftest import ROOT


def fake_trial(
    results, lr: str, devs: list[float], selected=(3, 3), method="ce", dataset="sst5", history=None, collapsed_seeds=()
):
    folder = results / "runs" / dataset / method / f"baseline_loss={method},dataset={dataset},trainer.lr={lr}"
    for seed, (dev, epoch) in enumerate(zip(devs, selected), start=1):
        per_class = {"a": 0.0, "b": 0.0, "c": dev} if seed in collapsed_seeds else {"a": dev, "b": dev, "c": 0.0}
        atomic_write_json(
            folder / f"seed={seed}" / "metrics.json",
            {
                "dataset": dataset,
                "method": method,
                "seed": seed,
                "dev_macro_f1": dev,
                "selected_epoch": epoch,
                "dev": {"per_class_f1": per_class},
                "wall_seconds": 1800.0,
                "config": {"trainer": {"epochs": 3}, "dataset": {"task": "ner" if dataset == "bionlp2004" else "cls"}},
                "history": [{"epoch": 1}, {"epoch": 2, **(history or {}), "weight_p90": 1.0 + seed}] if history else [],
            },
        )


def test_trials_are_ranked_by_mean_dev_and_the_margin_is_set_against_the_seed_spread(tmp_path):
    fake_trial(tmp_path, "1e-4", [0.50, 0.54])  # mean .52, std .028
    fake_trial(tmp_path, "2e-4", [0.60, 0.62], selected=(2, 3))  # mean .61, std .014: chosen
    fake_trial(tmp_path, "3e-4", [0.70])  # one seed only: listed, not ranked
    ranked = rank_trials(load_trials(tmp_path))
    assert ranked.trial.tolist() == ["trainer.lr=2e-4", "trainer.lr=1e-4", "trainer.lr=3e-4"]
    assert ranked["rank"].tolist()[:2] == [1.0, 2.0] and math.isnan(ranked["rank"].iloc[2])
    assert ranked.last_epoch_best.tolist() == [1, 2, 1] and ranked.hours.tolist() == [1.0, 1.0, 0.5]
    (chosen,) = choices(ranked)
    assert chosen["values"] == {"trainer.lr": "2e-4"} and chosen["runner_up"] == "trainer.lr=1e-4"
    assert chosen["margin"] == pytest.approx(0.09)
    assert chosen["seed_spread"] == pytest.approx((0.02 * 2**0.5 / 2 + 0.04 * 2**0.5 / 2) / 2)  # mean of the stds
    assert chosen["margin_exceeds_spread"]


def test_a_trial_with_a_collapsed_seed_is_listed_but_never_chosen(tmp_path):
    fake_trial(tmp_path, "1e-4", [0.50, 0.52])
    fake_trial(tmp_path, "8e-4", [0.70, 0.60], collapsed_seeds=(2,))  # best mean dev, but seed 2 collapsed
    ranked = rank_trials(load_trials(tmp_path))
    assert ranked.set_index("trial").collapsed.to_dict() == {"trainer.lr=1e-4": 0, "trainer.lr=8e-4": 1}
    (chosen,) = choices(ranked)
    assert chosen["values"] == {"trainer.lr": "1e-4"} and chosen["trials"] == 1


def test_a_study_of_one_trial_has_no_margin_and_its_records_are_strict_json(tmp_path):
    """A study with one ranked trial so far (a HAMR + loss study with one loss landed) has no
    runner-up: margin and spread are null, not Python's NaN token (which strict JSON readers
    refuse), and the Markdown says "-" (results/tuning/table_cpu_converged, 2026-12-04)."""
    fake_trial(tmp_path, "1e-4", [0.50, 0.54])
    ranked = rank_trials(load_trials(tmp_path))
    (chosen,) = choices(ranked)
    assert chosen["runner_up"] is None and chosen["margin"] is None and not chosen["margin_exceeds_spread"]
    json.dumps(chosen, allow_nan=False)  # raises on a NaN
    assert "| `None` | - | 2.8 | no | 1 |" in summary_markdown(ranked, [chosen])


def test_a_margin_inside_the_seed_spread_is_flagged(tmp_path):
    fake_trial(tmp_path, "1e-4", [0.40, 0.60])  # mean .50, std .14
    fake_trial(tmp_path, "2e-4", [0.45, 0.57])  # mean .51
    (chosen,) = choices(rank_trials(load_trials(tmp_path)))
    assert chosen["values"] == {"trainer.lr": "2e-4"} and not chosen["margin_exceeds_spread"]


def test_no_test_score_is_read(tmp_path):
    fake_trial(tmp_path, "1e-4", [0.5, 0.5])
    assert "test" not in " ".join(load_trials(tmp_path).columns)
    assert parse_overrides("a=1,b.c=x=y") == {"a": "1", "b.c": "x=y"}


def test_the_script_writes_summary_and_choices(tmp_path):
    import subprocess
    import sys

    from tests.conftest import ROOT

    fake_trial(tmp_path, "1e-4", [0.50, 0.54])
    fake_trial(tmp_path, "2e-4", [0.60, 0.62])
    subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "summarize_tuning.py"), str(tmp_path)], check=True, capture_output=True
    )
    chosen = json.loads((tmp_path / "chosen.json").read_text())
    assert [c["chosen"] for c in chosen] == ["trainer.lr=2e-4"]
    assert "| sst5 | ce | `trainer.lr=2e-4` | 61.0 ± 1.4 |" in (tmp_path / "summary.md").read_text()


def test_hamr_plus_loss_chooses_per_dataset_the_loss_hamr_weights_best_on_dev(tmp_path):
    import subprocess
    import sys

    fake_trial(tmp_path, "1e-4", [0.50, 0.54], method="hamr-focal_full")  # mean .52
    fake_trial(tmp_path, "1e-4", [0.60, 0.62], method="hamr-icf_full")  # mean .61: chosen
    fake_trial(tmp_path, "1e-4", [0.70, 0.60], method="hamr-dice_full", collapsed_seeds=(2,))  # best, collapsed
    fake_trial(tmp_path, "1e-4", [0.40, 0.42], method="hamr-dice_full", dataset="bionlp2004")  # the only NER one
    fake_trial(tmp_path, "2e-4", [0.90, 0.90], method="ce")  # a baseline's study: not a loss for HAMR
    losses = {c["dataset"]: c for c in loss_choices(choices(rank_trials(load_trials(tmp_path))))}
    assert {d: (c["loss"], c["runner_up"], c["losses"]) for d, c in losses.items()} == {
        "sst5": ("icf", "focal", 2),  # dice's collapsed trial is no choice
        "bionlp2004": ("dice", None, 1),
    }
    assert losses["sst5"]["margin"] == pytest.approx(0.09) and losses["sst5"]["task"] == "cls"
    subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "summarize_tuning.py"), str(tmp_path)], check=True, capture_output=True
    )
    assert [c["loss"] for c in json.loads((tmp_path / "hamr_loss.json").read_text())] == ["dice", "icf"]
    assert "| sst5 | icf | 61.0 ± 1.4 | focal | +9.0 |" in (tmp_path / "summary.md").read_text()


def test_hamr_trials_report_whether_their_modules_moved(tmp_path):
    fake_trial(tmp_path, "1e-4", [0.5, 0.6], method="hamr_full", history={"h_max_over_mean": 2.0, "max_share_gap": 0.1})
    fake_trial(tmp_path, "1e-4", [0.5, 0.6], method="ce")  # no diagnostics: not in that table
    fake_trial(tmp_path, "1e-4", [0.5, 0.6], method="hamr-dice_full", history={"h_max_over_mean": 3.0})  # HAMR + loss
    ranked = rank_trials(load_trials(tmp_path))
    hamr = ranked[ranked.method == "hamr_full"].iloc[0]
    assert (
        hamr["weight_p90"] == pytest.approx(2.5) and hamr["h_max_over_mean"] == 2.0
    )  # the last epoch's, mean of seeds
    text = summary_markdown(ranked, choices(ranked))
    table = text.split("did each module move?")[1]
    assert "| sst5 | hamr_full | `trainer.lr=1e-4` | - | 2.50 | 2.00 | - | 0.10 |" in table and "| ce |" not in table
    assert (
        "| sst5 | hamr-dice_full | `trainer.lr=1e-4` | - | 2.50 | 3.00 |" in table
    )  # a HAMR + loss trial names its loss


def test_the_choices_become_a_profiles_tuned_block_by_method_and_task(tmp_path):
    fake_trial(tmp_path, "2e-4", [0.60, 0.62], method="focal", dataset="hurricane_irma_2017")  # classification
    fake_trial(tmp_path, "1e-4", [0.50, 0.52], method="focal", dataset="hurricane_irma_2017")
    fake_trial(tmp_path, "5e-4", [0.40, 0.42], method="focal", dataset="bionlp2004")  # NER
    fake_trial(tmp_path, "3e-4", [0.60, 0.60], method="icf", dataset="hurricane_irma_2017")  # ICF: no NER study yet
    chosen = choices(rank_trials(load_trials(tmp_path)))
    assert tuned_values(chosen) == {"lr": {"focal": [2e-4, 5e-4], "icf": [3e-4, None]}}
    hamr = {
        "dataset": "x",
        "task": "ner",
        "method": "hamr_full",
        "values": {"hamr.meta.every": "4", "hamr.tau": "1.5", "trainer.lr": "1e-4"},
    }
    assert tuned_values([hamr]) == {
        "tau": {"hamr": [None, 1.5]},
        "lr": {"hamr": [None, 1e-4]},
    }  # not the search's every
    with pytest.raises(ValueError, match="two ner studies chose hamr.tau for hamr"):
        tuned_values([hamr, {**hamr, "dataset": "y"}])
    long = {**hamr, "values": {"hamr.tau": "1.9552829151743403", "trainer.lr": "0.0004042358248277154"}}
    assert tuned_values([long], significant=3) == {"tau": {"hamr": [None, 1.96]}, "lr": {"hamr": [None, 4.04e-4]}}


def first_study_choices() -> dict:
    """results/tuning/table_cpu/chosen.json as a profile's tuned block (3 significant digits)."""
    return tuned_values(
        json.loads((ROOT / "results" / "tuning" / "table_cpu" / "chosen.json").read_text()), significant=3
    )


def test_the_cpu_profiles_tuned_values_are_the_committed_dev_choices():
    """conf/experiment/table_cpu.yaml's `tuned` block holds results/tuning/table_cpu/chosen.json's
    choices (3 significant digits), every one of them: an entry typed by hand, or a study rerun or
    added without updating the profile, fails here."""
    from omegaconf import OmegaConf

    profile = OmegaConf.to_container(OmegaConf.load(ROOT / "conf" / "experiment" / "table_cpu.yaml"))["tuned"]
    assert profile == first_study_choices()


def test_the_converged_profile_keeps_the_first_studys_choices_of_everything_but_the_lr():
    """conf/experiment/table_cpu_converged.yaml re-tunes only the learning rate; focal's gamma and
    HAMR's knobs are results/tuning/table_cpu/chosen.json's, unchanged (their units carry across
    budgets): a kept value retyped by hand, or the first study rerun, fails here."""
    from omegaconf import OmegaConf

    path = ROOT / "conf" / "experiment" / "table_cpu_converged.yaml"
    converged = OmegaConf.to_container(OmegaConf.load(path))["tuned"]
    first = first_study_choices()
    kept = {option: values for option, values in converged.items() if option != "lr"}
    assert kept == {option: values for option, values in first.items() if option != "lr"}


def test_the_converged_profiles_learning_rates_are_its_studys_choices():
    """conf/experiment/table_cpu_converged.yaml's tuned.lr holds, for every method whose lr study in
    results/tuning/table_cpu_converged is complete on both tasks (every trial of conf/tune/lr_cpu_converged
    ranked), that study's choice, and nothing else: an lr typed by hand, a finished study left out, or
    a half-finished one let in, fails here."""
    from omegaconf import OmegaConf

    n_trials = OmegaConf.load(ROOT / "conf" / "tune" / "lr_cpu_converged.yaml").hydra.sweeper.n_trials
    chosen = json.loads((ROOT / "results" / "tuning" / "table_cpu_converged" / "chosen.json").read_text())
    finished = [c for c in chosen if c["trials"] == n_trials and set(c["values"]) == {"trainer.lr"}]
    both_tasks = {
        m
        for m in {c["method"] for c in finished}
        if {c["task"] for c in finished if c["method"] == m} == {"cls", "ner"}
    }
    expected = tuned_values([c for c in finished if c["method"] in both_tasks], significant=3)["lr"]
    profile = OmegaConf.to_container(OmegaConf.load(ROOT / "conf" / "experiment" / "table_cpu_converged.yaml"))
    assert profile["tuned"]["lr"] == expected
