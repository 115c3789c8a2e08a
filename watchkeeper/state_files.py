"""Reading saved state that must not run code: files checked against a recorded SHA-256
and ``.npz`` arrays loaded without pickle (object arrays are refused).

The monitor's detectors and the OOD reference are saved this way, with the same
discipline as the model registry's artifacts: a file whose bytes differ from what was
recorded when it was written is refused, never loaded.
"""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import numpy as np

from watchkeeper.errors import ArtifactIntegrityError


def sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def read_verified(path: Path, sha256: dict[str, str]) -> bytes:
    """The file's bytes if their SHA-256 is the one recorded for its name."""
    expected = sha256.get(path.name)
    if expected is None:
        raise ArtifactIntegrityError(f"no SHA-256 recorded for {path.name}")
    try:
        blob = path.read_bytes()
    except FileNotFoundError as exc:
        raise ArtifactIntegrityError(f"{path} is missing") from exc
    actual = hashlib.sha256(blob).hexdigest()
    if actual != expected:
        raise ArtifactIntegrityError(
            f"{path} has SHA-256 {actual[:12]}…, expected {expected[:12]}… as recorded: "
            "refusing to load it"
        )
    return blob


def load_arrays(path: Path, blob: bytes) -> dict[str, np.ndarray]:
    """The arrays of an ``.npz`` file's bytes; object arrays (which need pickle) are
    refused."""
    try:
        with np.load(io.BytesIO(blob), allow_pickle=False) as data:
            return {key: data[key] for key in data.files}
    except ValueError as exc:  # NumPy's refusal to unpickle an object array
        raise ArtifactIntegrityError(f"{path} holds arrays that need pickle: {exc}") from exc
