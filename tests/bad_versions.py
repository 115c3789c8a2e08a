"""Ways a registry's ``CURRENT`` can name a version that will not load, as an operator
or a failing disk leaves them: a flipped byte, an artifact holding untrusted types,
malformed metadata, a version that is not there, a path outside the registry."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path

import skops.io as sio

from watchkeeper.registry import CURRENT_FILE, METADATA_FILE, MODEL_FILE, ModelRegistry
from watchkeeper.training import TrainedModel


def version_dir(root: Path, version: str) -> Path:
    return root / "versions" / version


def flip_byte(root: Path, version: str) -> None:
    path = version_dir(root, version) / MODEL_FILE
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def untrusted_types(root: Path, version: str) -> None:
    """Replace the model by a pipeline that would call ``json.loads``, hash updated: only
    the trusted-types check stands in the way."""
    from sklearn.preprocessing import FunctionTransformer

    blob = sio.dumps(FunctionTransformer(func=json.loads))
    (version_dir(root, version) / MODEL_FILE).write_bytes(blob)
    rewrite_metadata(
        root,
        version,
        lambda meta: {
            **meta,
            "artifacts": {
                **meta["artifacts"],
                MODEL_FILE: {"sha256": hashlib.sha256(blob).hexdigest(), "bytes": len(blob)},
            },
        },
    )


def rewrite_metadata(root: Path, version: str, change: Callable[[dict], object]) -> None:
    path = version_dir(root, version) / METADATA_FILE
    path.write_text(json.dumps(change(json.loads(path.read_text()))))


def without_interval(root: Path, version: str) -> None:
    rewrite_metadata(root, version, lambda meta: {k: v for k, v in meta.items() if k != "interval"})


def metadata_as_list(root: Path, version: str) -> None:
    rewrite_metadata(root, version, lambda meta: [meta])


def point_current(root: Path, name: str) -> None:
    """Write ``CURRENT`` by hand, bypassing the registry's checks."""
    (root / CURRENT_FILE).write_text(f"{name}\n")


BREAKERS: dict[str, Callable[[Path, str], None]] = {
    "flipped-byte": flip_byte,
    "untrusted-type": untrusted_types,
    "metadata-without-interval": without_interval,
    "metadata-a-list": metadata_as_list,
}


def make_current_bad(root: Path, trained: TrainedModel, kind: str) -> str:
    """Point ``CURRENT`` at something that will not load; returns what it names.

    ``kind`` is a :data:`BREAKERS` key (a new version registered then broken),
    ``missing-version`` or ``outside-the-registry``."""
    if kind == "missing-version":
        point_current(root, "v97")
        return "v97"
    if kind == "outside-the-registry":
        point_current(root, "../../etc")
        return "../../etc"
    registry = ModelRegistry(root)
    version = registry.register(trained, make_current=False)
    BREAKERS[kind](root, version)
    point_current(root, version)
    return version


BAD_CURRENT = (*BREAKERS, "missing-version", "outside-the-registry")
