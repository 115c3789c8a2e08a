"""``python -m watchkeeper_cli``: the same as the ``watchkeeper`` script, for processes
that start the command line with a given interpreter (tests, ``make run``)."""

from watchkeeper_cli.main import main

raise SystemExit(main())
