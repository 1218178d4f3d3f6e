"""Accuracy and speed of HAMR's cheaper meta modes against the exact step.

    make bench-modes          # the training runs (skipped when finished), then this script
    python scripts/bench_modes.py --exact results/table_cpu --modes results/bench/modes

Reads the exact HAMR runs (``<exact>/runs/<dataset>/<method>/seed=*``, the `cpu` table's own
runs) and each mode's runs (``<modes>/<mode>/runs/<dataset>/<method>/seed=*``; method
``hamr_authors_full``, the hamr=authors preset these were measured with), and the step
benchmark (``results/bench/step_cpu.json``, the modes' step time / CE step time measured side by
side). A mode keeps the accuracy when its mean dev Macro-F1 is within one seed-std (ddof 1) of the
exact step's mean. Writes ``<modes>/modes.{md,json}``: per mode dev and test mean ± std, the step
ratios, and the cheapest mode that keeps the accuracy, with whether it is ≤ 1.3× CE.
"""

from hamr.benchmark.modes import main

if __name__ == "__main__":
    raise SystemExit(main())
