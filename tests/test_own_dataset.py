"""The README's own-dataset recipe, as written there, trains for both tasks (the YAML is read from
README.md itself, so recipe and test cannot drift apart)."""

from __future__ import annotations

import json
import re

import pytest

from tests.conftest import ROOT
from tests.test_train import train_cli

pytestmark = pytest.mark.slow


def readme_recipe() -> str:
    section = (ROOT / "README.md").read_text().split("## Your own dataset", 1)[1]
    return re.search(r"```yaml\n(.*?)```", section, re.S).group(1)


def write_data(folder, task: str) -> None:
    folder.mkdir(parents=True)
    words = {"a": "apple banana cherry", "b": "river mountain forest", "c": "engine wheel brake"}
    for split, n in (("train", 60), ("dev", 18), ("test", 18)):
        if task == "cls":  # the README's format: a JSON array of {"text", "label_text"}
            rows = [{"text": f"{words[c]} number {i}", "label_text": c} for i in range(n) for c in "abc"[i % 3]]
            (folder / f"{split}.json").write_text(json.dumps(rows))
        else:  # JSON lines of {"tokens", "ner_tags"} (IOB2)
            lines = [
                json.dumps(
                    {
                        "tokens": ["Anna", "met", "Bob", "in", "Paris", str(i)],
                        "ner_tags": ["B-PER", "O", "B-PER", "O", "B-LOC", "O"],
                    }
                )
                for i in range(n)
            ]
            (folder / f"{split}.json").write_text("\n".join(lines) + "\n")


@pytest.mark.parametrize("task", ["cls", "ner"])
def test_the_readmes_own_dataset_recipe_trains(tmp_path, task):
    recipe = readme_recipe()
    assert "_cls" in recipe and "# or _ner" in recipe and "name: my_data" in recipe
    data = tmp_path / "my_folder"
    write_data(data, task)
    yaml = re.sub(r"dir: \S+", f"dir: {data}", recipe.replace("_cls", "_ner") if task == "ner" else recipe)
    (tmp_path / "conf" / "dataset").mkdir(parents=True)
    (tmp_path / "conf" / "dataset" / "my_data.yaml").write_text(yaml)
    proc = train_cli(
        "dataset=my_data",
        "debug=smoke",
        "model=tiny_random",
        f"hydra.searchpath=[file://{tmp_path}/conf]",
        f"paths.results_dir={tmp_path}/results",
        f"paths.cache_dir={tmp_path}/cache",
        f"hydra.run.dir={tmp_path}/out",
        data_dir=tmp_path / "unused",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = json.loads((tmp_path / "results/runs/my_data/ce/seed=42/metrics.json").read_text())
    assert metrics["config"]["dataset"]["task"] == task and metrics["n_train"] == 60
