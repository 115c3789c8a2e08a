"""Out-of-distribution score: the Mahalanobis distance of a record's numeric features to
a frozen reference sample.

This module is shared by the monitor and the serving worker, so it imports only NumPy
at module level (pandas and scikit-learn only while fitting) and never alibi-detect:
importing alibi-detect takes seconds and pulls in ``transformers``. Both build a
version's reference with :func:`fit_version_reference`, from the version's schema and
reference sample, so the score a client gets with its prediction is the score the
monitor computes for the same row.

The reference is frozen: scoring never folds new rows into the mean and covariance,
so a window never shifts the reference and one odd row never hides another. The
covariance of the standardised reference is Ledoit–Wolf shrunk: Ames has collinear
features (basement areas that sum to the total), and a plain inverse would make a
harmless combination of them look infinitely far.

A value so large that the distance overflows (``Lot_Area = 1e308`` is finite and valid
JSON) is as far from the reference as a record can be: it scores :data:`SCORE_CAP`, far
above any threshold, instead of raising. The cap is finite so that scores and their
averages stay storable as JSON and in a ``double precision`` column.

The reference itself may hold such values: a retrained version's reference samples the
labelled predictions it trained on, and a client may send ``1e308``. Fitted as they are,
two of them overflowed the mean and the spread and the fit raised, so the version was
never monitored. An overflow-safe standardisation would fit, but would let those few rows
set the feature's spread (about 1e306), blinding the score to that feature for every
real row. So before fitting, a value beyond :data:`EXTREME_SPREADS` robust spreads of its
feature's median (:func:`clip_extremes`) takes the feature's most extreme ordinary value:
the feature keeps its ordinary mean and spread. Ordinary data has no such value, so its
fit is unchanged, value for value (the monitor's saved state and the serving worker's
refit agree for versions fitted before).

State is arrays (``ood.npz``, loaded with ``allow_pickle=False``) and JSON, each
checked against its recorded SHA-256 (:mod:`watchkeeper.state_files`): nothing that
runs code when read.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from watchkeeper.errors import ArtifactIntegrityError
from watchkeeper.state_files import load_arrays, read_verified, sha256_file

if TYPE_CHECKING:
    import pandas as pd

    from watchkeeper.schema import FeatureSchema

ARRAYS_FILE = "ood.npz"
JSON_FILE = "ood.json"
FORMAT = 1
SCORE_CAP = 1e100
"""Score of a record whose distance overflows: maximally out of distribution."""
EXTREME_SPREADS = 1e9
"""A reference value further than this many robust spreads from its feature's median is
no measurement (Ames' largest lot is 20 of its spreads out): it is clipped before fitting."""
HARD_LIMIT = 1e100
"""Magnitude beyond which any reference value is clipped first: the median and
quartiles of values within it cannot overflow."""


@dataclass(frozen=True)
class OodReference:
    """Frozen statistics of the reference's numeric features and the flag threshold."""

    features: tuple[str, ...]
    medians: np.ndarray
    """Stand-ins for missing values: missingness is a data-quality figure, not novelty."""
    mean: np.ndarray
    scale: np.ndarray
    precision: np.ndarray
    """Inverse (shrunk) covariance of the standardised reference."""
    percentile: float
    threshold: float
    """Scores above this are flagged: the ``percentile`` of the reference's own scores."""
    _scaled_precision: np.ndarray = field(init=False, repr=False, compare=False)
    """``precision`` divided by ``scale`` on both sides, computed once: a row's squared
    distance is then ``d @ P @ d`` with ``d = x - mean``, one matrix product for a
    whole batch instead of a three-operand ``einsum`` (15x faster at 1,000 rows)."""

    def __post_init__(self) -> None:
        scaled = self.precision / np.outer(self.scale, self.scale)
        object.__setattr__(self, "_scaled_precision", scaled)

    @classmethod
    def fit(
        cls, features: Sequence[str], x_ref: np.ndarray, *, percentile: float = 99.0
    ) -> OodReference:
        """Fit on the reference's numeric features (rows × ``features``, NaN allowed)."""
        from sklearn.covariance import LedoitWolf

        x_ref = np.asarray(x_ref, dtype=np.float64)
        clipped = np.clip(x_ref, -HARD_LIMIT, HARD_LIMIT)  # NaN stays missing
        medians = np.nanmedian(clipped, axis=0) if len(x_ref) else np.zeros(x_ref.shape[1])
        medians = np.where(np.isnan(medians), 0.0, medians)
        filled = clip_extremes(np.where(np.isnan(clipped), medians, clipped))
        mean = filled.mean(axis=0)
        scale = filled.std(axis=0)
        scale[scale == 0] = 1.0
        precision = LedoitWolf(assume_centered=True).fit((filled - mean) / scale).precision_
        unthresholded = cls(
            tuple(features), medians, mean, scale, precision, percentile, threshold=np.inf
        )
        # on the clipped rows: a reference with more extreme rows than the percentile
        # leaves out would otherwise have the cap as its threshold, and flag nothing
        threshold = float(np.percentile(unthresholded.score(filled), percentile))
        return cls(tuple(features), medians, mean, scale, precision, percentile, threshold)

    def score(self, x: np.ndarray) -> np.ndarray:
        """Distance of each row (rows × ``features``, NaN for missing) to the reference."""
        x = np.asarray(x, dtype=np.float64).reshape(-1, len(self.features))
        x = np.where(np.isnan(x), self.medians, x)
        with np.errstate(over="ignore", invalid="ignore"):
            d = x - self.mean
            squared = np.einsum("ij,ij->i", d @ self._scaled_precision, d)
            distance = np.sqrt(np.maximum(squared, 0.0))
        # overflow gives inf, or nan where infinities cancel: both mean "as far as can be"
        return np.where(np.isfinite(distance), np.minimum(distance, SCORE_CAP), SCORE_CAP)

    def flags(self, scores: np.ndarray) -> np.ndarray:
        return np.asarray(scores) > self.threshold

    # -- persistence: arrays and JSON, each hashed ----------------------------------

    def save(self, directory: Path) -> dict[str, str]:
        """Write ``ood.npz`` and ``ood.json``; return each file's SHA-256 for the
        caller's manifest."""
        directory.mkdir(parents=True, exist_ok=True)
        np.savez(
            directory / ARRAYS_FILE,
            medians=self.medians,
            mean=self.mean,
            scale=self.scale,
            precision=self.precision,
        )
        meta = {
            "format": FORMAT,
            "features": list(self.features),
            "percentile": self.percentile,
            "threshold": self.threshold,
        }
        (directory / JSON_FILE).write_text(json.dumps(meta, indent=2))
        return {name: sha256_file(directory / name) for name in (ARRAYS_FILE, JSON_FILE)}

    @classmethod
    def load(cls, directory: Path, sha256: dict[str, str]) -> OodReference:
        """Read the state back, refusing files whose SHA-256 is not the recorded one."""
        blobs = {name: read_verified(directory / name, sha256) for name in (ARRAYS_FILE, JSON_FILE)}
        try:
            meta = json.loads(blobs[JSON_FILE])
            if meta.get("format") != FORMAT:
                raise ArtifactIntegrityError(
                    f"OOD state format {meta.get('format')!r}, expected {FORMAT}"
                )
            arrays = load_arrays(directory / ARRAYS_FILE, blobs[ARRAYS_FILE])
            d = len(meta["features"])
            shapes = {"medians": (d,), "mean": (d,), "scale": (d,), "precision": (d, d)}
            for key, shape in shapes.items():
                if arrays[key].shape != shape or arrays[key].dtype != np.float64:
                    raise ArtifactIntegrityError(f"OOD state {key} has shape {arrays[key].shape}")
            return cls(
                tuple(str(f) for f in meta["features"]),
                arrays["medians"],
                arrays["mean"],
                arrays["scale"],
                arrays["precision"],
                float(meta["percentile"]),
                float(meta["threshold"]),
            )
        except (KeyError, TypeError, json.JSONDecodeError) as exc:
            raise ArtifactIntegrityError(f"OOD state in {directory} is malformed: {exc}") from exc


def clip_extremes(x: np.ndarray) -> np.ndarray:
    """``x`` (rows × features, no NaN, within :data:`HARD_LIMIT`) with each value further
    than :data:`EXTREME_SPREADS` spreads from its column's median replaced by the
    column's most extreme value within that fence on the same side. The spread is the
    interquartile range, or the median's magnitude, or 1, whichever is largest: a column
    of mostly zeros (pool areas) has no interquartile range, yet its few real values are
    ordinary."""
    if not len(x):
        return x
    median = np.median(x, axis=0)
    q25, q75 = np.percentile(x, [25, 75], axis=0)
    spread = np.maximum(np.maximum(q75 - q25, np.abs(median)), 1.0)
    low, high = median - EXTREME_SPREADS * spread, median + EXTREME_SPREADS * spread
    inside = (x >= low) & (x <= high)
    if inside.all():
        return x
    # the median lies inside its own fence, so each column has an ordinary value
    largest = np.where(inside, x, -np.inf).max(axis=0)
    smallest = np.where(inside, x, np.inf).min(axis=0)
    return np.where(x > high, largest, np.where(x < low, smallest, x))


def numeric_matrix(frame: pd.DataFrame, features: Sequence[str]) -> np.ndarray:
    """The ``features`` columns of ``frame`` as floats (rows × features), NaN where a
    value is missing or not a number: what :meth:`OodReference.score` takes."""
    import pandas as pd

    return np.column_stack(
        [
            pd.to_numeric(frame[name], errors="coerce").to_numpy(dtype=np.float64)
            for name in features
        ]
    ).reshape(len(frame), len(features))


def fit_version_reference(
    schema: FeatureSchema, reference: pd.DataFrame, *, percentile: float
) -> OodReference:
    """The OOD reference of a model version: fitted on the numeric features of its
    schema in its reference sample (``ModelRegistry.reference``). The monitor's
    detectors and the serving worker both build it here, so they cannot disagree."""
    names = [f.name for f in schema.numeric]
    return OodReference.fit(names, numeric_matrix(reference, names), percentile=percentile)
