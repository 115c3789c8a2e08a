"""A model artifact is parsed once per process, and every load still checks it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import skops.io as sio

from tests.bad_versions import flip_byte, untrusted_types
from watchkeeper.errors import ArtifactIntegrityError
from watchkeeper.parsed_models import ParsedModels, parsed_models
from watchkeeper.registry import ModelRegistry
from watchkeeper.training import TrainedModel


@pytest.fixture
def parses(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The sizes of the artifacts skops builds a pipeline from, from now on; nothing
    parsed before the test counts."""
    monkeypatch.setattr(parsed_models, "_entries", type(parsed_models._entries)())
    built: list[int] = []
    real = sio.loads

    def counted(blob: bytes, **kwargs: object) -> object:
        built.append(len(blob))
        return real(blob, **kwargs)

    monkeypatch.setattr(sio, "loads", counted)
    return built


def test_loading_a_version_again_does_not_parse_its_model_again(
    registry_dir: Path, trained: TrainedModel, parses: list[int]
) -> None:
    registry = ModelRegistry(registry_dir)
    first = registry.load("v1")
    again = ModelRegistry(registry_dir).load("v1")  # another registry object: a rollback's
    rows = trained.reference.head(20)

    assert len(parses) == 1
    np.testing.assert_allclose(again.model.predict(rows).value, first.model.predict(rows).value)


def test_a_model_changed_on_disk_after_its_parse_is_still_refused(
    registry_dir: Path, parses: list[int]
) -> None:
    ModelRegistry(registry_dir).load("v1")
    flip_byte(registry_dir, "v1")

    with pytest.raises(ArtifactIntegrityError, match="SHA-256"):
        ModelRegistry(registry_dir).load("v1")


def test_untrusted_types_are_refused_on_every_load_whoever_trusted_them_before(
    registry_dir: Path, parses: list[int]
) -> None:
    untrusted_types(registry_dir, "v1")
    trusting = ModelRegistry(registry_dir, trusted_types=["json.loads"])
    assert trusting.load("v1").version == "v1"  # its operator trusts json.loads

    with pytest.raises(ArtifactIntegrityError, match=r"untrusted types.*json\.loads"):
        ModelRegistry(registry_dir).load("v1")
    assert len(parses) == 1  # refused before any pipeline was built for it


def test_an_artifact_skops_cannot_read_is_an_integrity_error(registry_dir: Path) -> None:
    import hashlib

    version_dir = registry_dir / "versions" / "v1"
    blob = b"not a zip archive"
    (version_dir / "model.skops").write_bytes(blob)
    meta_path = version_dir / "metadata.json"
    meta = json.loads(meta_path.read_text())
    meta["artifacts"]["model.skops"]["sha256"] = hashlib.sha256(blob).hexdigest()
    meta_path.write_text(json.dumps(meta))

    with pytest.raises(ArtifactIntegrityError, match="cannot be loaded"):
        ModelRegistry(registry_dir).load("v1")


def test_only_the_most_recently_used_artifacts_are_kept(registry_dir: Path) -> None:
    blob = (registry_dir / "versions" / "v1" / "model.skops").read_bytes()
    trusted = ModelRegistry(registry_dir).trusted_types
    kept = ParsedModels(capacity=2)
    for sha in ("a", "b", "a", "c"):  # "b" is the least recently used when "c" comes
        kept.pipeline(sha, blob, trusted)

    assert list(kept._entries) == ["a", "c"]
    assert kept.pipeline("a", blob, trusted) is kept.pipeline("a", blob, trusted)
