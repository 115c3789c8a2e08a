"""Drift and out-of-distribution detectors: the one module that imports alibi-detect.

A :class:`DetectorSuite` is fitted once per model version on that version's
reference sample and saved to disk; the monitor loads it instead of refitting.

- feature drift: ``TabularDrift`` (Kolmogorov–Smirnov for numeric features,
  chi-squared for categorical ones) with a Bonferroni or FDR correction;
- multivariate drift: ``ClassifierDrift`` with a scikit-learn gradient-boosting
  classifier (no PyTorch or TensorFlow needed);
- prediction (output) drift: ``KSDrift`` on the model's predictions;
- out-of-distribution: ``IForest``, threshold at a percentile of reference scores.

alibi-detect saves the drift detectors itself. Its ``IForest`` can only be saved with
TensorFlow installed, so the suite stores that detector's scikit-learn forest with
skops and its threshold in the manifest, and rebuilds the ``IForest`` on load.
"""

from __future__ import annotations

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
import skops.io as sio

from watchkeeper.schema import FeatureSchema

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
_FOREST_FILE = "iforest.skops"


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
        ood: Any,
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
        ood = od.IForest(n_estimators=200)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ood.fit(x_ref)
            ood.infer_threshold(x_ref, threshold_perc=ood_percentile)
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
        sio.dump(self._ood.isolationforest, directory / _FOREST_FILE)
        manifest = {
            "schema": self.encoder.schema.to_dict(),
            "medians": self.encoder.medians,
            "ood_threshold": float(self._ood.threshold),
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
        forest_path = directory / _FOREST_FILE
        untrusted = sio.get_untrusted_types(file=forest_path)
        refused = [t for t in untrusted if not t.startswith("sklearn.")]
        if refused:
            raise ValueError(f"{forest_path} holds types outside scikit-learn: {refused}")
        ood = od.IForest(threshold=manifest["ood_threshold"])
        ood.isolationforest = sio.load(forest_path, trusted=untrusted)
        return cls(encoder, feature_drift, multivariate, output_drift, ood, manifest["settings"])

    # -- detection ---------------------------------------------------------------

    @property
    def ood_threshold(self) -> float:
        return float(self._ood.threshold)

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
        return np.asarray(self._ood.score(self.encoder.transform(window)), dtype=np.float64)


def _finite(value: Any, default: float) -> float:
    number = float(value)
    return number if math.isfinite(number) else default
