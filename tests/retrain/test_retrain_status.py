"""The request statuses and run outcomes are the strings the schema and the other
readers of those columns assume."""

from __future__ import annotations

from retrain.metrics import OUTCOMES
from watchkeeper.db.retention import _OPEN_REQUEST_STATES
from watchkeeper.db.tables import retrain_requests
from watchkeeper.retrain_status import FINISHED_OUTCOMES, RequestStatus, RunOutcome


def test_a_new_request_is_pending_as_the_column_default_says() -> None:
    default = retrain_requests.c.status.server_default
    assert default is not None and default.arg == RequestStatus.PENDING


def test_retention_keeps_exactly_the_requests_not_yet_done() -> None:
    assert set(_OPEN_REQUEST_STATES) == {RequestStatus.PENDING, RequestStatus.RUNNING}


def test_running_is_no_finished_outcome() -> None:
    assert RunOutcome.RUNNING not in FINISHED_OUTCOMES
    assert set(OUTCOMES) == set(RunOutcome) - {RunOutcome.RUNNING}
    assert [str(o) for o in OUTCOMES] == ["promoted", "rejected", "failed"]
