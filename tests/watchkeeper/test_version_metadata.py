"""A version's ``metadata.json`` is read into one validated record: every field a reader
uses (the data windows, the metrics, the notes of a retraining run, the training
parameters) is checked where the file is read, and a malformed one is one error that
names the field, not a ``KeyError`` or ``TypeError`` wherever it happens to be read."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.bad_versions import rewrite_metadata
from watchkeeper.errors import ArtifactIntegrityError
from watchkeeper.registry import ModelRegistry
from watchkeeper.training import TrainedModel
from watchkeeper.version_metadata import (
    CalibrationRecord,
    DataWindow,
    ModelMetrics,
    VersionStatus,
)

Meta = dict[str, Any]


def _with(path: tuple[str, ...], value: object) -> Callable[[Meta], Meta]:
    def change(meta: Meta) -> Meta:
        node = meta
        for key in path[:-1]:
            node = node.setdefault(key, {})
        node[path[-1]] = value
        return meta

    return change


def _without(section: str, key: str) -> Callable[[Meta], Meta]:
    def change(meta: Meta) -> Meta:
        del meta[section][key]
        return meta

    return change


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (_with(("training_window", "rows"), "many"), "training_window.rows"),
        (_without("training_window", "dataset"), "training_window.dataset"),
        (_with(("validation_window", "rows"), -1), "validation_window.rows"),
        (_with(("metrics", "mae"), "high"), "metrics.mae"),
        (_with(("notes", "run_id"), "seven"), "notes.run_id"),
        (
            _with(("notes", "champion_metrics_on_holdout"), {"mae": [1]}),
            "notes.champion_metrics_on_holdout.mae",
        ),
        (_with(("params", "max_iter"), "many"), "params.max_iter"),
        (_with(("status",), "paused"), "status"),
        (_with(("training_window", "target_quantiles"), [float("inf")]), "target_quantiles.0"),
        (_with(("training_window", "target_quantiles"), [1.0, float("nan")]), "target_quantiles.1"),
        (_with(("interval", "half_width"), float("inf")), "interval.half_width"),
    ],
    ids=[
        "rows-not-a-number",
        "window-without-dataset",
        "negative-rows",
        "metric-not-a-number",
        "run-id-not-a-number",
        "champion-metric-a-list",
        "parameter-not-a-number",
        "unknown-status",
        "infinite-target-quantile",
        "nan-target-quantile",
        "infinite-interval",
    ],
)
def test_a_malformed_field_is_one_error_naming_it(
    registry_dir: Path, change: Callable[[Meta], Meta], field: str
) -> None:
    rewrite_metadata(registry_dir, "v1", change)

    with pytest.raises(ArtifactIntegrityError, match="metadata of 'v1' is malformed") as caught:
        ModelRegistry(registry_dir).record("v1")
    message = str(caught.value)
    assert f"{field}:" in message and "\n" not in message


def test_the_record_reads_windows_metrics_and_parameters_typed(registry_dir: Path) -> None:
    record = ModelRegistry(registry_dir).record("v1")

    assert record.training_window.dataset == "ames"
    assert (record.training_window.start, record.training_window.end) == (200601, 200712)
    assert record.training_window.origin is record.training_window  # not a retrained one
    assert record.validation_window is not None and record.validation_window.start == 200801
    assert record.metrics.mae is not None and record.metrics.any_coverage is not None
    assert record.params.max_iter > 0
    assert record.notes.run_id is None and not record.metrics.model_fields_set - {
        "rows",
        "mae",
        "rmse",
        "mape",
        "coverage",
        "interval_width",
    }


def test_fields_the_record_does_not_name_are_kept(registry_dir: Path) -> None:
    """Newer writers add fields: older readers still load them, and a window written
    again keeps every key it was read with."""
    rewrite_metadata(registry_dir, "v1", _with(("training_window", "added_later"), [1, 2]))
    rewrite_metadata(registry_dir, "v1", _with(("notes", "written_by"), "a newer release"))

    record = ModelRegistry(registry_dir).record("v1")

    assert record.training_window.stored()["added_later"] == [1, 2]
    assert record.notes.model_extra == {"written_by": "a newer release"}


def test_a_window_is_stored_with_exactly_the_keys_it_was_built_with() -> None:
    built = {
        "dataset": "retraining",
        "rows": 120,
        "window_days": 30,
        "holdout_rows": 24,
        "base": {"dataset": "ames", "rows": 100, "start": 200601, "end": 200712},
    }

    window = DataWindow.model_validate(built)

    assert window.stored() == built  # no None fields added, 30 stays an integer
    assert window.origin.end == 200712


def test_a_version_without_validation_rows_has_no_metrics() -> None:
    assert not ModelMetrics().measured
    assert ModelMetrics(set_coverage=0.9).any_coverage == 0.9


@pytest.mark.parametrize("status", list(VersionStatus))
def test_a_status_is_stored_as_its_string_and_read_as_the_enum(
    registry_dir: Path, trained: TrainedModel, status: VersionStatus
) -> None:
    registry = ModelRegistry(registry_dir)
    version = registry.register(trained, make_current=False, status=status)

    assert registry.metadata(version)["status"] == status.value  # the file keeps the string
    assert registry.record(version).status is status
    assert registry.record(version).status.unfit == (status in ("rejected", "failed"))


def test_a_status_outside_the_enum_is_not_written(
    registry_dir: Path, trained: TrainedModel
) -> None:
    with pytest.raises(ValueError, match="'paused' is not a valid VersionStatus"):
        ModelRegistry(registry_dir).register(trained, status="paused")  # type: ignore[arg-type]


def test_a_schema_field_of_the_wrong_type_is_one_error_naming_the_feature(
    registry_dir: Path,
) -> None:
    def change(meta: Meta) -> Meta:
        [feature] = [f for f in meta["schema"]["features"] if f["name"] == "Gr_Liv_Area"]
        feature["minimum"] = "0"
        return meta

    rewrite_metadata(registry_dir, "v1", change)

    with pytest.raises(ArtifactIntegrityError, match="metadata of 'v1' is malformed") as caught:
        ModelRegistry(registry_dir).record("v1")
    assert "('Gr_Liv_Area'): minimum: Input should be a valid number" in str(caught.value)


def test_a_classifier_confidence_map_outside_zero_to_one_is_refused() -> None:
    with pytest.raises(ValueError, match="confidence.0"):
        CalibrationRecord(confidence=(float("nan"),), accuracy=(1.0,))
    with pytest.raises(ValueError, match="accuracy.0"):
        CalibrationRecord(confidence=(0.5,), accuracy=(float("inf"),))
