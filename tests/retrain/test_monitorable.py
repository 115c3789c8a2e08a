"""The gate promotes only a candidate the monitor can fit its detectors on: a version
promoted unmonitorable had every window stored as an error for as long as it served."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import sqlalchemy as sa

from monitoring.detectors import DetectorSuite
from retrain.job import RetrainJob
from watchkeeper import retrain_queue
from watchkeeper.db.tables import retrain_runs
from watchkeeper.ood import fit_version_reference
from watchkeeper.registry import ModelRegistry
from watchkeeper.settings import Settings


def _huge_lots(records: list[dict[str, Any]]) -> None:
    """One sale in ten sent with a lot of 1e308 square feet: valid, accepted, logged."""
    for record in records[::10]:
        record["Lot_Area"] = 1e308


def _run(engine: sa.Engine) -> dict[str, Any]:
    with engine.connect() as connection:
        return dict(connection.execute(sa.select(retrain_runs)).one()._mapping)


def test_a_candidate_trained_on_extreme_feature_values_is_promoted_and_monitored(
    make_labelled_log: Callable[..., list[str]],
    make_job: Callable[..., RetrainJob],
    engine: sa.Engine,
    settings: Settings,
) -> None:
    make_labelled_log(records=_huge_lots)
    retrain_queue.enqueue(engine, trigger="manual", reason="test")

    result = make_job().run()

    assert result is not None and result.outcome == "promoted", result
    registry = ModelRegistry(settings.storage.registry_path)
    reference = registry.reference("v2")
    assert (reference["Lot_Area"] == 1e308).any()  # the hostile rows are in its reference
    model = registry.load("v2").model
    suite = DetectorSuite.fit(model.schema, reference, model.predict(reference).value)
    ood = fit_version_reference(model.schema, reference, percentile=99.0)
    assert suite.ood_threshold == ood.threshold < 1e3


def test_a_candidate_whose_detectors_cannot_be_fitted_is_refused_saying_why(
    labelled_log: int,
    make_job: Callable[..., RetrainJob],
    engine: sa.Engine,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def unfittable(*args: Any, **kwargs: Any) -> DetectorSuite:
        raise ValueError("Input X contains NaN.")

    monkeypatch.setattr(DetectorSuite, "fit", unfittable)
    retrain_queue.enqueue(engine, trigger="manual", reason="test")

    result = make_job().run()

    run = _run(engine)
    assert result is not None and result.outcome == run["outcome"] == "rejected"
    assert run["decision_reason"].startswith(
        "the monitor cannot fit its detectors on the candidate's reference sample "
        "(ValueError: Input X contains NaN.)"
    )
    assert "its gate had said: MAE" in run["decision_reason"]
    registry = ModelRegistry(settings.storage.registry_path)
    assert registry.current_version() == "v1"
    assert registry.metadata("v2")["status"] == "rejected"
