"""The command line of ``hamr.benchmark.step``: its docstring (``--help``) gives the usage."""

from hamr.benchmark.step import main

if __name__ == "__main__":
    raise SystemExit(main())
