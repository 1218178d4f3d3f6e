"""Summarise the runs under a results folder into one Markdown table.

    python scripts/summarize_runs.py results/cyclone_minilm --out results/cyclone_minilm/summary.md

One row per (dataset, method): mean over seeds of dev and test Macro-F1, micro F1, the test F1 of
the dataset's three rarest training classes, the selected epoch, seconds per epoch and training
examples per second, all read from each run's metrics.json.
"""

from hamr.summaries import main

if __name__ == "__main__":
    raise SystemExit(main())
