"""The command line of ``hamr.benchmark.modes``: its docstring (``--help``) gives the usage."""

from hamr.benchmark.modes import main

if __name__ == "__main__":
    raise SystemExit(main())
