"""Build the paper's tables and figures from finished runs (the end of `make reproduce-table`).

    python scripts/build_tables.py results/table_cpu_converged --out results/tables --figures results/figures \
        --profile cpu

What is written, and how, is :mod:`hamr.tables`.
"""

from hamr.tables import main

if __name__ == "__main__":
    raise SystemExit(main())
