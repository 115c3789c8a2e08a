"""The model registry: versions, the atomic current pointer, and refusal of
tampered or untrusted artifacts."""

from __future__ import annotations

import errno
import json
import multiprocessing
import os
import signal
import socket
import threading
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import skops.io as sio

from watchkeeper.dataset import Dataset
from watchkeeper.errors import ArtifactIntegrityError, RegistryError
from watchkeeper.registry import (
    METADATA_FILE,
    MODEL_FILE,
    REFERENCE_FILE,
    VERSION_PREFIX,
    ModelRegistry,
)
from watchkeeper.registry_writes import write_atomic
from watchkeeper.training import TrainedModel


def test_loaded_model_predicts_as_the_trained_one(
    tmp_path: Path, trained: TrainedModel, ames: object
) -> None:
    registry = ModelRegistry(tmp_path)
    version = registry.register(trained)
    loaded = registry.load()
    rows = trained.reference.head(50)

    assert version == "v1" and loaded.version == "v1"
    np.testing.assert_allclose(loaded.model.predict(rows).value, trained.model.predict(rows).value)
    assert loaded.model.interval == trained.model.interval
    assert loaded.model.schema == trained.model.schema


def test_metadata_records_window_metrics_schema_and_hashes(
    registry_dir: Path, ames: Dataset
) -> None:
    meta = ModelRegistry(registry_dir).metadata("v1")
    sales = len(ames.between(None, 200712).frame)  # the default model's training sales

    quantiles = meta["training_window"].pop("target_quantiles")
    assert meta["training_window"] == {
        "dataset": "ames",
        "rows": sales,
        "period_column": "Sale_Period",
        "start": 200601,
        "end": 200712,
    }
    assert quantiles == sorted(quantiles) and 50_000 < quantiles[6] < 250_000  # the median
    assert meta["validation_window"]["start"] == 200801
    assert set(meta["metrics"]) >= {"mae", "rmse", "mape", "coverage"}
    assert len(meta["artifacts"][MODEL_FILE]["sha256"]) == 64
    assert meta["reference_rows"] == sales


def test_reference_sample_comes_back_typed_by_the_schema(registry_dir: Path, ames: Dataset) -> None:
    reference = ModelRegistry(registry_dir).reference("v1")

    assert len(reference) == len(ames.between(None, 200712).frame)
    assert reference["Gr_Liv_Area"].dtype == np.float64
    assert reference["Neighborhood"].dtype == object


def test_versions_increase_and_current_moves_only_when_asked(
    tmp_path: Path, trained: TrainedModel
) -> None:
    registry = ModelRegistry(tmp_path)
    registry.register(trained)
    second = registry.register(trained, make_current=False)

    assert registry.versions() == ["v1", "v2"]
    assert second == "v2"
    assert registry.current_version() == "v1"
    registry.set_current("v2")
    assert registry.current_version() == "v2"


def test_version_stamps_change_only_with_a_version_s_metadata_file(
    registry_dir: Path, trained: TrainedModel
) -> None:
    registry = ModelRegistry(registry_dir)
    first = registry.version_stamps()
    assert list(first) == registry.versions() == ["v1"]
    assert registry.version_stamps() == first  # read again, unchanged

    registry.register(trained, make_current=False)
    (registry_dir / "versions" / "v9").mkdir()  # incomplete: no metadata yet
    second = registry.version_stamps()
    assert list(second) == ["v1", "v2"] and second["v1"] == first["v1"]

    registry.set_status("v2", "rejected", reason="test")  # rewritten: a new file
    third = registry.version_stamps()
    assert third["v1"] == first["v1"] and third["v2"] != second["v2"]


def test_setting_current_to_an_unknown_version_is_refused(registry_dir: Path) -> None:
    with pytest.raises(RegistryError, match="v9"):
        ModelRegistry(registry_dir).set_current("v9")


def test_readers_never_see_a_partial_current_pointer(tmp_path: Path, trained: TrainedModel) -> None:
    registry = ModelRegistry(tmp_path)
    registry.register(trained)
    registry.register(trained)
    seen: set[str | None] = set()
    stop = threading.Event()

    def read() -> None:
        while not stop.is_set():
            seen.add(registry.current_version())

    reader = threading.Thread(target=read)
    reader.start()
    for i in range(300):
        registry.set_current("v1" if i % 2 else "v2")
    stop.set()
    reader.join()

    assert seen <= {"v1", "v2"} and seen


def test_tampered_artifact_is_refused_with_a_clear_error(registry_dir: Path) -> None:
    model_file = registry_dir / "versions" / "v1" / MODEL_FILE
    data = bytearray(model_file.read_bytes())
    data[len(data) // 2] ^= 0xFF
    model_file.write_bytes(bytes(data))

    with pytest.raises(ArtifactIntegrityError, match="SHA-256"):
        ModelRegistry(registry_dir).load()


def test_artifact_with_untrusted_types_is_refused(registry_dir: Path) -> None:
    from sklearn.preprocessing import FunctionTransformer

    version_dir = registry_dir / "versions" / "v1"
    blob = sio.dumps(FunctionTransformer(func=json.loads))
    (version_dir / MODEL_FILE).write_bytes(blob)
    meta = json.loads((version_dir / "metadata.json").read_text())
    import hashlib

    meta["artifacts"][MODEL_FILE]["sha256"] = hashlib.sha256(blob).hexdigest()
    (version_dir / "metadata.json").write_text(json.dumps(meta))

    with pytest.raises(ArtifactIntegrityError, match="untrusted types.*json.loads"):
        ModelRegistry(registry_dir).load()


def test_empty_registry_says_how_to_get_a_model(tmp_path: Path) -> None:
    with pytest.raises(RegistryError, match="no model is registered"):
        ModelRegistry(tmp_path).load()


@pytest.mark.parametrize(
    ("breaker", "problem"),
    [
        ("metadata-without-interval", "interval is required for a regression model"),
        ("metadata-a-list", "not a JSON object"),
    ],
)
def test_malformed_metadata_is_one_clear_integrity_error(
    registry_dir: Path, breaker: str, problem: str
) -> None:
    from tests.bad_versions import BREAKERS

    BREAKERS[breaker](registry_dir, "v1")

    with pytest.raises(ArtifactIntegrityError, match="metadata of 'v1' is malformed") as caught:
        ModelRegistry(registry_dir).load()
    assert problem in str(caught.value) and "\n" not in str(caught.value)


def test_loaded_version_carries_its_metadata_as_a_typed_record(registry_dir: Path) -> None:
    loaded = ModelRegistry(registry_dir).load()

    assert loaded.record.version == "v1" and loaded.record.status == "registered"
    assert loaded.record.interval.level == 0.9
    assert loaded.record.artifacts[MODEL_FILE].bytes > 0


def test_the_default_rollback_skips_a_version_that_failed(
    registry_dir: Path, trained: TrainedModel
) -> None:
    """An explicit rollback to a failed version is refused: the default one must not
    pick it either."""
    registry = ModelRegistry(registry_dir)
    registry.register(trained, make_current=False, status="failed")  # v2
    registry.register(trained)  # v3, current

    assert registry.rollback() == ("v3", "v1")


@pytest.mark.parametrize("name", ["v1\n", "v١", "v" + "1" * 19, "v" + "1" * 300])
def test_a_malformed_version_name_is_refused_without_the_registry_path(
    registry_dir: Path, name: str
) -> None:
    registry = ModelRegistry(registry_dir)

    with pytest.raises(RegistryError, match="is not a version name") as caught:
        registry.rollback(name, force=True)

    assert str(registry_dir) not in caught.value.message
    assert len(caught.value.message) < 200
    assert registry.current_version() == "v1"


def _register_killed_after_the_model(root: Path, trained: TrainedModel) -> None:
    """Register, and be killed (SIGKILL: no clean-up runs) once the model is written."""
    import watchkeeper.registry as registry_module

    def write_then_die(path: Path, data: bytes) -> None:
        if path.name == REFERENCE_FILE:
            os.kill(os.getpid(), signal.SIGKILL)
        write_atomic(path, data)

    registry_module.write_atomic = write_then_die  # type: ignore[assignment]
    ModelRegistry(root).register(trained, make_current=False)


def test_a_registration_killed_part_way_leaves_no_partial_version(
    registry_dir: Path, trained: TrainedModel
) -> None:
    """kill -9 while registering left versions/v2 holding a model and no metadata, for
    ever: never listed, never removed, its number skipped by every later version."""
    child = multiprocessing.get_context("fork").Process(
        target=_register_killed_after_the_model, args=(registry_dir, trained)
    )
    child.start()
    child.join(60)
    assert child.exitcode == -signal.SIGKILL
    registry = ModelRegistry(registry_dir)
    assert sorted(p.name for p in (registry_dir / "versions").glob("v*")) == ["v1"]
    assert registry.versions() == ["v1"]

    assert registry.register(trained, make_current=False) == "v2"  # the number is free

    assert sorted(p.name for p in (registry_dir / "versions").iterdir()) == ["v1", "v2"]
    assert registry.load("v2").version == "v2"  # whole, and its metadata names it


def _reserve_as_an_earlier_watchkeeper(versions: Path) -> Path:
    """What a registration of the Watchkeeper before the private directories did (still
    running during a rolling upgrade): ``mkdir`` the next free ``vN``, then write into
    it."""
    numbers = [int(p.name[1:]) for p in versions.iterdir() if p.name[1:].isdigit()]
    n = max(numbers, default=0) + 1
    while True:
        try:
            (versions / f"v{n}").mkdir()
            return versions / f"v{n}"
        except FileExistsError:
            n += 1


def test_a_registration_never_takes_a_version_an_earlier_writer_reserved(
    registry_dir: Path, trained: TrainedModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An earlier Watchkeeper reserves v2 (``mkdir``) after this registration chose v2 and
    before it renames its version there: a directory renamed onto an empty one replaces
    it, so both wrote v2. The registration takes v3; v2 is the other writer's."""
    import watchkeeper.registry as registry_module

    reserved: list[Path] = []

    def earlier_writer_reserves_first(path: Path, data: bytes) -> None:
        if path.name == METADATA_FILE and not reserved:
            reserved.append(_reserve_as_an_earlier_watchkeeper(registry_dir / "versions"))
        write_atomic(path, data)

    monkeypatch.setattr(registry_module, "write_atomic", earlier_writer_reserves_first)
    registry = ModelRegistry(registry_dir)

    assert registry.register(trained, make_current=False) == "v3"

    assert [p.name for p in reserved] == ["v2"]
    assert list(reserved[0].iterdir()) == [], "the registration wrote into another's version"
    assert registry.versions() == ["v1", "v3"]
    assert registry.load("v3").version == "v3"


def _register_killed_after_reserving(root: Path, trained: TrainedModel) -> None:
    """Register, and be killed once its version's number is reserved (before the rename
    that publishes it)."""
    rename = os.rename

    def die_on_publishing(source: Any, target: Any) -> None:
        if Path(target).parent.name == "versions":
            os.kill(os.getpid(), signal.SIGKILL)
        rename(source, target)

    os.rename = die_on_publishing  # type: ignore[assignment]  # a forked child's own
    ModelRegistry(root).register(trained, make_current=False)


def _killed_after_reserving(registry_dir: Path, trained: TrainedModel) -> None:
    child = multiprocessing.get_context("fork").Process(
        target=_register_killed_after_reserving, args=(registry_dir, trained)
    )
    child.start()
    child.join(60)
    assert child.exitcode == -signal.SIGKILL


def test_a_registration_killed_after_reserving_its_number_leaves_it_for_the_next_to_remove(
    registry_dir: Path, trained: TrainedModel, caplog: pytest.LogCaptureFixture
) -> None:
    """Killed between reserving v2 and renaming its version onto it: v2 stays empty and
    unlisted. It was kept for ever; the next registration, finding the private
    directory that names v2 a dead writer's, removes it, and takes the next number:
    a number once reserved is never given again (below)."""
    _killed_after_reserving(registry_dir, trained)
    registry = ModelRegistry(registry_dir)
    assert list((registry_dir / "versions" / "v2").iterdir()) == []
    assert registry.versions() == ["v1"]
    assert registry.rollback("v1") == ("v1", "v1")  # nothing it looks at is confused

    assert registry.register(trained, make_current=False) == "v3"

    names = sorted(p.name for p in (registry_dir / "versions").iterdir())
    assert names == ["v1", "v3"]  # the private directory and the number's mark are gone
    assert registry.versions() == ["v1", "v3"]
    assert registry.load("v3").version == "v3"
    assert "removed the empty reservation(s) v2" in caplog.text


def test_a_number_named_by_a_failed_registration_is_never_given_to_another_model(
    registry_dir: Path, trained: TrainedModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A registration whose rename onto its reservation fails says so naming the number
    ("cannot register v2: …", a failed run's recorded reason, the command's output)
    and leaves v2 empty. An hour on, the next registration removes it: it took the
    number too, so that v2 named two models in the audit trail. It takes v3."""
    rename = os.rename

    def fails_to_publish(source: Any, target: Any) -> None:
        if Path(target).parent.name == "versions":
            raise OSError(errno.EIO, "Input/output error")
        rename(source, target)

    registry = ModelRegistry(registry_dir)
    with monkeypatch.context() as patched:
        patched.setattr(os, "rename", fails_to_publish)
        with pytest.raises(RegistryError, match="cannot register v2: ") as failed:
            registry.register(trained, make_current=False)
    versions = registry_dir / "versions"
    assert list((versions / "v2").iterdir()) == [], failed.value
    then = time.time() - 2 * 3600
    os.utime(versions / "v2", (then, then))

    assert registry.register(trained, make_current=False) == "v3"

    assert sorted(p.name for p in versions.iterdir()) == ["v1", "v3"]
    assert registry.versions() == ["v1", "v3"]


def test_a_number_s_mark_outlives_a_registration_that_failed_after_removing_it(
    registry_dir: Path, trained: TrainedModel
) -> None:
    """The mark of a removed reservation (``.retired.v2``) is what keeps its number
    given while nothing higher is: it stays until a version is published past it."""
    versions = registry_dir / "versions"
    (versions / ".retired.v2").mkdir()
    registry = ModelRegistry(registry_dir)

    assert registry.versions() == ["v1"]
    assert registry.register(trained, make_current=False) == "v3"

    assert sorted(p.name for p in versions.iterdir()) == ["v1", "v3"]


def _reserved_by(versions: Path, version: str, writer: str, age: timedelta) -> None:
    """``version`` reserved (empty) ``age`` ago by the writer whose private directory is
    ``writer`` (none when empty), as its metadata names the number it reserves."""
    then = time.time() - age.total_seconds()
    (versions / version).mkdir()
    os.utime(versions / version, (then, then))
    if writer:
        (versions / writer).mkdir()
        (versions / writer / METADATA_FILE).write_text(json.dumps({"version": version}))
        os.utime(versions / writer / METADATA_FILE, (then - 1, then - 1))
        os.utime(versions / writer, (then, then))


def test_an_empty_reservation_is_removed_only_when_no_writer_can_publish_into_it(
    registry_dir: Path, trained: TrainedModel
) -> None:
    """v2: an hour and a half old, named by this (live) process's private directory: a
    writer paused that long still renames onto it. v3: an earlier Watchkeeper's, which
    writes into it at once, a minute old. v4: the same, but two hours old. v5: reserved by
    a writer of another host (its process cannot be asked) whose directory is a minute
    old. Only v4 goes."""
    versions = registry_dir / "versions"
    live = f"{VERSION_PREFIX}{socket.gethostname()}.{os.getpid()}.{'a' * 32}"
    elsewhere = f"{VERSION_PREFIX}another-host.4242.{'b' * 32}"
    _reserved_by(versions, "v2", live, timedelta(minutes=90))
    _reserved_by(versions, "v3", "", timedelta(minutes=1))
    _reserved_by(versions, "v4", "", timedelta(hours=2))
    _reserved_by(versions, "v5", elsewhere, timedelta(minutes=1))
    registry = ModelRegistry(registry_dir)

    assert registry.register(trained, make_current=False) == "v6"

    names = sorted(p.name for p in versions.iterdir())
    assert names == sorted(["v1", "v2", "v3", "v5", "v6", live, elsewhere])
    assert registry.versions() == ["v1", "v6"]
