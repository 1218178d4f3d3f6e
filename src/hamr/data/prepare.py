"""From a dataset config to checked, capped splits (downloading from the Hub when absent)."""

from __future__ import annotations

import logging
from pathlib import Path

from hamr.data.hub import download
from hamr.data.records import SPLITS, TaskData, load_task_data
from hamr.data.subset import cap_split

log = logging.getLogger(__name__)


def load_dataset_splits(ds, seed: int, strict_iob2: bool = False) -> TaskData:
    """Read ``ds.dir``'s train/dev/test (downloading them from ``ds.hub`` when none is there),
    check them, and apply the stratified ``max_train_examples``/``max_eval_examples`` caps."""
    folder = Path(ds.dir)
    files = {"train": ds.train_file, "dev": ds.dev_file, "test": ds.test_file}
    if not any((folder / files[s]).exists() for s in SPLITS):
        download(ds.hub, ds.task, folder, files)
    data = load_task_data(folder, ds.task, files, strict_iob2)
    data.train = cap_split(data.train, ds.task, ds.max_train_examples, seed)
    data.dev = cap_split(data.dev, ds.task, ds.max_eval_examples, seed)
    data.test = cap_split(data.test, ds.task, ds.max_eval_examples, seed)
    log.info("%s: %d train, %d dev, %d test examples; %d labels", ds.name, len(data.train),
             len(data.dev), len(data.test), len(data.label_names))
    return data
