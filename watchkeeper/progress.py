"""Progress for a person at a terminal: a bar (count, rate, ETA) for a loop over many
items, numbered stages for a job made of a few long steps.

Both write to standard error, and only when it is a terminal: a pipe, a log file, a
container's output or a test sees nothing, so the commands' standard output (their
result) stays clean and machine-readable. Pass ``enabled`` to decide explicitly.

Usage::

    with progress_bar(total=len(rows), description="replay", unit="sale") as bar:
        for row in rows:
            send(row)
            bar.advance()
            bar.note(rejected=0)

    stages = Stages(3)
    with stages.stage("loading the data"):
        ...
    with stages.stage("training"):
        ...
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TextIO

from tqdm import tqdm


def on_terminal(stream: TextIO | None = None) -> bool:
    """Whether ``stream`` (standard error by default) is a terminal a person watches."""
    stream = sys.stderr if stream is None else stream
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


class Bar:
    """A running progress bar; a quiet one when progress is not shown."""

    def __init__(self, bar: tqdm | None) -> None:
        self._bar = bar

    @property
    def shown(self) -> bool:
        return self._bar is not None

    def advance(self, count: int = 1) -> None:
        """``count`` more items are done."""
        if self._bar is not None and count:
            self._bar.update(count)

    def advance_to(self, done: int) -> None:
        """``done`` items in all are done (for callers that keep their own count)."""
        if self._bar is not None and done > self._bar.n:
            self._bar.update(done - self._bar.n)

    def note(self, **values: object) -> None:
        """Short figures shown after the bar, e.g. ``note(rejected=3)``."""
        if self._bar is not None:
            self._bar.set_postfix(values, refresh=False)


@contextmanager
def progress_bar(
    total: int | None,
    description: str,
    *,
    unit: str = "item",
    stream: TextIO | None = None,
    enabled: bool | None = None,
) -> Iterator[Bar]:
    """A bar with count, rate and time remaining while the block runs. The finished bar
    stays on screen; a bar interrupted by an exception is wiped, so that the error line
    that follows is not mixed with it."""
    stream = sys.stderr if stream is None else stream
    if not (on_terminal(stream) if enabled is None else enabled):
        yield Bar(None)
        return
    bar = tqdm(
        total=total,
        desc=description,
        unit=f" {unit}",
        file=stream,
        # Follow the terminal's width; a pseudo-terminal that reports none gets 80.
        dynamic_ncols=_columns(stream) > 0,
        ncols=None if _columns(stream) > 0 else 80,
        mininterval=0.2,
        smoothing=0.1,  # the rate over the last stretch, not since the start
    )
    try:
        yield Bar(bar)
    except BaseException:
        bar.leave = False
        raise
    finally:
        bar.close()


class Stages:
    """Numbered stages of a job, one line each: ``[2/3] training … 14.8 s``.

    A stage's line is written when it starts (so a person sees what the job is doing
    during a long step) and completed with its duration when it ends, or with
    ``failed`` when it raises."""

    def __init__(
        self,
        count: int,
        *,
        stream: TextIO | None = None,
        enabled: bool | None = None,
    ) -> None:
        self.count = count
        self._stream = sys.stderr if stream is None else stream
        self.shown = on_terminal(self._stream) if enabled is None else enabled
        self._number = 0

    @classmethod
    def quiet(cls) -> Stages:
        """Stages that show nothing: the default for library code called without a
        person watching."""
        return cls(0, enabled=False)

    @contextmanager
    def stage(self, description: str) -> Iterator[None]:
        self._number += 1
        if not self.shown:
            yield
            return
        total = max(self.count, self._number)
        self._write(f"[{self._number}/{total}] {description} …")
        started = time.monotonic()
        try:
            yield
        except BaseException:
            self._write(f" failed after {_duration(time.monotonic() - started)}\n")
            raise
        self._write(f" {_duration(time.monotonic() - started)}\n")

    def _write(self, text: str) -> None:
        self._stream.write(text)
        self._stream.flush()


def _columns(stream: TextIO) -> int:
    try:
        return os.get_terminal_size(stream.fileno()).columns
    except (AttributeError, OSError, ValueError):
        return 0


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, seconds = divmod(round(seconds), 60)
    return f"{minutes} min {seconds:02d} s"
