"""A retraining job on Ames: train on 2006–2007 plus labelled 2008–2010 predictions,
judge on the newest sales, promote only a better candidate, record everything."""

from __future__ import annotations

import json
from collections.abc import Callable

import numpy as np
import pytest
import sqlalchemy as sa

from retrain.job import GatePolicy, RetrainJob, decide
from retrain.lease import Lease
from watchkeeper import retrain_queue
from watchkeeper.dataset import Dataset
from watchkeeper.db.tables import retrain_requests as requests_table
from watchkeeper.db.tables import retrain_runs
from watchkeeper.registry import ModelRegistry
from watchkeeper.retrain_options import RetrainOptions
from watchkeeper.schema import IGNORED_NO_VALUES, IgnoredColumn
from watchkeeper.settings import Settings
from watchkeeper.training import TrainedModel
from watchkeeper.version_metadata import ModelMetrics
from watchkeeper_cli.main import main


def _runs(engine: sa.Engine) -> list[dict]:
    with engine.connect() as connection:
        return [dict(r._mapping) for r in connection.execute(sa.select(retrain_runs))]


def test_better_candidate_is_promoted_as_its_metrics_dictate(
    make_job: Callable[..., RetrainJob],
    labelled_log: int,
    engine: sa.Engine,
    settings: Settings,
    ames: Dataset,
) -> None:
    request_id = retrain_queue.enqueue(engine, trigger="monitor", reason="drift: test")

    result = make_job().run()

    [run] = _runs(engine)
    candidate, champion = run["candidate_metrics"], run["champion_metrics"]
    # the decision is the one the recorded metrics dictate
    expected = candidate["mae"] < champion["mae"] * (1 - settings.retrain.margin) and (
        settings.retrain.min_coverage <= candidate["coverage"] <= settings.retrain.max_coverage
    )
    assert expected, (candidate, champion)
    assert result.outcome == run["outcome"] == "promoted"
    assert (run["champion_version"], run["candidate_version"]) == ("v1", "v2")
    assert run["trigger"] == "monitor" and run["request_ids"] == [request_id]
    assert run["data"]["holdout_rows"] == pytest.approx(labelled_log * 0.2, abs=1)
    base = len(ames.between(None, 200712).frame)  # the champion's own training sales
    assert run["data"]["training_rows"] == base + labelled_log - run["data"]["holdout_rows"]
    registry = ModelRegistry(settings.storage.registry_path)
    assert registry.current_version() == "v2"
    meta = registry.metadata("v2")
    assert meta["status"] == "promoted" and meta["notes"]["run_id"] == run["id"]
    assert meta["training_window"]["base"]["end"] == 200712
    assert registry.load("v2").model.has_loss_estimator  # its MAE estimable before labels
    with engine.connect() as connection:
        status = connection.execute(sa.select(requests_table.c.status)).scalar()
    assert status == "done"


def test_worse_candidate_is_registered_as_rejected_and_not_served(
    make_job: Callable[..., RetrainJob], labelled_log: int, engine: sa.Engine, settings: Settings
) -> None:
    # a deliberately weak model
    retrain_queue.enqueue(
        engine, trigger="manual", reason="test", options=RetrainOptions(max_iter=2)
    )
    result = make_job().run()

    [run] = _runs(engine)
    assert run["candidate_metrics"]["mae"] > run["champion_metrics"]["mae"]
    assert result.outcome == run["outcome"] == "rejected"
    assert "does not beat the champion" in run["decision_reason"]
    registry = ModelRegistry(settings.storage.registry_path)
    assert registry.current_version() == "v1"
    assert registry.metadata("v2")["status"] == "rejected"
    assert registry.metadata("v2")["notes"]["reason"] == run["decision_reason"]


def test_too_little_labelled_data_fails_the_run_with_the_reason(
    make_job: Callable[..., RetrainJob], engine: sa.Engine, settings: Settings
) -> None:
    retrain_queue.enqueue(engine, trigger="manual", reason="test")
    result = make_job().run()

    [run] = _runs(engine)
    assert result.outcome == run["outcome"] == "failed"
    assert "labelled predictions" in run["decision_reason"]
    assert ModelRegistry(settings.storage.registry_path).versions() == ["v1"]


def test_only_one_job_runs_while_the_lease_is_held(
    make_job: Callable[..., RetrainJob], engine: sa.Engine
) -> None:
    retrain_queue.enqueue(engine, trigger="manual", reason="test")
    from retrain.lease import Lease

    held = Lease(engine, 60)
    assert held.acquire()

    assert make_job().run() is None
    assert _runs(engine) == []
    assert len(retrain_queue.pending(engine)) == 1  # waits for the next job
    held.release()


def test_options_queued_while_a_job_runs_are_what_the_next_job_trains_with(
    make_job: Callable[..., RetrainJob],
    labelled_log: int,
    engine: sa.Engine,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`watchkeeper retrain --max-iter 2` while another job holds the lease said its
    request was queued, and the next job trained with the champion's 100 iterations."""
    for name, value in {
        "DATA_DIR": settings.storage.data_dir,
        "REGISTRY_PATH": settings.storage.registry_path,
        "DATABASE_URL": settings.storage.database_url,
    }.items():
        monkeypatch.setenv(f"WATCHKEEPER_{name}", str(value))
    running = Lease(engine, 60, holder="the worker's job")
    assert running.acquire()

    assert main(["retrain", "--max-iter", "2", "--reason", "weak on purpose"]) == 0
    [line] = capsys.readouterr().out.splitlines()
    assert line.endswith("is queued for the next one, to train with --max-iter 2"), line
    running.release()
    drift = retrain_queue.enqueue(engine, trigger="monitor", reason="drift: test")
    result = make_job().run()  # the worker's next job, which knows nothing of the command

    assert result is not None and result.candidate_version is not None
    registry = ModelRegistry(settings.storage.registry_path)
    assert registry.record(result.candidate_version).params.max_iter == 2
    assert registry.record("v1").params.max_iter != 2
    [run] = _runs(engine)
    assert run["reason"] == "weak on purpose"
    # the drift request asks for the champion's options: left for a job of its own
    assert [r.id for r in retrain_queue.pending(engine)] == [drift]


def test_concurrent_triggers_and_jobs_make_exactly_one_run(
    make_job: Callable[..., RetrainJob], engine: sa.Engine
) -> None:
    from concurrent.futures import ThreadPoolExecutor

    ids = [retrain_queue.enqueue(engine, trigger="manual", reason=f"r{i}") for i in range(6)]

    with ThreadPoolExecutor(max_workers=3) as pool:
        results = list(pool.map(lambda _: make_job().run(), range(3)))

    [run] = _runs(engine)
    assert sorted(run["request_ids"]) == sorted(ids)
    assert sum(r is not None for r in results) == 1
    assert retrain_queue.pending(engine) == []


def test_nothing_pending_runs_nothing(
    make_job: Callable[..., RetrainJob], engine: sa.Engine
) -> None:
    assert make_job().run() is None
    assert _runs(engine) == []


def test_a_crashed_jobs_lease_is_taken_over_after_it_expires(engine: sa.Engine) -> None:
    from retrain.lease import Lease

    crashed = Lease(engine, seconds=-1)  # already expired when taken
    assert crashed.acquire()

    successor = Lease(engine, 60)
    assert successor.acquire()
    assert successor.current_holder() == successor.holder


@pytest.mark.parametrize(
    ("candidate", "predictions", "promote", "why"),
    [
        ({"mae": 90.0, "coverage": 0.9}, [1.0, 2.0], True, "MAE 90"),
        ({"mae": 99.0, "coverage": 0.9}, [1.0, 2.0], False, "does not beat"),
        ({"mae": 50.0, "coverage": 0.7}, [1.0, 2.0], False, "coverage 70.0%"),
        ({"mae": 50.0, "coverage": 0.9}, [1.0, np.nan], False, "NaN"),
    ],
    ids=["better", "not-by-the-margin", "coverage-out-of-bounds", "nan-predictions"],
)
def test_gate(
    trained: TrainedModel, candidate: dict, predictions: list, promote: bool, why: str
) -> None:
    schema = trained.model.schema
    decision = decide(
        GatePolicy(margin=0.02, min_coverage=0.8, max_coverage=0.98),
        ModelMetrics(**candidate),
        ModelMetrics(mae=100.0, coverage=0.9),
        candidate_predictions=np.array(predictions),
        candidate_schema=schema,
        champion_schema=schema,
    )

    assert decision.promote is promote
    assert why in decision.reason


def test_a_candidate_keeps_the_champion_s_ignored_columns(
    make_job: Callable[..., RetrainJob],
    make_labelled_log: Callable[..., list[str]],
    engine: sa.Engine,
    settings: Settings,
) -> None:
    """A retraining's rows hold only the champion's features (an ignored column is not
    logged): its candidate had no ignored column, and once served refused the records
    shaped like the original training data again."""
    ignored = IgnoredColumn("Pool_Empty", IGNORED_NO_VALUES)
    path = settings.storage.registry_path / "versions" / "v1" / "metadata.json"
    metadata = json.loads(path.read_text())
    metadata["schema"]["ignored"] = [{"name": ignored.name, "reason": ignored.reason}]
    path.write_text(json.dumps(metadata))

    def with_the_column(records: list[dict]) -> None:
        for record in records:
            record[ignored.name] = None

    make_labelled_log(records=with_the_column)
    retrain_queue.enqueue(engine, trigger="monitor", reason="drift: test")
    make_job().run()

    registry = ModelRegistry(settings.storage.registry_path)
    assert registry.record("v2").feature_schema.ignored == (ignored,)
