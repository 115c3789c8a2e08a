"""Scenarios of the serving benchmark and the request body each server gets for them.

Every server answers the same rows: Watchkeeper in its own forms (``features``,
``instances``, ``columns``, or an Arrow IPC stream), BentoML as a list of records,
MLServer as V2 inference inputs (one tensor per feature).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.ipc as ipc

from serving.arrow_ipc import ARROW_STREAM
from watchkeeper.schema import FeatureSchema

JSON = "application/json"


class ServerKind(StrEnum):
    WATCHKEEPER = "watchkeeper"
    BENTOML = "bentoml"
    MLSERVER = "mlserver"


@dataclass(frozen=True)
class Scenario:
    name: str
    rows: int
    concurrency: int
    columnar: bool = False
    content_type: str = JSON  # Watchkeeper's body; peers always get JSON


SCENARIOS: tuple[Scenario, ...] = (
    Scenario("single", 1, 8),
    Scenario("batch-100", 100, 4),
    Scenario("batch-1000", 1000, 2),
    Scenario("columnar-1000", 1000, 2, columnar=True),
    # Categories as plain strings, as pyarrow writes a DataFrame's object columns
    # (dictionary-encoded ones, a pandas Categorical's, cost the server less).
    Scenario("arrow-1000", 1000, 2, columnar=True, content_type=ARROW_STREAM),
)

PREDICT_PATHS = {
    ServerKind.WATCHKEEPER: "/predict",
    ServerKind.BENTOML: "/predict",
    ServerKind.MLSERVER: "/v2/models/watchkeeper/infer",
}


def first_prediction(kind: ServerKind, answer: Any) -> float:
    """The first point prediction in a server's parsed answer."""
    if kind is ServerKind.WATCHKEEPER:
        return (
            answer["prediction"]
            if "prediction" in answer
            else answer["predictions"][0]["prediction"]
        )
    if kind is ServerKind.BENTOML:
        return answer[0]["prediction"]
    return next(o["data"][0] for o in answer["outputs"] if o["name"] == "prediction")


def columns_of(records: list[dict[str, Any]], schema: FeatureSchema) -> dict[str, list[Any]]:
    """Records as the dict of columns ``/predict`` hands to ``Model.predict``."""
    return {name: [record[name] for record in records] for name in schema.names}


def arrow_stream(columns: dict[str, list[Any]], schema: FeatureSchema) -> bytes:
    """The columns as an uncompressed Arrow IPC stream: numbers as pyarrow infers them
    (int64 or double), categories as plain strings."""
    table = pa.table(
        {
            f.name: pa.array(columns[f.name], None if f.is_numeric else pa.string())
            for f in schema.features
        }
    )
    sink = pa.BufferOutputStream()
    with ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def body(
    kind: ServerKind, scenario: Scenario, records: list[dict[str, Any]], schema: FeatureSchema
) -> bytes:
    rows = records[: scenario.rows]
    if kind is ServerKind.WATCHKEEPER:
        if scenario.content_type == ARROW_STREAM:
            return arrow_stream(columns_of(rows, schema), schema)
        if scenario.columnar:
            return orjson.dumps({"columns": columns_of(rows, schema)})
        if scenario.rows == 1:
            return orjson.dumps({"features": rows[0]})
        return orjson.dumps({"instances": rows})
    if kind is ServerKind.BENTOML:
        return orjson.dumps({"instances": rows})
    inputs = [
        {
            "name": feature.name,
            "shape": [len(rows)],
            "datatype": "FP64" if feature.is_numeric else "BYTES",
            "data": [record[feature.name] for record in rows],
        }
        for feature in schema.features
    ]
    return orjson.dumps({"inputs": inputs})
