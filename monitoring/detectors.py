"""The monitor's detectors for one model version, fitted once on that version's
reference sample, saved as arrays and JSON, and loaded instead of refitted.

- feature drift: KS for numeric features, chi-squared with rare categories pooled for
  categorical ones (every value a category, those training never saw included),
  Bonferroni or FDR correction (:mod:`monitoring.two_sample`);
- multivariate drift: a classifier two-sample test (:mod:`monitoring.classifier_test`);
- prediction (output) drift: KS on the model's predictions; for a classifier,
  chi-squared on the predicted classes' counts and, for a binary one, KS on the
  positive class's probability (:meth:`DetectorSuite.class_output_drift`);
- out-of-distribution: the Mahalanobis distance of the numeric features to the frozen
  reference (:mod:`watchkeeper.ood`, shared with the serving worker), flagged above a
  percentile of the reference's own scores.

Why Mahalanobis and not an isolation forest: on 31 numeric (71 in all) Ames features
an isolation forest seldom splits on the one feature that is extreme, so a house with
ten times the largest living area scored like an ordinary one (2 % flagged, the same as
normal rows); the Mahalanobis distance flagged all of them. Categorical novelty is left
to the unseen-category rate.

These tests were alibi-detect's ``TabularDrift``, ``ClassifierDrift``, ``KSDrift`` and
``Mahalanobis``. They are written out here on SciPy and scikit-learn because the fixes
the monitor needed are not options of those classes: pooling sparse categories before
chi-squared, a classifier test with its nominal false-alarm rate and a reproducible
split, a vectorised score on a frozen reference (alibi's online ``Mahalanobis`` had to
be deep-copied per row: 60 % of a cycle), and state that loads without unpickling
(``save_detector`` writes joblib and dill pickles, so whoever could write the detectors
directory could run code in the monitor).

On disk, one folder per model version::

    reference.npz   the encoded reference and its predictions (allow_pickle=False):
                    a regression model's values, a classifier's class probabilities
    ood.npz, ood.json   the OOD reference (watchkeeper.ood)
    manifest.json   written last: schema, medians, settings, the reference's own
                    data-quality rates and every file's SHA-256

Loading refuses a file whose SHA-256 differs from the manifest's, as the model
registry does for model artifacts.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from monitoring.check_details import OutputDriftDetails
from monitoring.classifier_test import ClassifierTest
from monitoring.quality import feature_quality
from monitoring.two_sample import Correction, Drift, FeatureDrift, correct, ks, pooled_chi2
from watchkeeper.encoding import category_texts
from watchkeeper.errors import ArtifactIntegrityError
from watchkeeper.ood import OodReference, fit_version_reference, numeric_matrix
from watchkeeper.schema import FeatureSchema
from watchkeeper.state_files import load_arrays, read_verified, sha256_file

__all__ = [
    "ClassOutputDrift",
    "DetectorSettings",
    "DetectorSuite",
    "Drift",
    "FeatureDrift",
    "ReferenceEncoder",
]

MANIFEST = "manifest.json"
REFERENCE_FILE = "reference.npz"
FORMAT = 3
"""Format 1 was alibi-detect's ``save_detector`` (pickles); format 2 coded missing and
unseen categories alike, and a reference's booleans as unseen. Neither is read: an older
suite is refitted."""


class ReferenceEncoder:
    """Turns feature columns into the numeric matrix the detectors take.

    Numeric features: missing values become the reference median (missingness is
    reported by data quality, not drift). Categorical features: the categories of the
    schema get codes 0..k-1, matched by the text the model's encoder matches them by
    (:func:`~watchkeeper.encoding.category_text`: the reference keeps a CSV's booleans
    as booleans, the schema's categories are ``"True"``/``"False"``); missing values get
    code k; each text training never saw a code of its own from k+1 on, numbered in the
    order the frame holds them (see :meth:`DetectorSuite.feature_drift` for why). The
    reference has none: the schema's categories are those of its training data.
    """

    def __init__(self, schema: FeatureSchema, medians: dict[str, float]) -> None:
        self.schema = schema
        self.medians = medians

    @classmethod
    def fit(cls, schema: FeatureSchema, reference: pd.DataFrame) -> ReferenceEncoder:
        medians = {}
        for f in schema.numeric:
            median = pd.to_numeric(reference[f.name], errors="coerce").median()
            medians[f.name] = 0.0 if pd.isna(median) else float(median)
        return cls(schema, medians)

    @property
    def names(self) -> list[str]:
        return [f.name for f in self.schema.numeric] + [f.name for f in self.schema.categorical]

    def numeric(self, frame: pd.DataFrame) -> np.ndarray:
        """The numeric features as floats, NaN where missing or not a number."""
        return numeric_matrix(frame, [f.name for f in self.schema.numeric])

    def transform(self, frame: pd.DataFrame) -> np.ndarray:
        numeric = self.numeric(frame)
        medians = np.array([self.medians[f.name] for f in self.schema.numeric])
        columns = [np.where(np.isnan(numeric), medians, numeric)]
        for f in self.schema.categorical:
            values = frame[f.name].to_numpy(dtype=object)
            texts = np.empty(len(values), dtype=object)
            texts[:] = category_texts(values)
            # pandas hashes the column once; a Python loop per value took 0.5 s per 10k rows
            coded = pd.Categorical(texts, categories=f.categories).codes.astype(np.int64)
            k = len(f.categories)
            missing = np.asarray(pd.isna(texts), dtype=bool)
            coded[missing] = k
            unseen = coded < 0
            if unseen.any():  # numbered by first appearance, each text its own code
                coded[unseen] = k + 1 + pd.factorize(texts[unseen])[0]
            columns.append(coded.reshape(-1, 1))
        return np.hstack(columns).astype(np.float64)


@dataclass(frozen=True)
class ClassOutputDrift:
    """A classifier's output drift: one verdict over its tests (Bonferroni: the smallest
    p-value times the number of tests), with each test's figures.

    ``distance`` is the total variation distance between the reference's and the
    window's predicted-class shares (0: the same mix, 1: no class in common)."""

    is_drift: bool
    p_value: float
    distance: float
    class_p_value: float
    reference_shares: list[float]
    window_shares: list[float]
    probability_p_value: float | None = None
    """Binary classifiers: KS on the positive class's probability."""
    probability_distance: float | None = None

    def details(self) -> OutputDriftDetails:
        """The figures stored beside the verdict and the p-value (the result's score)."""
        return OutputDriftDetails(
            distance=self.distance,
            class_p_value=self.class_p_value,
            reference_shares=self.reference_shares,
            window_shares=self.window_shares,
            probability_p_value=self.probability_p_value,
            probability_distance=self.probability_distance,
        )


@dataclass(frozen=True)
class DetectorSettings:
    p_value: float = 0.05
    correction: Correction = Correction.BONFERRONI
    ood_percentile: float = 99.0


class DetectorSuite:
    def __init__(
        self,
        encoder: ReferenceEncoder,
        x_ref: np.ndarray,
        reference_predictions: np.ndarray,
        ood: OodReference,
        settings: DetectorSettings,
        reference_quality: dict[str, dict[str, float]],
    ) -> None:
        self.encoder = encoder
        self.settings = settings
        self.reference_quality = reference_quality
        """The reference's own data-quality rates: a window's are judged against them."""
        self._x_ref = x_ref
        self._n_numeric = len(encoder.schema.numeric)
        self._sorted_ref = np.sort(x_ref[:, : self._n_numeric], axis=0)
        self._reference_predictions = np.asarray(reference_predictions, dtype=np.float64)
        self._ref_counts = [
            self._counts(x_ref[:, self._n_numeric + j], f)
            for j, f in enumerate(encoder.schema.categorical)
        ]
        self._ood = ood
        self._classifier = ClassifierTest(p_value=settings.p_value)

    # -- fitting and persistence ----------------------------------------------------

    @classmethod
    def fit(
        cls,
        schema: FeatureSchema,
        reference: pd.DataFrame,
        reference_predictions: np.ndarray,
        *,
        p_value: float = 0.05,
        correction: str = "bonferroni",
        ood_percentile: float = 99.0,
    ) -> DetectorSuite:
        encoder = ReferenceEncoder.fit(schema, reference)
        # the serving worker builds the same reference with the same function
        ood = fit_version_reference(schema, reference, percentile=ood_percentile)
        settings = DetectorSettings(p_value, Correction(correction), ood_percentile)
        return cls(
            encoder,
            encoder.transform(reference),
            reference_predictions,
            ood,
            settings,
            feature_quality(reference, schema),
        )

    @staticmethod
    def is_saved(directory: Path) -> bool:
        """A complete suite of the current format is in ``directory`` (an older one,
        saved as pickles, is not: it is refitted, never read)."""
        try:
            return json.loads((directory / MANIFEST).read_text()).get("format") == FORMAT
        except (FileNotFoundError, json.JSONDecodeError, AttributeError):
            return False

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        np.savez(
            directory / REFERENCE_FILE, x_ref=self._x_ref, predictions=self._reference_predictions
        )
        sha256 = {REFERENCE_FILE: sha256_file(directory / REFERENCE_FILE)}
        sha256.update(self._ood.save(directory))
        manifest = {
            "format": FORMAT,
            "schema": self.encoder.schema.to_dict(),
            "medians": self.encoder.medians,
            "settings": asdict(self.settings),
            "reference_quality": self.reference_quality,
            "sha256": sha256,
        }
        # written last, atomically: a folder without it is incomplete
        tmp = directory / f".{MANIFEST}.{os.getpid()}.tmp"
        tmp.write_text(json.dumps(manifest, indent=2))
        os.replace(tmp, directory / MANIFEST)

    @classmethod
    def load(cls, directory: Path) -> DetectorSuite:
        """Load a saved suite, refusing any file whose SHA-256 is not the manifest's."""
        try:
            manifest = json.loads((directory / MANIFEST).read_text())
            if manifest.get("format") != FORMAT:
                raise ArtifactIntegrityError(
                    f"detectors in {directory} have format {manifest.get('format')!r}, "
                    f"expected {FORMAT}"
                )
            sha256 = manifest["sha256"]
            schema = FeatureSchema.from_dict(manifest["schema"])
            raw = manifest["settings"]
            settings = DetectorSettings(
                float(raw["p_value"]),
                Correction(raw["correction"]),
                float(raw["ood_percentile"]),
            )
            medians = {str(k): float(v) for k, v in manifest["medians"].items()}
            quality = {
                str(feature): {str(rate): float(value) for rate, value in rates.items()}
                for feature, rates in manifest["reference_quality"].items()
            }
        except (FileNotFoundError, json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise ArtifactIntegrityError(f"detector manifest in {directory}: {exc}") from exc
        path = directory / REFERENCE_FILE
        arrays = load_arrays(path, read_verified(path, sha256))
        ood = OodReference.load(directory, sha256)
        encoder = ReferenceEncoder(schema, medians)
        x_ref = arrays["x_ref"]
        if x_ref.ndim != 2 or x_ref.shape[1] != len(encoder.names) or x_ref.dtype != np.float64:
            raise ArtifactIntegrityError(f"{path}: reference of shape {x_ref.shape}")
        return cls(encoder, x_ref, arrays["predictions"], ood, settings, quality)

    # -- detection ---------------------------------------------------------------

    @property
    def ood_threshold(self) -> float:
        return self._ood.threshold

    def encode(self, window: pd.DataFrame) -> np.ndarray:
        """The window as the drift tests take it; pass it instead of the frame to
        encode a window once for several tests."""
        return self.encoder.transform(window)

    def feature_drift(self, window: pd.DataFrame | np.ndarray) -> FeatureDrift:
        x = self._matrix(window)
        p_values: dict[str, float] = {}
        distances: dict[str, float] = {}
        ks_d, ks_p = ks(self._sorted_ref, x[:, : self._n_numeric])
        for j, f in enumerate(self.encoder.schema.numeric):
            distances[f.name], p_values[f.name] = _finite(ks_d[j], 0.0), _finite(ks_p[j], 1.0)
        for j, f in enumerate(self.encoder.schema.categorical):
            # Every value its own category, those training never saw included: they
            # are categories the reference holds none of, as it holds none of many rare
            # ones. Lumped into one "unseen" cell, which the reference (training data)
            # holds none of by construction, a stationary id failed every window
            # (p ~ 1e-220); left out, the test compared the window with the reference on
            # the categories training happened to see, which the reference is part of:
            # 44 % false alarms at 5 % on an id of 2,000 values, the reference all of
            # its training rows.
            ref, counts = _shuffled(self._ref_counts[j], self._counts(x[:, self._n_numeric + j], f))
            d, p = pooled_chi2(ref, counts)
            distances[f.name], p_values[f.name] = _finite(d, 0.0), _finite(p, 1.0)
        verdict = correct(p_values, self.settings.p_value, self.settings.correction)
        return FeatureDrift(verdict.is_drift, verdict.threshold, p_values, distances)

    def multivariate_drift(self, window: pd.DataFrame | np.ndarray, *, seed: int = 0) -> Drift:
        """Classifier drift. ``seed`` picks the rows and the split: the same window and
        seed give the same verdict.

        An unseen category is replaced by a value drawn from the reference's own values
        of that feature: as a code of its own, which the reference (training data) holds
        none of by construction, it told every window of a stationary id apart. The
        unseen share is the feature test's and data quality's to report."""
        x = self._matrix(window)
        rng = np.random.default_rng([seed, 1])  # apart from the classifier's draws
        for j, f in enumerate(self.encoder.schema.categorical):
            column = self._n_numeric + j
            unseen = np.flatnonzero(x[:, column] > len(f.categories))
            known = self._x_ref[:, column]
            known = known[known <= len(f.categories)]
            if len(unseen) and len(known):
                if x is window:  # the caller's matrix, encoded once for several tests
                    x = x.copy()
                x[unseen, column] = rng.choice(known, size=len(unseen))
        return self._classifier(self._x_ref, x, seed=seed)

    @property
    def is_classifier(self) -> bool:
        """Fitted on a classifier's reference class probabilities (one column a class)."""
        return self._reference_predictions.ndim == 2

    @property
    def n_classes(self) -> int | None:
        """A classifier's number of classes (of probabilities a row holds); None for a
        regression model."""
        return self._reference_predictions.shape[1] if self.is_classifier else None

    def class_output_drift(
        self, predicted: np.ndarray, probabilities: np.ndarray | None = None
    ) -> ClassOutputDrift:
        """A classifier's window against its reference: chi-squared (rare classes
        pooled) on the counts of each predicted class (``predicted``: class indices),
        and for two classes a KS test on the positive class's probability
        (``probabilities``: the window's rows that have them, one column a class)."""
        if len(predicted) == 0:
            raise ValueError("no prediction to test: no verdict, not p = 1")
        reference = self._reference_predictions
        k = reference.shape[1]
        ref_counts = np.bincount(reference.argmax(axis=1), minlength=k)
        index = np.clip(np.asarray(predicted, dtype=np.int64), 0, k - 1)
        counts = np.bincount(index, minlength=k)
        _, class_p = pooled_chi2(ref_counts, counts)
        class_p = _finite(class_p, 1.0)
        ref_shares = ref_counts / max(ref_counts.sum(), 1)
        shares = counts / max(counts.sum(), 1)
        p_values = [class_p]
        probability_p = probability_d = None
        if k == 2 and probabilities is not None and len(probabilities):
            d, p = ks(
                np.sort(reference[:, 1]).reshape(-1, 1),
                np.asarray(probabilities, dtype=np.float64)[:, 1].reshape(-1, 1),
            )
            probability_p, probability_d = _finite(p[0], 1.0), _finite(d[0], 0.0)
            p_values.append(probability_p)
        combined = min(1.0, min(p_values) * len(p_values))
        return ClassOutputDrift(
            is_drift=bool(combined < self.settings.p_value),
            p_value=combined,
            distance=float(np.abs(ref_shares - shares).sum() / 2),
            class_p_value=class_p,
            reference_shares=[float(x) for x in ref_shares],
            window_shares=[float(x) for x in shares],
            probability_p_value=probability_p,
            probability_distance=probability_d,
        )

    def output_drift(self, predictions: np.ndarray) -> Drift:
        """KS of the window's finite predictions against the reference's. Refuses an
        empty window: a test of nothing would read p = 1, "no drift"."""
        window = np.asarray(predictions, dtype=np.float64).reshape(-1, 1)
        if len(window) == 0:
            raise ValueError("no prediction to test: no verdict, not p = 1")
        d, p = ks(np.sort(self._reference_predictions).reshape(-1, 1), window)
        return Drift(bool(p[0] < self.settings.p_value), _finite(p[0], 1.0), _finite(d[0], 0.0))

    def ood_scores(self, window: pd.DataFrame) -> np.ndarray:
        return self._ood.score(self.encoder.numeric(window))

    # -- internals -------------------------------------------------------------------

    def _matrix(self, window: pd.DataFrame | np.ndarray) -> np.ndarray:
        return window if isinstance(window, np.ndarray) else self.encode(window)

    @staticmethod
    def _counts(codes: np.ndarray, feature: Any) -> np.ndarray:
        """Counts of each category, of missing values, then of each unseen text."""
        return np.bincount(codes.astype(np.int64), minlength=len(feature.categories) + 1)


def _shuffled(reference: np.ndarray, window: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Both samples' counts over the same codes (a window's unseen texts take codes past
    the reference's), the codes in an order fixed but unrelated to them.

    Pooling merges the rarest categories, ties in the order given: in code order the
    window's unseen texts (the reference holds none) sat together at the end and were
    pooled with one another, the reference's single rows with one another, and every
    window of a stationary id drifted. Ties broken in an order that says nothing about
    which sample a count is in keep pooling a function of the margins."""
    n = max(len(reference), len(window))
    order = np.random.default_rng(n).permutation(n)
    return (
        np.pad(reference, (0, n - len(reference)))[order],
        np.pad(window, (0, n - len(window)))[order],
    )


def _finite(value: Any, default: float) -> float:
    number = float(value)
    return number if math.isfinite(number) else default
