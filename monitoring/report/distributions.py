"""Reference and current samples of one feature binned alike, for drawing side by side.

Numeric bins span the 1st–99th percentile of both samples together, so that one
extreme value does not squeeze every other bar into one; values beyond are counted in
the outer bins (the chart says so). Categories are ordered by their larger share in
either sample; past ``top`` they are pooled as "other". A category's label is what a
reader can see of it (:func:`monitoring.report.text.label`).
"""

from __future__ import annotations

import math
import sys

import numpy as np
import pandas as pd

from monitoring.report.records import Histogram
from monitoring.report.text import label

BINS = 20
TOP_CATEGORIES = 12
OTHER = "other"


def numeric_histogram(reference: pd.Series, current: pd.Series, *, bins: int = BINS) -> Histogram:
    ref = pd.to_numeric(reference, errors="coerce").to_numpy(dtype=np.float64)
    cur = pd.to_numeric(current, errors="coerce").to_numpy(dtype=np.float64)
    ref_ok, cur_ok = ref[np.isfinite(ref)], cur[np.isfinite(cur)]
    both = np.concatenate([ref_ok, cur_ok])
    if both.size == 0:
        return Histogram((), (), (), (), len(ref), len(cur))
    with np.errstate(over="ignore", invalid="ignore"):  # near ±1.8e308: checked below
        low, high = (float(p) for p in np.percentile(both, [1, 99]))
    if not (math.isfinite(low) and math.isfinite(high)):
        # Interpolating between values near ±1.8e308 overflows: take the nearest values.
        low, high = (float(p) for p in np.percentile(both, [1, 99], method="nearest"))
    if not high > low:  # (nearly) constant: widen so that the values sit in one bin
        least, most = float(both.min()), float(both.max())
        span = max(0.5, abs(least) * 1e-6, abs(most) * 1e-6)  # 0.5 is lost past 1e16
        low, high = max(least - span, -sys.float_info.max), min(most + span, sys.float_info.max)
    if math.isfinite(high - low):  # Python floats: an overflow is inf, not a warning
        edges = np.linspace(low, high, bins + 1)
    else:  # ±1.7e308, accepted for an unbounded feature: linspace's NaN edges failed
        t = np.linspace(0.0, 1.0, bins + 1)  # the whole report
        edges = low * (1.0 - t) + high * t

    def counts(values: np.ndarray) -> tuple[int, ...]:
        found, _ = np.histogram(np.clip(values, low, high), bins=edges)
        return tuple(int(n) for n in found)

    return Histogram(
        labels=tuple(f"{a:,.4g}–{b:,.4g}" for a, b in zip(edges[:-1], edges[1:], strict=True)),
        edges=tuple(float(e) for e in edges),
        reference=counts(ref_ok),
        current=counts(cur_ok),
        reference_missing=int(ref.size - ref_ok.size),
        current_missing=int(cur.size - cur_ok.size),
    )


def categorical_histogram(
    reference: pd.Series, current: pd.Series, *, top: int = TOP_CATEGORIES
) -> Histogram:
    ref, cur = reference.dropna().astype(str), current.dropna().astype(str)
    ref_share = ref.value_counts(normalize=True)
    cur_share = cur.value_counts(normalize=True)
    larger = pd.concat([ref_share, cur_share], axis=1).fillna(0.0).max(axis=1)
    # by share, then by name: the same data always gives the same order
    ranked = sorted(larger.items(), key=lambda item: (-item[1], str(item[0])))
    names = [str(name) for name, _ in ranked]
    shown, pooled = names[:top], set(names[top:])
    ref_counts, cur_counts = ref.value_counts(), cur.value_counts()
    labels = [label(name) for name in shown]  # controls visible, long values cut
    reference_n = [int(ref_counts.get(name, 0)) for name in shown]
    current_n = [int(cur_counts.get(name, 0)) for name in shown]
    if pooled:
        labels.append(OTHER)
        reference_n.append(int(ref_counts[ref_counts.index.isin(pooled)].sum()))
        current_n.append(int(cur_counts[cur_counts.index.isin(pooled)].sum()))
    return Histogram(
        labels=tuple(labels),
        edges=(),
        reference=tuple(reference_n),
        current=tuple(current_n),
        reference_missing=int(reference.isna().sum()),
        current_missing=int(current.isna().sum()),
    )
