"""The OOD score in the ``/predict`` response: every prediction carries the same
Mahalanobis score the monitor computes (the version's frozen reference), flagged above
the same threshold, and stored with the prediction in the log."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient

from monitoring.monitor import Monitor
from serving.log_entry import LogEntry
from serving.log_store import LogStore
from tests.serving.conftest import LogReader
from watchkeeper.db.engine import create_engine
from watchkeeper.db.tables import predictions
from watchkeeper.ood import SCORE_CAP
from watchkeeper.registry import ModelRegistry
from watchkeeper.settings import Settings


def _columns(records: list[dict[str, Any]]) -> dict[str, list[Any]]:
    return {name: [r[name] for r in records] for name in records[0]}


def _assert_ood(item: dict[str, Any]) -> tuple[float, bool]:
    ood = item["ood"]
    assert set(ood) == {"score", "flag"}
    assert isinstance(ood["score"], float) and ood["score"] >= 0
    assert isinstance(ood["flag"], bool)
    return ood["score"], ood["flag"]


def test_single_batch_and_columnar_predictions_carry_an_ood_score_and_flag(
    client: FlaskClient, replay_records: list[dict[str, Any]]
) -> None:
    rows = replay_records[:30]

    single = client.post("/predict", json={"features": rows[0]})
    batch = client.post("/predict", json={"instances": rows})
    columnar = client.post("/predict", json={"columns": _columns(rows)})

    assert (single.status_code, batch.status_code, columnar.status_code) == (200, 200, 200)
    by_instances = [_assert_ood(item) for item in batch.json["predictions"]]
    by_columns = [_assert_ood(item) for item in columnar.json["predictions"]]
    assert by_columns == by_instances
    # One row against a batch's first: BLAS takes another kernel for a matrix of one
    # row (a product of vectors) and may round the last bit differently on some CPUs.
    score, flag = _assert_ood(single.json)
    assert (score, flag) == (pytest.approx(by_instances[0][0], rel=1e-12), by_instances[0][1])
    # ordinary 2009–10 sales: most are near the reference, and not all score alike
    assert sum(flag for _, flag in by_instances) < 10
    assert len({score for score, _ in by_instances}) == 30


def test_a_far_out_row_is_flagged_with_the_capped_score_never_a_500(
    client: FlaskClient, replay_records: list[dict[str, Any]]
) -> None:
    far = {**replay_records[0], "Lot_Area": 1e308}  # finite, valid: overflows the distance

    single = client.post("/predict", json={"features": far})
    batch = client.post("/predict", json={"instances": [replay_records[1], far]})
    columnar = client.post("/predict", json={"columns": _columns([replay_records[1], far])})

    assert single.status_code == 200, single.json
    assert single.json["ood"] == {"score": SCORE_CAP, "flag": True}
    for response in (batch, columnar):
        assert response.status_code == 200, response.json
        assert response.json["predictions"][1]["ood"] == {"score": SCORE_CAP, "flag": True}
        assert response.json["predictions"][0]["ood"]["score"] < SCORE_CAP


def test_scores_are_stored_with_the_predictions_in_the_log(
    client: FlaskClient, replay_records: list[dict[str, Any]], log_reader: LogReader
) -> None:
    single = client.post("/predict", json={"features": replay_records[0]}).json
    batch = client.post("/predict", json={"instances": replay_records[1:6]}).json
    columnar = client.post("/predict", json={"columns": _columns(replay_records[6:9])}).json

    sent = {single["id"]: single["ood"]["score"]}
    for body in (batch, columnar):
        sent.update({item["id"]: item["ood"]["score"] for item in body["predictions"]})
    logged = {p["prediction_id"]: p["ood_score"] for p in log_reader.predictions()}
    assert logged == sent


def test_scores_are_identical_to_the_monitors(
    make_app: Callable[..., Flask],
    replay_records: list[dict[str, Any]],
    make_settings: Callable[..., Settings],
    database_url: str,
) -> None:
    app = make_app(ood_percentile=97.5)
    client = app.test_client()
    rows = [dict(r) for r in replay_records[:400]]
    rows[7] = {**rows[7], "Lot_Area": 1e308}
    schema = ModelRegistry(make_settings().storage.registry_path).load().model.schema
    # every nullable numeric feature missing: each takes the reference median
    rows[8] = {**rows[8], **{f.name: None for f in schema.numeric if f.nullable}}

    served = [client.post("/predict", json={"features": r}).json["ood"] for r in rows[:10]]
    served += [
        i["ood"] for i in client.post("/predict", json={"instances": rows[10:]}).json["predictions"]
    ]

    settings = make_settings(database_url=database_url, ood_percentile=97.5)
    monitor = Monitor(
        settings, create_engine(database_url), ModelRegistry(settings.storage.registry_path)
    )
    try:
        suite = monitor.suite("v1")
        frame = pd.DataFrame.from_records(rows, columns=list(suite.encoder.schema.names))
        expected = suite.ood_scores(frame)
        threshold = suite.ood_threshold
    finally:
        monitor.engine.dispose()
    scores = np.array([o["score"] for o in served])
    np.testing.assert_allclose(scores, expected, rtol=1e-9)
    assert [o["flag"] for o in served] == (expected > threshold).tolist()
    assert scores[7] == SCORE_CAP


def test_the_setting_turns_the_score_off(
    make_app: Callable[..., Flask],
    replay_records: list[dict[str, Any]],
    read_log: Callable[[Flask], LogReader],
) -> None:
    app = make_app(ood_in_response=False)
    client = app.test_client()

    single = client.post("/predict", json={"features": replay_records[0]})
    batch = client.post("/predict", json={"instances": replay_records[:2]})

    assert single.json["ood"] is None
    assert [item["ood"] for item in batch.json["predictions"]] == [None, None]
    assert [p["ood_score"] for p in read_log(app).predictions()] == [None, None, None]


def test_a_version_whose_reference_cannot_be_read_is_served_without_scores(
    make_app: Callable[..., Flask],
    replay_records: list[dict[str, Any]],
    registry_dir: Path,
    read_log: Callable[[Flask], LogReader],
) -> None:
    reference = registry_dir / "versions" / "v1" / "reference.json"
    reference.write_text(reference.read_text().replace("Lot_Area", "Lot_Arex", 1))  # tampered
    app = make_app()

    response = app.test_client().post("/predict", json={"features": replay_records[0]})

    assert response.status_code == 200
    assert response.json["ood"] is None
    assert [p["ood_score"] for p in read_log(app).predictions()] == [None]


def test_journal_lines_with_and_without_a_score_are_both_stored(
    database_url: str, replay_records: list[dict[str, Any]]
) -> None:
    """A line journaled before scores were served has no ``ood``: it is replayed
    with a NULL score (the monitor scores it later)."""

    def entry(request_id: str, ood: list[float] | None) -> LogEntry:
        made = LogEntry(
            request_id=request_id,
            received_at=pd.Timestamp("2026-11-29T12:00:00Z").to_pydatetime(),
            endpoint="/predict",
            method="POST",
            status_code=200,
            latency_seconds=0.01,
            model_version="v1",
            single=False,
            columns=_columns(replay_records[:2]),
            values=[200_000.0, 210_000.0],
            lower=[180_000.0, 190_000.0],
            upper=[220_000.0, 230_000.0],
        )
        if ood is not None:
            made.ood = ood
        return made

    new_line = entry("new", [1.5, SCORE_CAP]).to_line()
    head, tab, columns = entry("old", None).to_line().partition(b"\t")
    header = json.loads(head)
    header.pop("ood", None)  # as written before this field existed
    old_line = json.dumps(header).encode() + tab + columns.rstrip(b"\n")

    engine = create_engine(database_url)
    try:
        LogStore(engine).insert(
            [LogEntry.from_line(new_line.rstrip(b"\n")), LogEntry.from_line(old_line)]
        )
        with engine.connect() as connection:
            query = sa.select(predictions.c.prediction_id, predictions.c.ood_score)
            stored = {pid: score for pid, score in connection.execute(query)}
    finally:
        engine.dispose()
    assert stored == {"new.0": 1.5, "new.1": SCORE_CAP, "old.0": None, "old.1": None}


_SETTINGS = {"data_dir", "registry_path", "database_url", "log_enabled"}


def test_the_serving_process_scores_without_alibi_detect_or_the_monitor(
    make_settings: Callable[..., Settings], tmp_path: Path, replay_records: list[dict[str, Any]]
) -> None:
    """Serving builds the OOD reference from the version's state (core code only):
    alibi-detect takes seconds to import and pulls in transformers, and the monitor's
    package is not the server's."""
    settings = make_settings(database_url=f"sqlite:///{tmp_path / 'log.db'}", log_enabled=False)
    code = """
import json, sys
from prometheus_client import CollectorRegistry
from serving.app import create_app, shutdown
from watchkeeper.settings import Settings
app = create_app(Settings(**json.loads(sys.argv[1])), registry=CollectorRegistry())
body = app.test_client().post("/predict", json={"features": json.loads(sys.argv[2])}).json
shutdown(app)
loaded = {m.split(".")[0] for m in sys.modules} & {"alibi_detect", "transformers", "monitoring"}
print(json.dumps({"ood": body["ood"], "loaded": sorted(loaded)}))
"""
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            code,
            json.dumps(
                {k: v for k, v in settings.flat_dump(mode="json").items() if k in _SETTINGS}
            ),
            json.dumps(replay_records[0]),
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )

    assert result.returncode == 0, result.stderr[-3000:]
    answer = json.loads(result.stdout.strip().splitlines()[-1])
    assert answer["loaded"] == []
    assert isinstance(answer["ood"]["score"], float)


@pytest.mark.parametrize("form", ["single", "batch"])
def test_documented_response_requires_the_ood_field(client: FlaskClient, form: str) -> None:
    components = client.get("/openapi.json").json["components"]["schemas"]
    schema = components["SingleResponse" if form == "single" else "PredictionItem"]

    assert "ood" in schema["required"]
    assert "ood" in schema["properties"]
