"""Predictions written into the log as its writer stores them (a request per row of
``requests``, its predictions in ``requests.outputs``), for the monitor's tests: rows
given one per prediction, as the log used to hold them, are grouped into their
requests and stored through :class:`serving.log_store.LogStore`."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import numpy as np
import orjson
import sqlalchemy as sa

from serving.log_entry import LogEntry
from serving.log_store import LogStore
from watchkeeper.db.engine import create_engine
from watchkeeper.db.max_ood import highest_score
from watchkeeper.db.tables import predictions, requests
from watchkeeper.settings import Settings

FIELDS = ("prediction", "lower", "upper", "ood_score", "probabilities")
"""An item's values in ``requests.outputs``, in order."""


def prediction_id(request_id: str, item_index: int, single: bool) -> str:
    return request_id if single else f"{request_id}.{item_index}"


def store_rows(engine: sa.Engine, rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """Store ``rows`` (keys ``request_id``, ``item_index``, ``created_at``,
    ``model_version``, ``prediction``, ``lower``, ``upper``; optionally ``features`` (a
    record), ``ood_score``, ``probabilities``, and ``single``, true by default for a
    request of one row) as their requests, in the order each first appears; a request's
    time and version are its first row's. Returns each row's prediction id."""
    grouped: dict[str, list[Mapping[str, Any]]] = {}
    for row in rows:
        grouped.setdefault(row["request_id"], []).append(row)
    entries = []
    ids: dict[tuple[str, int], str] = {}
    for request_id, items in grouped.items():
        items = sorted(items, key=lambda r: r["item_index"])
        if [r["item_index"] for r in items] != list(range(len(items))):
            raise ValueError(f"request {request_id}: items are not 0..{len(items) - 1}")
        single = bool(items[0].get("single", len(items) == 1))
        for row in items:
            ids[request_id, row["item_index"]] = prediction_id(
                request_id, row["item_index"], single
            )
        entries.append(_entry(request_id, items, single))
    LogStore(engine).insert(entries)
    return [ids[row["request_id"], row["item_index"]] for row in rows]


def _entry(request_id: str, items: list[Mapping[str, Any]], single: bool) -> LogEntry:
    names = list(dict.fromkeys(n for r in items for n in (r.get("features") or {})))
    columns = {n: [(r.get("features") or {}).get(n) for r in items] for n in names}
    scores = [r.get("ood_score") for r in items]
    probabilities = [r.get("probabilities") for r in items]
    if any(p is None for p in probabilities) and any(p is not None for p in probabilities):
        raise ValueError(f"request {request_id}: probabilities for some items only")
    first = items[0]
    return LogEntry(
        request_id=request_id,
        received_at=first["created_at"],
        endpoint="/predict",
        method="POST",
        status_code=200,
        latency_seconds=0.01,
        model_version=first["model_version"],
        single=single,
        columns=columns,
        values=[float(r["prediction"]) for r in items],
        lower=[float(r["lower"]) for r in items],
        upper=[float(r["upper"]) for r in items],
        # an item without a score among scored ones: NaN, which the monitor scores
        ood=None
        if all(s is None for s in scores)
        else [math.nan if s is None else float(s) for s in scores],
        probabilities=None if probabilities[0] is None else probabilities,
    )


def update_items(engine: sa.Engine, prediction_ids: Iterable[str], **values: Any) -> None:
    """Set ``values`` (of :data:`FIELDS`) of the predictions ``prediction_ids`` in their
    requests' outputs, as the monitor's OOD scores are written."""
    wanted: dict[str, list[int]] = {}
    for pid in prediction_ids:
        request_id, _, index = pid.partition(".")
        wanted.setdefault(request_id, []).append(int(index or 0))
    text = sa.cast(requests.c.outputs, sa.Text)
    with engine.begin() as connection:
        stored = connection.execute(
            sa.select(requests.c.request_id, text).where(requests.c.request_id.in_(wanted))
        ).all()
        for request_id, outputs in stored:
            items = orjson.loads(outputs)
            for index in wanted[request_id]:
                item = items[index]
                for name, value in values.items():
                    at = FIELDS.index(name)
                    item.extend([None] * (at + 1 - len(item)))
                    item[at] = _json(value)
                while len(item) > 3 and item[-1] is None:
                    item.pop()  # as the writer leaves out what it has not
            top = highest_score(i[3] for i in items if i is not None and len(i) > 3)
            connection.execute(
                sa.text(
                    "UPDATE requests SET outputs = :outputs, max_ood_score = :top"
                    " WHERE request_id = :id"
                ),
                {"outputs": orjson.dumps(items).decode(), "top": top, "id": request_id},
            )


def _json(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    return value


def positions(engine: sa.Engine) -> list[int]:
    """Every prediction's position (``predictions.seq``), in order."""
    with engine.connect() as connection:
        return list(
            connection.execute(
                sa.select(predictions.c.seq).order_by(
                    predictions.c.request_seq, predictions.c.item_index
                )
            ).scalars()
        )


def write_log(
    settings: Settings, records: list[dict[str, Any]], predicted: list[float]
) -> list[int]:
    """Rows straight into the prediction log, a request each, as any writer (an older
    server, a bulk import) could have left them: the monitor must cope with what the log
    holds. Returns the rows' positions (``predictions.seq``), in order."""
    now = datetime.now(UTC)
    rows = [
        {
            "request_id": f"p{i:08d}",  # and its prediction id
            "item_index": 0,
            "created_at": now,
            "model_version": "v1",
            "features": record,
            "prediction": value,
            "lower": value * 0.8,
            "upper": value * 1.2,
        }
        for i, (record, value) in enumerate(zip(records, predicted, strict=True))
    ]
    engine = create_engine(settings.storage.database_url)
    store_rows(engine, rows)
    at = positions(engine)
    engine.dispose()
    return at


AREAS = (
    "Lot_Area",
    "Mas_Vnr_Area",
    "BsmtFin_SF_2",
    "Bsmt_Unf_SF",
    "Total_Bsmt_SF",
    "First_Flr_SF",
    "Second_Flr_SF",
    "Gr_Liv_Area",
    "Garage_Area",
    "Wood_Deck_SF",
    "Open_Porch_SF",
    "Enclosed_Porch",
    "Screen_Porch",
    "Pool_Area",
)
"""The Ames features that are areas: what a client sending them in m² gets wrong."""


def exponential_errors(mean: float, n: int) -> np.ndarray:
    """``n`` absolute errors at the quantiles of an exponential law: their mean is
    ``mean`` (to within 1 %) and their spread as wide as real errors', with no luck."""
    return -mean * np.log(1 - (np.arange(n) + 0.5) / n)
