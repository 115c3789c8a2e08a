"""Workers' multiprocess metric files read while a worker starts: prometheus-client
creates a worker's file empty and sizes it a moment later, and an empty one failed the
whole read (``struct.error``): a scrape during a worker restart answered 500, and a
starting worker could not see the versions its siblings serve (seen in CI)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from prometheus_client.mmap_dict import MmapedDict

from serving.metrics import exposition
from serving.sibling_versions import served_by_siblings


@pytest.fixture
def multiproc_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """One worker's file serving v2, and one a starting worker has created, not sized."""
    key = json.dumps(
        ["watchkeeper_model_info", "watchkeeper_model_info", {"model_version": "v2"}, "info"]
    )
    written = MmapedDict(str(tmp_path / "gauge_livemax_101.db"))
    written.write_value(key, 1.0, 0.0)
    written.close()
    (tmp_path / "gauge_livemax_102.db").touch()
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    return tmp_path


def test_metrics_are_exposed_while_a_worker_has_not_sized_its_file(multiproc_dir: Path) -> None:
    body, _ = exposition(None)  # type: ignore[arg-type]  # unused in multiprocess mode

    assert 'watchkeeper_model_info{model_version="v2"} 1.0' in body.decode()


def test_siblings_versions_are_read_while_a_worker_has_not_sized_its_file(
    multiproc_dir: Path,
) -> None:
    assert served_by_siblings() == ["v2"]
