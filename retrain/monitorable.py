"""Whether a candidate can be monitored once served: the monitor's detectors and the
serving worker's OOD reference fitted on the candidate's reference sample, as they
will be after a promotion.

A version whose detectors cannot be fitted has every window stored as an error and is
served without OOD scores, for as long as it serves: the gate refuses it rather than
find out after the promotion.
"""

from __future__ import annotations

import pandas as pd

from monitoring.detectors import DetectorSuite
from watchkeeper.classification import Classifier
from watchkeeper.schema import FeatureSchema
from watchkeeper.settings import DriftSettings
from watchkeeper.training import TrainedModel


def unmonitorable(candidate: TrainedModel, drift: DriftSettings) -> str | None:
    """Why the monitor could not fit its detectors on ``candidate``'s reference sample
    (the OOD reference among them, which serving fits alike), or ``None`` when it can."""
    model = candidate.model
    reference = _as_registry_reads(candidate.reference, model.schema)
    try:
        predicted = model.predict(reference)
        outputs = predicted.probabilities if isinstance(model, Classifier) else predicted.value
        DetectorSuite.fit(
            model.schema,
            reference,
            outputs,
            p_value=drift.p_value,
            correction=drift.correction,
            ood_percentile=drift.ood_percentile,
        )
    except Exception as exc:  # whatever the fit raises, the monitor would meet it too
        detail = " ".join(str(exc).split())[:200] or type(exc).__name__
        return (
            "the monitor cannot fit its detectors on the candidate's reference sample "
            f"({type(exc).__name__}: {detail}): it would be served unmonitored"
        )
    return None


def _as_registry_reads(reference: pd.DataFrame, schema: FeatureSchema) -> pd.DataFrame:
    """The reference typed as :meth:`ModelRegistry.reference` returns it to the monitor."""
    frame = reference.copy()
    for feature in schema.features:
        column = frame[feature.name]
        frame[feature.name] = (
            pd.to_numeric(column, errors="coerce").astype("float64")
            if feature.is_numeric
            else column.astype("object")
        )
    return frame
