"""The command line of ``hamr.summaries``: its docstring (``--help``) gives the usage."""

from hamr.summaries import main

if __name__ == "__main__":
    raise SystemExit(main())
