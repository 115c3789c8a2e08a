"""``watchkeeper replay``: stream held-back rows (Ames sales by default) through the HTTP
API.

Rows are sent in time order at a chosen rate; each row's label (its true target: a
price, a class) is posted to ``/feedback`` ``feedback_delay`` seconds after its
prediction, as ground truth arriving late would be. This is how a user watches the
platform meet real drift, and how the integration tests drive it.
"""

from __future__ import annotations

import heapq
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson
import pandas as pd
import requests

from watchkeeper.dataset import Dataset, DatasetError
from watchkeeper.task import json_label

log = logging.getLogger(__name__)

FEEDBACK_ATTEMPTS = 5


@dataclass
class ReplayReport:
    sent: int = 0
    accepted: int = 0
    rejected: int = 0
    feedback_posted: int = 0
    feedback_failed: int = 0
    statuses: dict[int, int] = field(default_factory=dict)

    def summary(self) -> str:
        return (
            f"sent {self.sent} rows ({self.accepted} predicted, {self.rejected} rejected), "
            f"posted {self.feedback_posted} labels ({self.feedback_failed} refused)"
        )


JsonRecord = dict[str, Any]
"""One row as a client sends it in a ``/predict`` body: a free-form JSON object, the
server's validation says what it must hold."""


def json_records(frame: pd.DataFrame, categorical: Iterable[str] = ()) -> list[JsonRecord]:
    """Rows as JSON objects: NaN becomes null, NumPy numbers plain numbers, and the
    values of ``categorical`` columns their text, as training read them (a CSV's
    ``True`` is the category ``"True"``, which the server takes as a string only)."""
    texts = {name: frame[name].map(_category_text, na_action="ignore") for name in categorical}
    return orjson.loads(frame.assign(**texts).to_json(orient="records"))


def _category_text(value: Any) -> str:
    return value if isinstance(value, str) else str(value)


class Replayer:
    def __init__(
        self,
        url: str,
        *,
        rate: float = 0.0,
        batch_size: int = 1,
        feedback_delay: float = 5.0,
        timeout: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.url = url.rstrip("/")
        self.rate = rate
        self.batch_size = batch_size
        self.feedback_delay = feedback_delay
        self.timeout = timeout
        self.session = requests.Session()
        self._clock = clock
        self._sleep = sleep
        self._due: list[tuple[float, str, Any, int]] = []
        self._on_progress: Callable[[ReplayReport], None] = lambda _report: None

    def features(self) -> list[tuple[str, str]]:
        """The served model's features: each one's name and kind."""
        response = self.session.get(f"{self.url}/model", timeout=self.timeout)
        response.raise_for_status()
        return [(f["name"], f["kind"]) for f in response.json()["metadata"]["schema"]["features"]]

    def run(
        self,
        dataset: Dataset,
        *,
        limit: int | None = None,
        on_progress: Callable[[ReplayReport], None] | None = None,
    ) -> ReplayReport:
        """Send ``dataset`` (at most ``limit`` rows) and its late feedback.
        ``on_progress`` is called with the report so far after each request."""
        features = self.features()
        names = [name for name, _ in features]
        frame = (
            dataset.frame.sort_values(dataset.period, kind="stable")
            if dataset.period
            else dataset.frame
        )
        if limit is not None:
            frame = frame.head(limit)
        if missing := [name for name in names if name not in frame]:
            # another dataset's rows (the Ames sales sent to a model of other data)
            shown = ", ".join(missing[:5]) + (", …" if len(missing) > 5 else "")
            self.session.close()  # its connection to /model, as a finished run closes it
            raise DatasetError(
                f"the rows of {dataset.name!r} lack {len(missing)} of the {len(names)} "
                f"features the served model takes ({shown})"
            )
        categorical = [name for name, kind in features if kind == "categorical"]
        records = json_records(frame[names], categorical)
        # numbers for a regression target, class labels as JSON holds them otherwise
        actuals: list[Any] = [json_label(v) for v in frame[dataset.target].tolist()]
        report = ReplayReport()
        self._on_progress = on_progress or (lambda _report: None)
        started = self._clock()
        for start in range(0, len(records), self.batch_size):
            if self.rate > 0:  # pace by records sent so far
                wait = started + start / self.rate - self._clock()
                if wait > 0:
                    self._sleep(wait)
            self._send(records[start : start + self.batch_size], actuals[start:], report)
            self._post_due_feedback(report, final=False)
            self._on_progress(report)
        self._post_due_feedback(report, final=True)
        self.session.close()
        return report

    def _send(self, batch: list[JsonRecord], actuals: list[float], report: ReplayReport) -> None:
        body = {"features": batch[0]} if len(batch) == 1 else {"instances": batch}
        response = self.session.post(f"{self.url}/predict", json=body, timeout=self.timeout)
        report.sent += len(batch)
        report.statuses[response.status_code] = report.statuses.get(response.status_code, 0) + 1
        if response.status_code != 200:
            report.rejected += len(batch)
            log.warning("replay batch rejected (%d): %s", response.status_code, response.text[:300])
            return
        payload = response.json()
        items = [payload] if len(batch) == 1 else payload["predictions"]
        due = self._clock() + self.feedback_delay
        for item, actual in zip(items, actuals, strict=False):
            heapq.heappush(self._due, (due, item["id"], actual, 0))
        report.accepted += len(items)

    def _post_due_feedback(self, report: ReplayReport, *, final: bool) -> None:
        """Post the feedback that is due. A 503 means the server's database is down
        for now: those items are tried again a second later, up to
        ``FEEDBACK_ATTEMPTS`` times. (The server takes a label whether or not its
        prediction has reached the log.)"""
        while True:
            now = self._clock()
            ready = []
            while self._due and (final or self._due[0][0] <= now):
                ready.append(heapq.heappop(self._due))
            for start in range(0, len(ready), 500):
                self._post_feedback(ready[start : start + 500], report)
                self._on_progress(report)
            if not (final and self._due):
                return
            self._sleep(max(self._due[0][0] - self._clock(), 0))

    def _post_feedback(
        self, chunk: list[tuple[float, str, Any, int]], report: ReplayReport
    ) -> None:
        items = [{"id": pid, "actual": actual} for _, pid, actual, _ in chunk]
        response = self.session.post(
            f"{self.url}/feedback", json={"items": items}, timeout=self.timeout
        )
        if response.status_code == 200:
            report.feedback_posted += len(chunk)
            return
        retry = response.status_code == 503
        for _, pid, actual, attempts in chunk:
            if retry and attempts + 1 < FEEDBACK_ATTEMPTS:
                heapq.heappush(self._due, (self._clock() + 1.0, pid, actual, attempts + 1))
            else:
                report.feedback_failed += 1
        if not retry:
            log.warning("feedback refused (%d): %s", response.status_code, response.text[:300])
