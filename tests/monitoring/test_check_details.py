"""Each check's ``window_results.details`` is read into its typed record: rows the monitor
stored before the records existed read, and are written back byte for byte; a details
object that does not fit its check is one error naming the field."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
import sqlalchemy as sa

from monitoring.check_details import (
    AccuracyDetails,
    CheckDetails,
    CheckError,
    ClassAccuracyDetails,
    DataQualityDetails,
    EstimateDetails,
    FeatureDriftDetails,
    MultivariateDriftDetails,
    OodDetails,
    OutputDriftDetails,
)
from monitoring.window_result import Check, StoredResultError, WindowResult, parse_details
from watchkeeper.db.engine import create_engine
from watchkeeper.db.tables import window_results

SAMPLE = '"rows_evaluated": 200, "rows_held": 500, '
ACCURACY = (
    '"labels": 300, "mae": 15210.5, "mae_lower_bound": 13900.25, "abs_error_std": 9100.0, '
    '"rmse": 21000.75, "mape": 9.5, "coverage": 0.88, "label_delay_seconds_median": 3600.0, '
    '"label_delay_seconds_max": 86400.0'
)
CLASS_ACCURACY = (
    '"task": "classification", "labels": 300, "accuracy": 0.8, "accuracy_lower_bound": 0.75, '
    '"accuracy_upper_bound": 0.84, "log_loss": 0.45, "brier": 0.3, "set_coverage": 0.91, '
    '"set_size": 1.2, "ece": 0.03, "recall": {"no": 0.9, "yes": 0.6}, "unknown_labels": 1, '
    '"label_delay_seconds_median": 60.0, "label_delay_seconds_max": 600.0'
)

# details as the monitor wrote them before the typed records (the same keys, in order)
STORED: list[tuple[str, Check, str, type[CheckDetails]]] = [
    (
        "data-quality",
        Check.DATA_QUALITY,
        '{"rows_evaluated": 500, "rows_held": 500, "features": {"Lot_Area": {"missing_rate": '
        '0.0, "out_of_range_rate": 0.01}, "Neighborhood": {"missing_rate": 0.002, '
        '"unseen_category_rate": 0.0}}, "reference": {"Lot_Area": {"missing_rate": 0.0, '
        '"out_of_range_rate": 0.0}}, "requests": {"requests": 510, "rejected": 10, "rate": '
        "0.0196}}",
        DataQualityDetails,
    ),
    (
        "data-quality-before-sampling-and-reference-rates",
        Check.DATA_QUALITY,
        '{"features": {"Lot_Area": {"missing_rate": 0.0, "out_of_range_rate": 0.01}}, '
        '"requests": {"requests": 0, "rejected": 0, "rate": 0.0}}',
        DataQualityDetails,
    ),
    (
        "ood",
        Check.OOD,
        '{"rows_evaluated": 480, "rows_held": 500, "threshold": 3.2, "outliers": 4, '
        '"mean_score": 1.1, "rows_scored_by_serving": 480, "rows_scored_here": 0}',
        OodDetails,
    ),
    (
        "ood-nothing-scored",
        Check.OOD,
        '{"rows_evaluated": 0, "rows_held": 500, "threshold": 3.2, "outliers": 0, '
        '"mean_score": null, "rows_scored_by_serving": 0, "rows_scored_here": 0}',
        OodDetails,
    ),
    (
        "feature-drift",
        Check.FEATURE_DRIFT,
        "{" + SAMPLE + '"threshold": 0.025, "drifted": ["Lot_Area"], "p_values": {"Lot_Area": '
        '0.001, "Neighborhood": 0.4}, "distances": {"Lot_Area": 0.31, "Neighborhood": 2.5}}',
        FeatureDriftDetails,
    ),
    ("output-drift", Check.OUTPUT_DRIFT, "{" + SAMPLE + '"distance": 0.12}', OutputDriftDetails),
    (
        "output-drift-non-finite-counted",
        Check.OUTPUT_DRIFT,
        "{" + SAMPLE + '"distance": 0.12, "non_finite_predictions": 3}',
        OutputDriftDetails,
    ),
    (
        "class-output-drift",
        Check.OUTPUT_DRIFT,
        "{" + SAMPLE + '"distance": 0.1, "class_p_value": 0.2, "reference_shares": [0.6, 0.4], '
        '"window_shares": [0.5, 0.5], "probability_p_value": null, '
        '"probability_distance": null}',
        OutputDriftDetails,
    ),
    (
        "multivariate-drift",
        Check.MULTIVARIATE_DRIFT,
        "{" + SAMPLE + '"distance": 0.55}',
        MultivariateDriftDetails,
    ),
    (
        "estimated-mae",
        Check.ESTIMATED_ACCURACY,
        "{" + SAMPLE + '"estimated_mae": 15000.5, "n_rows": 500}',
        EstimateDetails,
    ),
    (
        "no-estimator",
        Check.ESTIMATED_ACCURACY,
        "{" + SAMPLE + '"estimated_mae": null, "n_rows": 500, "reason": "model v1 has no loss '
        'estimator (registered before direct loss estimation)"}',
        EstimateDetails,
    ),
    (
        "estimated-accuracy",
        Check.ESTIMATED_ACCURACY,
        "{" + SAMPLE + '"task": "classification", "estimated_accuracy": 0.81, "n_rows": 500}',
        EstimateDetails,
    ),
    (
        "window-accuracy",
        Check.ACCURACY,
        "{" + ACCURACY + ', "labelled_share": 0.6, "validation_mae": 14000.0, '
        '"estimated_mae": 16000.0, "estimate_error": 0.052}',
        AccuracyDetails,
    ),
    (
        "window-accuracy-non-finite-counted",
        Check.ACCURACY,
        "{" + ACCURACY + ', "non_finite_predictions": 2, "labelled_share": 0.6, '
        '"validation_mae": 14000.0}',
        AccuracyDetails,
    ),
    (
        "accuracy-of-no-finite-prediction",
        Check.ROLLING_ACCURACY,
        '{"labels": 0, "mae": null, "mae_lower_bound": null, "abs_error_std": null, '
        '"rmse": null, "mape": null, "coverage": null, "label_delay_seconds_median": null, '
        '"label_delay_seconds_max": null, "non_finite_predictions": 4, "confidence": 0.99, '
        '"validation_mae": 14000.0}',
        AccuracyDetails,
    ),
    (
        "rolling-accuracy",
        Check.ROLLING_ACCURACY,
        "{" + ACCURACY + ', "confidence": 0.99, "validation_mae": null}',
        AccuracyDetails,
    ),
    (
        "window-class-accuracy",
        Check.ACCURACY,
        "{" + CLASS_ACCURACY + ', "labelled_share": 0.6, "validation_accuracy": 0.82, '
        '"estimated_accuracy": 0.81, "estimate_error": 0.01}',
        ClassAccuracyDetails,
    ),
    (
        "rolling-class-accuracy",
        Check.ROLLING_ACCURACY,
        "{" + CLASS_ACCURACY + ', "confidence": 0.99, "validation_accuracy": 0.82, '
        '"validation_log_loss": 0.4}',
        ClassAccuracyDetails,
    ),
    ("check-error", Check.OOD, '{"error": "ValueError: broken"}', CheckError),
    ("accuracy-error", Check.ACCURACY, '{"labels": 3, "error": "KeyError: x"}', CheckError),
]


@pytest.mark.parametrize(
    ("check", "text", "kind"),
    [case[1:] for case in STORED],
    ids=[case[0] for case in STORED],
)
def test_stored_details_read_into_their_record_and_write_back_unchanged(
    check: Check, text: str, kind: type[CheckDetails]
) -> None:
    raw = json.loads(text)

    details = parse_details(check, raw)

    assert type(details) is kind
    assert json.dumps(details.stored()) == text  # the same keys, in the same order


def _row(check: Check, details: Any) -> dict[str, Any]:
    at = datetime(2026, 3, 1, 12, tzinfo=UTC)
    return {
        "window_id": "v1:1-500",
        "model_version": "v1",
        "detector": check.value,
        "first_seq": 1,
        "last_seq": 500,
        "n_rows": 500,
        "started_at": at,
        "ended_at": at,
        "evaluated_at": at,
        "is_drift": None,
        "score": 0.5,
        "details": details,
    }


def test_an_old_row_reads_from_the_table_and_is_stored_again_byte_for_byte(
    database_url: str,
) -> None:
    old = dict((case[1], json.loads(case[2])) for case in STORED if case[1] is not Check.ACCURACY)
    engine = create_engine(database_url)
    text = sa.cast(window_results.c.details, sa.Text)
    with engine.begin() as connection:
        for check, details in old.items():
            connection.execute(window_results.insert().values(**_row(check, details)))
        rows = connection.execute(sa.select(window_results).order_by(window_results.c.id)).all()
        written = connection.execute(sa.select(text).order_by(window_results.c.id)).scalars()
        written = list(written)
        connection.execute(window_results.delete())
        results = [WindowResult.from_row(row._mapping) for row in rows]
        for result in results:
            connection.execute(window_results.insert().values(**result.to_row()))
        again = list(connection.execute(sa.select(text).order_by(window_results.c.id)).scalars())
    engine.dispose()

    assert [r.check for r in results] == list(old)
    assert again == written


@pytest.mark.parametrize(
    ("check", "details", "says"),
    [
        (
            Check.DATA_QUALITY,
            {"features": {}, "requests": {"requests": 1, "rejected": 0, "rate": "high"}},
            "requests.rate:",
        ),
        (Check.FEATURE_DRIFT, {"threshold": 0.05, "drifted": []}, "p_values: Field required"),
        (Check.ROLLING_ACCURACY, {"task": "classification", "labels": 3}, "accuracy: Field"),
        (Check.ESTIMATED_ACCURACY, {"estimated_mae": 1.0}, "n_rows: Field required"),
    ],
    ids=["rate-not-a-number", "drift-without-p-values", "class-figures-missing", "no-n-rows"],
)
def test_details_that_do_not_fit_their_check_are_one_error_naming_the_field(
    check: Check, details: dict[str, Any], says: str
) -> None:
    with pytest.raises(StoredResultError, match="'details' is malformed") as raised:
        WindowResult.from_row({"id": 1, **_row(check, details)})

    assert says in str(raised.value) and "'v1:1-500'" in str(raised.value)
