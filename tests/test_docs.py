"""The README and docs/: every `python -m hamr.train` command in their code blocks composes and
passes start-up validation as written (each value of a sweep), and every relative link resolves."""

from __future__ import annotations

import re
import shlex

import pytest

from hamr.config import validate
from tests.conftest import ROOT

PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def commands() -> list[tuple[str, list[str]]]:
    found = []
    for page in PAGES:
        for block in re.findall(r"```bash\n(.*?)```", page.read_text(), re.S):
            for line in block.splitlines():
                line = line.split("  #")[0].strip()
                if line.startswith("python -m hamr.train"):
                    found.append((f"{page.name}: {line}", shlex.split(line)[3:]))
    return found


def first_values(args: list[str]) -> list[str]:
    """The overrides of one job of the command: the first value of each swept key, no flags, and
    Hydra's own settings (hydra.*) left to Hydra."""
    kept = []
    for arg in args:
        if arg.startswith("-") or arg == "job" or arg.startswith("hydra."):
            continue
        key, _, value = arg.partition("=")
        kept.append(f"{key}={value.split(',')[0]}" if "[" not in value else arg)
    return kept


@pytest.mark.parametrize("where,args", commands(), ids=[c[0] for c in commands()])
def test_every_documented_command_composes_and_validates(compose_cfg, tmp_path, where, args):
    overrides = first_values(args)
    if "dataset=my_data" in overrides:  # the reader's own dataset: the README's recipe, as written there
        from tests.test_own_dataset import readme_recipe

        (tmp_path / "dataset").mkdir()
        (tmp_path / "dataset" / "my_data.yaml").write_text(readme_recipe())
        overrides.append(f"hydra.searchpath=[file://{tmp_path}]")
    validate(compose_cfg(overrides))


def test_the_pages_have_commands_to_check():
    assert len(commands()) >= 15


@pytest.mark.parametrize("page", PAGES, ids=[p.name for p in PAGES])
def test_every_relative_link_resolves(page):
    for target in re.findall(r"\]\(([^)#]+)\)", page.read_text()):
        if "://" not in target:
            assert (page.parent / target).exists(), f"{page.name} links to {target}, which does not exist"


def test_results_hold_outputs_only():
    """results/ is what runs produce: no code (scripts live in scripts/)."""
    code = [p for p in (ROOT / "results").rglob("*") if p.suffix in (".py", ".sh")]
    assert code == []
