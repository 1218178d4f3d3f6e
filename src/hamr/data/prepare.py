"""From a dataset config to checked, capped splits.

Where a dataset's files are looked for, in this order:
1. ``dataset.dir`` (``<paths.data_dir>/<name>``; ``paths.data_dir`` is ``$HAMR_DATA_DIR`` or ``data/``);
2. the copy shipped inside the package (``hamr/data/shipped/<name>``: Cyclone-Idai 2019 only);
3. the Hugging Face Hub (``dataset.hub``), downloaded into ``dataset.dir``.
"""

from __future__ import annotations

import logging
from pathlib import Path

from hamr.data.hub import download
from hamr.data.records import SPLITS, TaskData, load_task_data
from hamr.data.subset import cap_split

log = logging.getLogger(__name__)
SHIPPED = Path(__file__).parent / "shipped"  # datasets that ship with the package (with their licences)


def locate(ds) -> Path:
    """The folder to read ``ds``'s splits from (see the module docstring); downloads from the
    Hub when neither ``ds.dir`` nor the shipped copies have it. Raises DataError (one line) when
    the download fails."""
    folder = Path(ds.dir)
    files = {"train": ds.train_file, "dev": ds.dev_file, "test": ds.test_file}
    if any((folder / files[s]).exists() for s in SPLITS):
        return folder
    shipped = SHIPPED / ds.name
    if all((shipped / files[s]).is_file() for s in SPLITS):
        log.info("%s: no files in %s; using the copy shipped with hamr (%s, CC BY-NC-SA 4.0)", ds.name, folder, shipped)
        return shipped
    log.info("%s: no files in %s and none shipped with hamr; downloading from the Hugging Face Hub", ds.name, folder)
    download(ds.hub, ds.task, folder, files, ds.name)
    return folder


def load_dataset_splits(ds, seed: int, strict_iob2: bool = False) -> TaskData:
    """Read ``ds``'s train/dev/test (from :func:`locate`), check them, and apply the stratified
    ``max_train_examples``/``max_eval_examples`` caps."""
    files = {"train": ds.train_file, "dev": ds.dev_file, "test": ds.test_file}
    data = load_task_data(locate(ds), ds.task, files, strict_iob2)
    data.train = cap_split(data.train, ds.task, ds.max_train_examples, seed)
    data.dev = cap_split(data.dev, ds.task, ds.max_eval_examples, seed)
    data.test = cap_split(data.test, ds.task, ds.max_eval_examples, seed)
    log.info(
        "%s: %d train, %d dev, %d test examples; %d labels",
        ds.name,
        len(data.train),
        len(data.dev),
        len(data.test),
        len(data.label_names),
    )
    return data
