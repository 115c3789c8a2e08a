"""Moved to watchkeeper_cli/failures.py: the command line is the top-level
package above the core and the components, so that the core never imports them.
This file is to be deleted."""

raise ImportError(
    "watchkeeper.cli_failures moved to the watchkeeper_cli package; run `watchkeeper` or "
    "`python -m watchkeeper_cli`"
)
