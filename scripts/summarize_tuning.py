"""Summarise a dev-only tuning study (the `tune=...` sweeps) into summary.md and chosen.json (and
hamr_loss.json where `tune=hamr_loss` ran: per dataset, the loss HAMR weights best on dev).

    python scripts/summarize_tuning.py results/tuning/table_cpu [--tuned]

Per dataset and method: every trial's mean dev Macro-F1 over its seeds, the chosen trial, the
runner-up and whether their difference exceeds the spread between seeds (hamr.tuning). Test
scores are not read. --tuned also prints the choices in the shape of a profile's `tuned:` block
(option -> method -> [classification, NER], 3 significant digits; README's config cheatsheet).
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

from hamr.results import atomic_write_bytes
from hamr.tuning import choices, load_trials, loss_choices, loss_markdown, rank_trials, summary_markdown, tuned_values


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("results", type=Path, help="the study's results folder (holding runs/)")
    parser.add_argument("--min-seeds", type=int, default=2, help="seeds a trial needs to be ranked")
    parser.add_argument("--tuned", action="store_true", help="also print the choices as a profile's tuned: block")
    args = parser.parse_args(argv)
    trials = load_trials(args.results)
    if trials.empty:
        raise SystemExit(f"error: no tuning runs under {args.results}/runs: run `make tune-baselines` first")
    ranked = rank_trials(trials, args.min_seeds)
    chosen = choices(ranked)
    header = (
        f"# Tuning on dev: {args.results}\n\nBuilt by `python scripts/summarize_tuning.py {args.results}` on "
        f"{time.strftime('%Y-%m-%d %H:%M %Z')} ({platform.machine()}), from {len(trials)} finished runs. "
        "Each trial is the mean dev Macro-F1 over its seeds; test was not read.\n\n"
    )
    losses = loss_choices(chosen)
    text = header + summary_markdown(ranked, chosen) + (f"\n{loss_markdown(losses)}" if losses else "")
    atomic_write_bytes(args.results / "summary.md", text.encode())
    atomic_write_bytes(args.results / "chosen.json", json.dumps(chosen, indent=2).encode())
    if losses:
        atomic_write_bytes(args.results / "hamr_loss.json", json.dumps(losses, indent=2).encode())
    print(text)
    if args.tuned:
        from omegaconf import OmegaConf

        print(
            f"\n# chosen on dev in {args.results}/chosen.json, 3 significant digits: [classification, NER] "
            "(null: not chosen yet)"
        )
        print(OmegaConf.to_yaml({"tuned": tuned_values(chosen, significant=3)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
