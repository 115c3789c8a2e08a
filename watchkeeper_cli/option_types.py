"""argparse types of the numeric options: a value out of range stops the parser with a
line naming the option, before the command does anything (``replay --limit -5`` sent
every row but the last five, ``train --validation-fraction 1.5`` trained on a 50/50
split, ``retrain --max-iter -1`` queued a request that failed in scikit-learn).

Each type takes the option's text and returns its value or raises
:class:`argparse.ArgumentTypeError`, which argparse prints as
``error: argument --limit: must be …``.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable

from watchkeeper.settings import MAX_WAIT_SECONDS


def whole_number(*, at_least: int) -> Callable[[str], int]:
    """A whole number of at least ``at_least``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < at_least:
            raise argparse.ArgumentTypeError(
                f"must be a whole number of at least {at_least}, not {text!r}"
            )
        return value

    return parse


def number(
    *,
    above: float | None = None,
    at_least: float | None = None,
    below: float | None = None,
    at_most: float | None = None,
) -> Callable[[str], float]:
    """A finite number within the bounds given (``nan`` and ``inf`` are refused)."""
    bounds = [
        f"{word} {bound:g}"
        for word, bound in (
            ("above", above),
            ("at least", at_least),
            ("below", below),
            ("at most", at_most),
        )
        if bound is not None
    ]
    wanted = "a finite number" + (f" {' and '.join(bounds)}" if bounds else "")

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if (
            not math.isfinite(value)
            or (above is not None and value <= above)
            or (at_least is not None and value < at_least)
            or (below is not None and value >= below)
            or (at_most is not None and value > at_most)
        ):
            raise argparse.ArgumentTypeError(f"must be {wanted}, not {text!r}")
        return value

    return parse


positive_int = whole_number(at_least=1)
"""A count of rows, iterations or the like: 0 would mean nothing to do."""

fraction = number(above=0, below=1)
"""A share of something split in two: both parts non-empty."""

seconds = number(at_least=0, at_most=MAX_WAIT_SECONDS)
"""A wait or a delay: 0 for none, at most a day (what a sleep or socket takes)."""

positive_seconds = number(above=0, at_most=MAX_WAIT_SECONDS)
"""A timeout: 0 would give up at once."""


def rate(text: str) -> float:
    """Rows a second: 0 for no pause, else at least one a day (``1e-300`` was taken, and
    the second row waited 1e300 seconds)."""
    value = number(at_least=0)(text)
    if 0 < value < 1 / MAX_WAIT_SECONDS:
        raise argparse.ArgumentTypeError(
            f"must be 0 (no pause) or at least {1 / MAX_WAIT_SECONDS:.3g} (one row a day),"
            f" not {text!r}"
        )
    return value
