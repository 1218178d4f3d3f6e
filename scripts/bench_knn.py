"""The command line of ``hamr.benchmark.knn``: its docstring (``--help``) gives the usage."""

from hamr.benchmark.knn import main

if __name__ == "__main__":
    raise SystemExit(main())
