"""`watchkeeper model list` and `model show` after a real retraining run: a candidate's
figures are shown beside the champion's on the same holdout, and every line says which
data its figures were measured on. The run reports its stages to a progress display."""

from __future__ import annotations

import io
import json
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from retrain.job import RetrainJob
from tests.conftest import _shell_settings
from tests.retrain.labelled_log import write_labelled_log
from watchkeeper import retrain_queue
from watchkeeper.dataset import Dataset
from watchkeeper.db.engine import create_engine
from watchkeeper.db.tables import retrain_runs
from watchkeeper.figures import amount
from watchkeeper.progress import Stages
from watchkeeper.registry import ModelRegistry
from watchkeeper.settings import Settings
from watchkeeper_cli.main import main


@pytest.fixture(scope="module")
def run(
    tmp_path_factory: pytest.TempPathFactory,
    registry_template: Path,
    sqlite_template: Path,
    ames: Dataset,
) -> dict[str, Any]:
    """v1 as trained, v2 from one retraining run; the run's row, the stages it showed,
    and the registry. Run once for the module (a run trains a model): its tests only
    read what it left."""
    directory = tmp_path_factory.mktemp("model-list")
    shutil.copytree(registry_template, directory / "registry")
    shutil.copyfile(sqlite_template, directory / "log.db")
    with pytest.MonkeyPatch.context() as patch:  # the settings the tests see, not the shell's
        for name in _shell_settings():
            patch.delenv(name)
        settings = Settings(
            data_dir=directory / "var",
            registry_path=directory / "registry",
            database_url=f"sqlite:///{directory / 'log.db'}",
            log_flush_interval=0.02,
            log_write_interval=0.02,
        )
    write_labelled_log(settings, ames)
    engine = create_engine(settings.storage.database_url)
    try:
        retrain_queue.enqueue(engine, trigger="manual", reason="test")
        shown = io.StringIO()
        RetrainJob(
            settings,
            engine,
            ModelRegistry(settings.storage.registry_path),
            stages=Stages(RetrainJob.STAGES, stream=shown, enabled=True),
        ).run()
        with engine.connect() as connection:
            (row,) = connection.execute(sa.select(retrain_runs)).mappings().all()
    finally:
        engine.dispose()
    return {**row, "shown": shown.getvalue(), "registry": settings.storage.registry_path}


@pytest.fixture
def retrained(run: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """The module's run, its registry the commands' (``WATCHKEEPER_REGISTRY_PATH``)."""
    monkeypatch.setenv("WATCHKEEPER_REGISTRY_PATH", str(run["registry"]))
    return run


def test_the_run_shows_its_stages(retrained: dict[str, Any]) -> None:
    lines = retrained["shown"].splitlines()

    assert len(lines) == RetrainJob.STAGES == 2
    took = r"(\d+\.\d s|\d+ min \d\d s)"  # a minute or more on a busy machine
    assert re.fullmatch(rf"\[1/2\] loading the champion and the labelled data … {took}", lines[0])
    assert re.fullmatch(rf"\[2/2\] training a candidate and judging it .* … {took}", lines[1])


def test_model_list_compares_a_candidate_with_the_champion_on_its_holdout(
    retrained: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["model", "list"]) == 0

    lines = capsys.readouterr().out.splitlines()
    (v1,) = [line for line in lines if line[2:].startswith("v1 ")]
    (v2,) = [line for line in lines if line[2:].startswith("v2 ")]
    # v1 is measured on its validation period, and says so
    assert "validation: ames 2008-01 to 2008-12" in v1
    # v2's MAE is its holdout MAE, shown beside the champion's MAE on the same holdout
    candidate, champion = retrained["candidate_metrics"], retrained["champion_metrics"]
    assert amount(candidate["mae"]) in v2
    assert f"v1 {amount(champion['mae'])}" in v2
    assert f"holdout of run {retrained['id']}" in v2
    assert f"newest {retrained['data']['holdout_rows']:,} labelled predictions" in v2
    assert any("not comparable" in line for line in lines)


def test_model_show_is_a_summary_and_json_on_request(
    retrained: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["model", "show", "v2"]) == 0

    text = capsys.readouterr().out
    assert text.startswith(f"v2 (current): promoted, by retraining run {retrained['id']}")
    assert f"holdout of run {retrained['id']}" in text
    assert f"champion v1 on the same rows: {amount(retrained['champion_metrics']['mae'])}" in text
    assert "{" not in text

    assert main(["model", "show", "v2", "--json"]) == 0
    metadata = json.loads(capsys.readouterr().out)
    assert metadata["version"] == "v2" and metadata["notes"]["run_id"] == retrained["id"]
