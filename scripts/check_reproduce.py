"""Rerun one committed run folder with today's code and compare it digit for digit with its record.

    python scripts/check_reproduce.py results/table_cpu/runs/mit_restaurant/ce/seed=1 [--data-dir DIR]

Exit status 0 when dev and test Macro-F1, the selected epoch, every epoch's train loss and dev
scores, and the test predictions are all equal; 1 (with the differences listed) otherwise.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

from hamr.reproduce import UntrustedRecord, differences, rerun


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("run_dir", type=Path, help="a run folder holding metrics.json and predictions.npz")
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=os.environ.get("HAMR_DATA_DIR"),
        help="where the datasets are (default: $HAMR_DATA_DIR, else the recorded folder)",
    )
    args = parser.parse_args(argv)
    started = time.time()
    with tempfile.TemporaryDirectory(prefix="hamr-reproduce-") as scratch:
        try:
            found = differences(args.run_dir, rerun(args.run_dir, Path(scratch), args.data_dir))
        except UntrustedRecord as err:
            raise SystemExit(f"error: {err}") from None
    where = f"{platform.machine()}, {time.strftime('%Y-%m-%d %H:%M %Z')}, {time.time() - started:.0f} s"
    if found:
        print(f"{args.run_dir}: NOT reproduced ({where}):\n  " + "\n  ".join(found))
        return 1
    print(f"{args.run_dir}: reproduced digit for digit (scores, every epoch's history, test predictions; {where})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
