"""Figures written for people, by scale: a house price's MAE reads ``15,031``, a 0/1
target's ``0.213``, never ``0``.

Errors (MAE, RMSE, interval widths) are in the target's units, whatever they are:
from 100 up they are whole numbers with thousands separators; below, three significant
digits; tiny and huge ones (an absurd label's MAE) in scientific notation.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pydantic and the model code: not loaded to format a figure
    from watchkeeper.version_metadata import ModelMetrics

MISSING = "-"
_HUGE = 1e15  # from here on, whole numbers are too long to read (1e308 has 309 digits)


def amount(value: float | None) -> str:
    """A figure in the target's units (MAE, RMSE, interval width), by its scale."""
    if value is None or not math.isfinite(value):
        return MISSING
    size = abs(float(f"{value:.3g}"))  # as rounded, so that 99.96 reads 100, not 100.0
    if size >= _HUGE:
        return f"{value:.2e}"
    if size >= 100:
        return f"{value:,.0f}"
    if size == 0:
        return "0"
    if size < 1e-4:
        return f"{value:.2e}"
    decimals = 2 - math.floor(math.log10(size))  # three significant digits
    return f"{value:.{decimals}f}"


def percent(value: float | None, *, ratio: bool = False) -> str:
    """A percentage with one decimal; ``ratio`` when ``value`` is a fraction (0.9 → 90.0%)."""
    if value is None or not math.isfinite(value):
        return MISSING
    return f"{value * 100 if ratio else value:.1f}%"


def count(value: int | None) -> str:
    """A number of rows or labels, with thousands separators."""
    return MISSING if value is None else f"{value:,}"


def change(new: float | None, old: float | None) -> str:
    """``new`` relative to ``old`` as a signed percentage (``-10.1%``)."""
    if new is None or old is None or not old or not math.isfinite(new / old):
        return MISSING
    return f"{new / old - 1:+.1%}"


def validation_figures(metrics: ModelMetrics, level: float) -> str:
    """A model's validation metrics on one line, for its task: MAE, RMSE, MAPE and
    interval coverage, or accuracy, log-loss, Brier score and prediction-set coverage."""
    if metrics.accuracy is not None:
        return (
            f"accuracy {percent(metrics.accuracy, ratio=True)}, "
            f"log-loss {amount(metrics.log_loss)}, Brier {amount(metrics.brier)}, "
            f"{level:.0%} prediction set coverage "
            f"{percent(metrics.set_coverage, ratio=True)} "
            f"(mean size {amount(metrics.set_size)})"
        )
    return (
        f"MAE {amount(metrics.mae)}, RMSE {amount(metrics.rmse)}, "
        f"MAPE {percent(metrics.mape)}, {level:.0%} interval coverage "
        f"{percent(metrics.coverage, ratio=True)}"
    )
