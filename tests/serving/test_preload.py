"""What gunicorn's master imports before it forks the workers
(:mod:`serving.preload`): every heavy library a worker needs, and no thread."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

HEAVY = ["numpy", "pandas", "scipy", "sklearn", "skops", "sqlalchemy", "flask"]
"""~3 s of CPU together, most of it skops listing every scikit-learn estimator."""

WORKER = """
import json, sys, threading, time
from serving import gunicorn_conf

gunicorn_conf.on_starting(None)  # the master, before the fork
threads = threading.active_count()
before = set(sys.modules)
started = time.process_time()
from serving.app import create_app, shutdown

app = create_app()  # what a forked worker does
spent = time.process_time() - started
shutdown(app, timeout=10)
imported = {m.split(".")[0] for m in sys.modules} - {m.split(".")[0] for m in before}
print(json.dumps({"threads": threads, "imported": sorted(imported), "cpu": spent}))
"""


def test_the_master_imports_what_a_worker_needs_and_starts_no_thread(
    registry_dir: Path, tmp_path: Path
) -> None:
    """A worker imported scikit-learn, skops and the rest itself, ~3 s of CPU, again in
    every worker gunicorn started (at start, after a crash). A thread the master
    started would not survive the fork."""
    environment = {
        **os.environ,
        "WATCHKEEPER_REGISTRY_PATH": str(registry_dir),
        "WATCHKEEPER_DATA_DIR": str(tmp_path / "var"),
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "metrics"),
    }
    result = subprocess.run(
        [sys.executable, "-c", WORKER],
        env=environment,
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )

    outcome = json.loads(result.stdout.strip().splitlines()[-1])
    assert outcome["threads"] == 1
    assert [name for name in HEAVY if name in outcome["imported"]] == []
