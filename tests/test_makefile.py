"""The Makefile's grid is the one of hamr.paper, and its targets expand to the commands expected."""

from __future__ import annotations

import re
import subprocess

from hamr import paper
from tests.conftest import ROOT


def make_variable(name: str) -> list[str]:
    text = (ROOT / "Makefile").read_text()
    return re.search(rf"^{name} := (.*)$", text, re.M).group(1).strip().split(",")


def test_the_makefiles_lists_are_the_papers_grid():
    assert make_variable("MAIN_DATASETS") == list(paper.DATASETS)
    assert make_variable("ABLATION_DATASETS") == list(paper.ABLATION_DATASETS)
    assert make_variable("BASELINES") == list(paper.BASELINES)
    assert make_variable("ABLATIONS") == [a for a in paper.ABLATIONS if a != "full"]
    assert make_variable("HAMR_LOSSES_paper") == [b for b in paper.BASELINES if b != "ce"]


def test_the_paper_and_smoke_grids_run_hamr_over_other_losses_and_the_cpu_grid_does_not_yet():
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
    assert "ablation=full baseline_loss=" not in dry("cpu")


def test_the_tuning_target_tunes_every_baseline():
    dry = subprocess.run(
        ["make", "-n", "tune-baselines", "TUNE_DATASETS=sst5"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    assert re.search(r"for loss in ce focal dice icf; do", dry)
