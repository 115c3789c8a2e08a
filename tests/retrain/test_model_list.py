"""`watchkeeper model list` and `model show` after a real retraining run: a candidate's
figures are shown beside the champion's on the same holdout, and every line says which
data its figures were measured on. The run reports its stages to a progress display."""

from __future__ import annotations

import io
import json
import re
from collections.abc import Callable

import pytest
import sqlalchemy as sa

from retrain.job import RetrainJob
from watchkeeper import retrain_queue
from watchkeeper.db.tables import retrain_runs
from watchkeeper.figures import amount
from watchkeeper.progress import Stages
from watchkeeper.settings import Settings
from watchkeeper_cli.main import main


@pytest.fixture
def retrained(
    make_job: Callable[..., RetrainJob],
    labelled_log: int,
    engine: sa.Engine,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
) -> dict:
    """v1 as trained, v2 from one retraining run; the run's row, and the stages it
    showed."""
    retrain_queue.enqueue(engine, trigger="manual", reason="test")
    shown = io.StringIO()
    make_job(stages=Stages(RetrainJob.STAGES, stream=shown, enabled=True)).run()
    monkeypatch.setenv("WATCHKEEPER_REGISTRY_PATH", str(settings.storage.registry_path))
    with engine.connect() as connection:
        (run,) = connection.execute(sa.select(retrain_runs)).mappings().all()
    return {**run, "shown": shown.getvalue()}


def test_the_run_shows_its_stages(retrained: dict) -> None:
    lines = retrained["shown"].splitlines()

    assert len(lines) == RetrainJob.STAGES == 2
    assert re.fullmatch(r"\[1/2\] loading the champion and the labelled data … \d+\.\d s", lines[0])
    assert re.fullmatch(r"\[2/2\] training a candidate and judging it .* … \d+\.\d s", lines[1])


def test_model_list_compares_a_candidate_with_the_champion_on_its_holdout(
    retrained: dict, capsys: pytest.CaptureFixture[str]
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
    retrained: dict, capsys: pytest.CaptureFixture[str]
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
