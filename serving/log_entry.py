"""One log entry: a request and the predictions it produced.

The request thread builds an entry from what it already has (parsed features,
prediction arrays); turning it into table rows happens on the writer thread.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
import orjson

# Column widths of the ``requests`` table; longer client-supplied strings are cut
# rather than failing the insert.
_MAX_CLIENT_ID = 128
_MAX_ENDPOINT = 64


def prediction_id(request_id: str, index: int, single: bool) -> str:
    """A single-record request's prediction shares its request id; batch items are
    ``<request_id>.<index>``."""
    return request_id if single else f"{request_id}.{index}"


@dataclass(slots=True)
class LogEntry:
    request_id: str
    received_at: datetime
    endpoint: str
    method: str
    status_code: int
    latency_seconds: float
    model_version: str | None = None
    error: dict[str, Any] | None = None
    body: str | None = None
    client_request_id: str | None = None
    single: bool = True
    features: list[dict[str, Any]] = field(default_factory=list)
    values: list[float] | np.ndarray = field(default_factory=list)
    lower: list[float] | np.ndarray = field(default_factory=list)
    upper: list[float] | np.ndarray = field(default_factory=list)

    def request_row(self) -> dict[str, Any]:
        return {
            "request_id": self.request_id,
            "received_at": self.received_at,
            "endpoint": self.endpoint[:_MAX_ENDPOINT],
            "method": self.method,
            "status_code": self.status_code,
            "latency_seconds": self.latency_seconds,
            "model_version": self.model_version,
            "n_items": len(self.features),
            "error": self.error,
            "body": self.body,
            "client_request_id": (self.client_request_id or None)
            and self.client_request_id[:_MAX_CLIENT_ID],
        }

    def prediction_rows(self) -> list[dict[str, Any]]:
        values, lower, upper = (
            np.asarray(a, dtype=float).tolist() for a in (self.values, self.lower, self.upper)
        )
        return [
            {
                "prediction_id": prediction_id(self.request_id, i, self.single),
                "request_id": self.request_id,
                "item_index": i,
                "created_at": self.received_at,
                "model_version": self.model_version,
                "features": features,
                "prediction": values[i],
                "lower": lower[i],
                "upper": upper[i],
            }
            for i, features in enumerate(self.features)
        ]

    def to_json(self) -> bytes:
        """One line of a spill file."""
        return orjson.dumps(
            {
                "request_id": self.request_id,
                "received_at": self.received_at.isoformat(),
                "endpoint": self.endpoint,
                "method": self.method,
                "status_code": self.status_code,
                "latency_seconds": self.latency_seconds,
                "model_version": self.model_version,
                "error": self.error,
                "body": self.body,
                "client_request_id": self.client_request_id,
                "single": self.single,
                "features": self.features,
                "values": self.values,
                "lower": self.lower,
                "upper": self.upper,
            },
            option=orjson.OPT_SERIALIZE_NUMPY,
        )

    @classmethod
    def from_json(cls, line: bytes) -> LogEntry:
        data = orjson.loads(line)
        data["received_at"] = datetime.fromisoformat(data["received_at"])
        return cls(**data)
