"""The writer-interference experiment's side process: it stores every entry it journals."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import sqlalchemy as sa

from watchkeeper.db.engine import create_engine
from watchkeeper.db.tables import requests

SCRIPT = Path(__file__).resolve().parents[2] / "bench" / "writer_interference.py"


def test_the_side_process_stores_every_entry_it_journals_and_reports_its_cpu(
    tmp_path: Path,
) -> None:
    """Its CPU per entry is what the experiment charges a writer of its own: only
    meaningful if every entry journaled at the asked rate was stored when it reports."""
    records = tmp_path / "records.json"
    records.write_text(json.dumps([{"Lot_Area": 8450, "Neighborhood": "North_Ames"}] * 3))
    url = f"sqlite:///{tmp_path / 'side.db'}"
    done = subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            "side",
            "--database-url",
            url,
            "--journal",
            str(tmp_path / "journal"),
            "--records",
            str(records),
            "--rate",
            "200",
            "--seconds",
            "0.5",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    ready, report = done.stdout.splitlines()
    assert ready == "ready"
    figures = json.loads(report)
    assert figures["entries"] == 100
    assert figures["cpu_seconds"] > 0
    engine = create_engine(url)
    with engine.connect() as connection:
        stored = connection.execute(sa.select(sa.func.count()).select_from(requests)).scalar()
    engine.dispose()
    assert stored == 100
