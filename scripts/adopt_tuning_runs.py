"""Copy a tuning study's runs at the chosen values into the grid's run folders, so the grid skips them.

    python scripts/adopt_tuning_runs.py results/tuning/table_cpu_converged results/table_cpu_converged \
        --experiment table_cpu_converged [--hamr-losses cls=dice --hamr-losses ner=focal] [--dry-run]

A trial at the value the profile's `tuned` block holds has the configuration of a grid cell's run
of the same seed (the test by which a sweep skips a finished run, hamr.runs.result_relevant): it is
copied, its record marked `adopted_from`. A HAMR + loss trial is copied only for a loss the grid
runs HAMR over (`--hamr-losses`, per task). Every other run is listed with why it is not. Run it after
the profile's `tuned` block carries the study's choices (make reproduce-table does, first).
"""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path

from hamr.adopt import adopt, plan, project_root


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("study", type=Path, help="the tuning study's results folder (holding runs/)")
    parser.add_argument("results", type=Path, help="the grid's results folder (paths.results_dir of the grid)")
    parser.add_argument(
        "--experiment", required=True, help="the grid's Hydra preset (experiment=<name>), e.g. table_cpu_converged"
    )
    parser.add_argument(
        "--hamr-losses",
        action="append",
        default=[],
        metavar="TASK=LOSSES",
        help="the losses the grid runs HAMR over, per task: cls=dice, ner=focal,icf (none: ner=)",
    )
    parser.add_argument("--dry-run", action="store_true", help="list what would be copied, copy nothing")
    args = parser.parse_args(argv)
    if not (args.study / "runs").is_dir():
        raise SystemExit(f"error: {args.study}/runs does not exist: name a tuning study's results folder")
    hamr_losses = {}
    for item in args.hamr_losses:
        task, _, losses = item.partition("=")
        if task not in ("cls", "ner") or not _:
            raise SystemExit(f"error: --hamr-losses {item!r}: write TASK=LOSSES, TASK cls or ner (e.g. cls=dice)")
        hamr_losses[task] = [loss for loss in losses.split(",") if loss]
    adoptions = plan(args.study, args.results, args.experiment, hamr_losses=hamr_losses)
    here = Path.cwd()
    root = project_root(args.results) or here  # the records name the study relative to the grid's project
    reasons = Counter()
    for a in adoptions:
        if a.reason is None:
            if not args.dry_run and adopt(a, root=root) is None:
                reasons["the grid finished meanwhile"] += 1
                continue
            target = a.target.relative_to(here) if a.target.is_relative_to(here) else a.target
            print(f"{'would adopt' if args.dry_run else 'adopted'}: {a.source} -> {target}")
        reasons[a.reason or ("to adopt" if args.dry_run else "adopted")] += 1
    print(f"{len(adoptions)} tuning runs: " + "; ".join(f"{n} {why}" for why, n in sorted(reasons.items())))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
