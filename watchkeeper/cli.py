"""Moved to watchkeeper_cli (its main and commands/): the command line is the top-level
package above the core and the components, so that the core never imports them.
This file is to be deleted."""

raise ImportError(
    "watchkeeper.cli moved to the watchkeeper_cli package; run `watchkeeper` or "
    "`python -m watchkeeper_cli`"
)
