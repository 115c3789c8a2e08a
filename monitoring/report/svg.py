"""A few SVG primitives for the report's charts: linear scales, readable ticks for
numbers and times, and a small element builder that escapes everything it writes.

Hand-written rather than a plotting library: the charts are simple, the output is
text that sits inline in the page (no images to encode, nothing fetched at view
time), and the package gains no dependency.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from monitoring.report.text import html_text

WIDTH = 960
"""The viewBox width every chart shares, so that time axes line up on the page."""
LEFT, RIGHT = 150, 24
"""Margins: the left one holds lane and axis labels."""


def attr(value: object) -> str:
    return html_text(value)


@dataclass(frozen=True)
class Scale:
    """Maps ``domain`` linearly onto ``pixels``."""

    low: float
    high: float
    start: float
    end: float

    def __call__(self, value: float) -> float:
        span = self.high - self.low
        share = 0.5 if span == 0 else (value - self.low) / span
        return self.start + share * (self.end - self.start)


def nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """Round numbers covering ``low``–``high``, about ``count`` of them."""
    if not (math.isfinite(low) and math.isfinite(high)):
        return []
    if high <= low:
        return [low]
    raw = (high - low) / max(count, 1)
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    first = math.ceil(low / step - 1e-9) * step
    ticks = []
    value = first
    # the slack for rounding, short of infinity: past it the loop never ended
    while value <= min(high + step * 1e-9, sys.float_info.max):
        ticks.append(round(value, 12))
        value += step
    return ticks


def number(value: float | None, *, percent: bool = False) -> str:
    """A number as a reader wants it on an axis or in a table: thousands separated,
    no more digits than it is worth."""
    if value is None or not math.isfinite(value):
        return "—"
    if percent:
        return f"{value * 100:.3g} %" if abs(value) < 0.1 and value else f"{value * 100:.0f} %"
    if abs(value) >= 1e7:
        return f"{value / 1e6:,.0f}M"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.3g}"


def exact(value: float) -> str:
    """A value as it was logged (a year stays 2008, a latitude keeps its decimals)."""
    if not math.isfinite(value):
        return str(value)
    return str(int(value)) if value == int(value) and abs(value) < 1e15 else f"{value:.6g}"


_TIME_STEPS = [
    timedelta(seconds=s)
    for s in (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600)
] + [timedelta(hours=12), timedelta(days=1), timedelta(days=2), timedelta(days=7)]


def time_ticks(low: datetime, high: datetime, count: int = 6) -> list[tuple[datetime, str]]:
    """Ticks on round times between ``low`` and ``high``, labelled as precisely as
    their spacing needs."""
    span = high - low
    if span <= timedelta(0):
        return [(low, low.strftime("%Y-%m-%d %H:%M:%S"))]
    step = next((s for s in _TIME_STEPS if span / s <= count), None)
    if step is None:
        days = math.ceil(span / timedelta(days=1) / count)
        step = timedelta(days=days)
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    first = epoch + math.ceil((low - epoch) / step) * step
    if step < timedelta(minutes=1):
        fmt = "%H:%M:%S"
    elif step < timedelta(days=1):
        fmt = "%m-%d %H:%M" if span > timedelta(days=1) else "%H:%M"
    else:
        fmt = "%Y-%m-%d"
    ticks = []
    moment = first
    while moment <= high:
        ticks.append((moment, moment.strftime(fmt)))
        moment += step
    return ticks


class Drawing:
    """SVG elements collected in order and written as one ``<svg>``."""

    def __init__(
        self, height: float, *, label: str, css_class: str = "chart", width: float = WIDTH
    ) -> None:
        self.height = height
        self.width = width
        self.label = label
        self.css_class = css_class
        self._parts: list[str] = []
        self.marks = 0
        """Elements that draw data (not axes): a chart with none drew nothing."""

    def _add(self, element: str, *, mark: bool) -> None:
        self._parts.append(element)
        self.marks += int(mark)

    def rect(
        self,
        x: float,
        y: float,
        width: float,
        height: float,
        *,
        css: str,
        title: str | None = None,
        mark: bool = True,
    ) -> None:
        inner = f"<title>{html_text(title)}</title>" if title else ""
        cls = f"{css} mark" if mark else css
        self._add(
            f'<rect class="{attr(cls)}" x="{x:.1f}" y="{y:.1f}" width="{max(width, 0):.1f}" '
            f'height="{max(height, 0):.1f}">{inner}</rect>',
            mark=mark,
        )

    def line(
        self, x1: float, y1: float, x2: float, y2: float, *, css: str, mark: bool = False
    ) -> None:
        cls = f"{css} mark" if mark else css
        self._add(
            f'<line class="{attr(cls)}" x1="{x1:.1f}" y1="{y1:.1f}" x2="{x2:.1f}" y2="{y2:.1f}"/>',
            mark=mark,
        )

    def polyline(self, points: list[tuple[float, float]], *, css: str, style: str = "") -> None:
        coordinates = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
        style_attr = f' style="{attr(style)}"' if style else ""
        self._add(
            f'<polyline class="{attr(css)} mark" points="{coordinates}"{style_attr}/>', mark=True
        )

    def marker(
        self,
        x: float,
        y: float,
        *,
        css: str,
        shape: str = "circle",
        size: float = 4,
        title: str | None = None,
        style: str = "",
    ) -> None:
        inner = f"<title>{html_text(title)}</title>" if title else ""
        style_attr = f' style="{attr(style)}"' if style else ""
        cls = attr(f"{css} mark")
        if shape == "circle":
            element = f'<circle class="{cls}" cx="{x:.1f}" cy="{y:.1f}" r="{size:.1f}"'
        else:
            s = size * 1.4
            points = {
                "triangle": [(x, y - s), (x + s, y + s * 0.8), (x - s, y + s * 0.8)],
                "diamond": [(x, y - s), (x + s, y), (x, y + s), (x - s, y)],
                "square": [(x - s, y - s), (x + s, y - s), (x + s, y + s), (x - s, y + s)],
            }[shape]
            coordinates = " ".join(f"{px:.1f},{py:.1f}" for px, py in points)
            element = f'<polygon class="{cls}" points="{coordinates}"'
        self._add(f"{element}{style_attr}>{inner}</{element.split()[0][1:]}>", mark=True)

    def text(
        self, x: float, y: float, content: str, *, css: str = "label", anchor: str = "start"
    ) -> None:
        self._add(
            f'<text class="{attr(css)}" x="{x:.1f}" y="{y:.1f}" text-anchor="{attr(anchor)}">'
            f"{html_text(content)}</text>",
            mark=False,
        )

    def render(self) -> str:
        return (
            f'<svg class="{attr(self.css_class)}" viewBox="0 0 {self.width:.0f} {self.height:.0f}" '
            f'role="img" aria-label="{attr(self.label)}" data-marks="{self.marks}" '
            f'xmlns="http://www.w3.org/2000/svg">' + "".join(self._parts) + "</svg>"
        )
