"""Drift and out-of-distribution detectors: the one module that imports alibi-detect.

A :class:`DetectorSuite` is fitted once per model version on that version's
reference sample and saved to disk; the monitor loads it instead of refitting.

- feature drift: ``TabularDrift`` (Kolmogorov–Smirnov for numeric features,
  chi-squared for categorical ones) with a Bonferroni or FDR correction;
- multivariate drift: ``ClassifierDrift`` with a scikit-learn gradient-boosting
  classifier (no PyTorch or TensorFlow needed);
- prediction (output) drift: ``KSDrift`` on the model's predictions;
- out-of-distribution: ``Mahalanobis`` on the standardised numeric features, threshold
  at a percentile of the reference's own scores.

Why Mahalanobis and not ``IForest``: on 31 numeric (71 in all) Ames features an
isolation forest seldom splits on the one feature that is extreme, so a house with ten
times the largest living area scored like an ordinary one (2 % flagged, the same as
normal rows); the Mahalanobis distance flagged all of them. Categorical novelty is
left to the unseen-category rate. alibi-detect's ``Mahalanobis`` is an online detector
that folds every scored batch into its mean and covariance; the suite keeps the state
fitted on the reference and scores each row against a copy of it, so a window never
shifts the reference (and one odd row never hides another).

alibi-detect saves the drift detectors itself; it can save ``Mahalanobis`` only with
TensorFlow installed, so the suite keeps that detector's state (mean, covariance,
count, threshold) in ``ood.npz`` and rebuilds it on load.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from watchkeeper.schema import FeatureSchema

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
_OOD_FILE = "ood.npz"


def _alibi() -> Any:
    """Import alibi-detect quietly: it announces the deep-learning backends it lacks."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    logging.getLogger("alibi_detect").setLevel(logging.ERROR)
    logging.getLogger("transformers").setLevel(logging.ERROR)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import alibi_detect.cd as cd
        import alibi_detect.od as od
        import alibi_detect.saving as saving
    return cd, od, saving


@dataclass(frozen=True)
class FeatureDrift:
    is_drift: bool
    threshold: float
    p_values: dict[str, float]
    distances: dict[str, float]

    @property
    def drifted(self) -> list[str]:
        return [name for name, p in self.p_values.items() if p < self.threshold]


@dataclass(frozen=True)
class Drift:
    is_drift: bool
    p_value: float
    distance: float


class ReferenceEncoder:
    """Turns feature columns into the numeric matrix the detectors take.

    Numeric features: missing values become the reference median (missingness is
    reported by data quality, not drift). Categorical features: the categories of the
    schema get codes 0..k-1; missing and unseen values share code k.
    """

    def __init__(self, schema: FeatureSchema, medians: dict[str, float]) -> None:
        self.schema = schema
        self.medians = medians
        self.codes = {
            f.name: {c: i for i, c in enumerate(f.categories)} for f in schema.categorical
        }

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

    @property
    def categories_per_feature(self) -> dict[int, None]:
        """Categories are those the reference holds (``None``: alibi-detect counts them);
        a category absent from both samples would make chi-squared undefined. Values
        the reference never had are left to the data-quality unseen-category rate."""
        offset = len(self.schema.numeric)
        return {offset + j: None for j in range(len(self.schema.categorical))}

    def transform(self, frame: pd.DataFrame) -> np.ndarray:
        columns = []
        for f in self.schema.numeric:
            values = pd.to_numeric(frame[f.name], errors="coerce").to_numpy(dtype=np.float64)
            columns.append(np.where(np.isnan(values), self.medians[f.name], values))
        for f in self.schema.categorical:
            codes, unseen = self.codes[f.name], len(f.categories)
            columns.append(
                np.fromiter(
                    (codes.get(v, unseen) if isinstance(v, str) else unseen for v in frame[f.name]),
                    dtype=np.float64,
                    count=len(frame),
                )
            )
        return np.column_stack(columns).astype(np.float32)


class DetectorSuite:
    def __init__(
        self,
        encoder: ReferenceEncoder,
        feature_drift: Any,
        multivariate_drift: Any | None,
        output_drift: Any,
        ood: OodScorer,
        settings: dict[str, Any],
    ) -> None:
        self.encoder = encoder
        self._feature_drift = feature_drift
        self._multivariate_drift = multivariate_drift
        self._output_drift = output_drift
        self._ood = ood
        self.settings = settings

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
        multivariate: bool = True,
        random_state: int = 0,
    ) -> DetectorSuite:
        cd, od, _ = _alibi()
        encoder = ReferenceEncoder.fit(schema, reference)
        x_ref = encoder.transform(reference)
        feature_drift = cd.TabularDrift(
            x_ref,
            p_val=p_value,
            categories_per_feature=encoder.categories_per_feature,
            correction=correction,
        )
        multivariate_drift = None
        if multivariate:
            from sklearn.ensemble import HistGradientBoostingClassifier

            multivariate_drift = cd.ClassifierDrift(
                x_ref,
                model=HistGradientBoostingClassifier(max_iter=50, random_state=random_state),
                backend="sklearn",
                p_val=p_value,
                n_folds=3,
                preds_type="probs",
                binarize_preds=False,
                train_size=None,
            )
        output_drift = cd.KSDrift(
            np.asarray(reference_predictions, dtype=np.float32).reshape(-1, 1), p_val=p_value
        )
        ood = OodScorer.fit(x_ref[:, : len(schema.numeric)], ood_percentile, od.Mahalanobis)
        settings = {
            "p_value": p_value,
            "correction": correction,
            "ood_percentile": ood_percentile,
            "multivariate": multivariate,
        }
        return cls(encoder, feature_drift, multivariate_drift, output_drift, ood, settings)

    def save(self, directory: Path) -> None:
        _, _, saving = _alibi()
        directory.mkdir(parents=True, exist_ok=True)
        saving.save_detector(self._feature_drift, directory / "feature_drift")
        saving.save_detector(self._output_drift, directory / "output_drift")
        if self._multivariate_drift is not None:
            saving.save_detector(self._multivariate_drift, directory / "multivariate_drift")
        self._ood.save(directory / _OOD_FILE)
        manifest = {
            "schema": self.encoder.schema.to_dict(),
            "medians": self.encoder.medians,
            "settings": self.settings,
        }
        (directory / MANIFEST).write_text(json.dumps(manifest, indent=2))

    @classmethod
    def load(cls, directory: Path) -> DetectorSuite:
        _, od, saving = _alibi()
        manifest = json.loads((directory / MANIFEST).read_text())
        encoder = ReferenceEncoder(FeatureSchema.from_dict(manifest["schema"]), manifest["medians"])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            feature_drift = saving.load_detector(directory / "feature_drift")
            output_drift = saving.load_detector(directory / "output_drift")
            multivariate = None
            if manifest["settings"]["multivariate"]:
                multivariate = saving.load_detector(directory / "multivariate_drift")
        ood = OodScorer.load(directory / _OOD_FILE, od.Mahalanobis)
        return cls(encoder, feature_drift, multivariate, output_drift, ood, manifest["settings"])

    # -- detection ---------------------------------------------------------------

    @property
    def ood_threshold(self) -> float:
        return self._ood.threshold

    def feature_drift(self, window: pd.DataFrame) -> FeatureDrift:
        result = self._feature_drift.predict(
            self.encoder.transform(window),
            drift_type="batch",
            return_p_val=True,
            return_distance=True,
        )["data"]
        names = self.encoder.names
        return FeatureDrift(
            is_drift=bool(result["is_drift"]),
            threshold=float(result["threshold"]),
            p_values={n: _finite(p, 1.0) for n, p in zip(names, result["p_val"], strict=True)},
            distances={n: _finite(d, 0.0) for n, d in zip(names, result["distance"], strict=True)},
        )

    def multivariate_drift(self, window: pd.DataFrame) -> Drift | None:
        if self._multivariate_drift is None:
            return None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = self._multivariate_drift.predict(self.encoder.transform(window))["data"]
        return Drift(bool(result["is_drift"]), float(result["p_val"]), float(result["distance"]))

    def output_drift(self, predictions: np.ndarray) -> Drift:
        result = self._output_drift.predict(
            np.asarray(predictions, dtype=np.float32).reshape(-1, 1)
        )["data"]
        return Drift(
            bool(result["is_drift"]),
            float(np.min(result["p_val"])),
            float(np.max(result["distance"])),
        )

    def ood_scores(self, window: pd.DataFrame) -> np.ndarray:
        numeric = self.encoder.transform(window)[:, : len(self.encoder.schema.numeric)]
        return self._ood.score(numeric)


class OodScorer:
    """alibi-detect's ``Mahalanobis`` frozen on the reference (see the module docstring)."""

    def __init__(
        self, detector: Any, mean: np.ndarray, scale: np.ndarray, threshold: float
    ) -> None:
        self._detector = detector
        self._mean = mean
        self._scale = scale
        self.threshold = threshold

    @classmethod
    def fit(cls, x_ref: np.ndarray, percentile: float, mahalanobis: Any) -> OodScorer:
        x_ref = np.asarray(x_ref, dtype=np.float64)
        mean = x_ref.mean(axis=0)
        scale = x_ref.std(axis=0)
        scale[scale == 0] = 1.0
        z = (x_ref - mean) / scale
        # every component: one extreme feature must count, not just the main directions
        detector = mahalanobis(
            n_components=z.shape[1], std_clip=3, start_clip=np.iinfo(np.int64).max
        )
        detector.score(z)  # folds the reference into the detector's mean and covariance
        scorer = cls(detector, mean, scale, threshold=math.inf)
        scorer.threshold = float(np.percentile(scorer.score(x_ref), percentile))
        return scorer

    def score(self, x: np.ndarray) -> np.ndarray:
        z = (np.asarray(x, dtype=np.float64) - self._mean) / self._scale
        return np.array(
            [copy.deepcopy(self._detector).score(row[None, :])[0] for row in z], dtype=np.float64
        )

    def save(self, path: Path) -> None:
        d = self._detector
        np.savez(
            path,
            mean=self._mean,
            scale=self._scale,
            threshold=self.threshold,
            detector_mean=d.mean,
            detector_cov=d.C,
            detector_n=d.n,
        )

    @classmethod
    def load(cls, path: Path, mahalanobis: Any) -> OodScorer:
        with np.load(path) as data:
            detector = mahalanobis(
                n_components=int(data["mean"].shape[0]),
                std_clip=3,
                start_clip=np.iinfo(np.int64).max,
            )
            detector.mean = data["detector_mean"]
            detector.C = data["detector_cov"]
            detector.n = int(data["detector_n"])
            return cls(detector, data["mean"], data["scale"], float(data["threshold"]))


def _finite(value: Any, default: float) -> float:
    number = float(value)
    return number if math.isfinite(number) else default
