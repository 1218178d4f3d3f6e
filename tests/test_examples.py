"""examples/: each plain Trainer script and its HAMR twin differ by at most 5 lines, and all four
run offline (MiniLM, the shipped Cyclone-Idai, an NER folder of the authors' layout)."""

from __future__ import annotations

import difflib
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAIRS = {"cls": ("trainer_cls.py", "trainer_cls_hamr.py"), "ner": ("trainer_ner.py", "trainer_ner_hamr.py")}


def changed_lines(plain: str, hamr: str) -> list[str]:
    a = (ROOT / "examples" / plain).read_text().splitlines()
    b = (ROOT / "examples" / hamr).read_text().splitlines()
    diff = difflib.unified_diff(a, b, lineterm="", n=0)
    return [line for line in diff if line[:1] in "+-" and not line.startswith(("+++", "---"))]


@pytest.mark.parametrize("task", sorted(PAIRS))
def test_the_hamr_script_differs_from_the_plain_one_by_at_most_five_lines(task):
    changes = changed_lines(*PAIRS[task])
    assert 0 < len(changes) <= 5, "\n".join(changes)
    assert any("hamr.hf import HamrTrainer" in line for line in changes if line.startswith("+"))


def run_example(script: str, *args: str, tmp_path: Path) -> str:
    command = [sys.executable, str(ROOT / "examples" / script), *args, "--epochs", "1", "--output-dir", str(tmp_path)]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


@pytest.mark.slow
@pytest.mark.parametrize("script", [name for pair in PAIRS.values() for name in pair])
def test_an_example_trains_and_scores_the_test_split(script, tmp_path, data_dir):
    data = [] if script.startswith("trainer_cls") else [str(data_dir / "bionlp2004")]
    out = run_example(script, *data, "--max-train-examples", "48", "--max-eval-examples", "32", tmp_path=tmp_path)
    assert "'test_macro_f1'" in out
    assert ("'hamr/weight_curve_spread'" in out) == script.endswith("_hamr.py")
