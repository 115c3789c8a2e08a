"""On-demand virtual environments for the peer servers, under ``var/bench-peers/``.

Each peer gets its own environment (BentoML and MLServer pin different web stacks)
with the scientific stack pinned to the versions of the running interpreter, so the
Watchkeeper model loads and predicts with the same code in every server. An
environment is reused once its marker file records the same requirements.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

# Packages Watchkeeper's registry and model code import to load and predict
# (SQLAlchemy only through ``watchkeeper.errors``), pinned to this interpreter's.
SHARED = ("scikit-learn", "numpy", "pandas", "scipy", "skops", "sqlalchemy")


@dataclass(frozen=True)
class PeerEnv:
    name: str
    bin_dir: Path | None
    problem: str = ""


def requirements(packages: tuple[str, ...]) -> list[str]:
    return [*packages, *(f"{name}=={version(name)}" for name in SHARED)]


def ensure(root: Path, name: str, packages: tuple[str, ...], *, timeout: float = 900) -> PeerEnv:
    """The environment for ``name`` with ``packages`` installed from PyPI, created if
    missing. Returns a ``PeerEnv`` with ``bin_dir=None`` and the reason on failure."""
    env_dir = root / name
    marker = env_dir / ".installed"
    wanted = " ".join(requirements(packages))
    if marker.is_file() and marker.read_text() == wanted:
        return PeerEnv(name, env_dir / "bin")
    shutil.rmtree(env_dir, ignore_errors=True)
    log = root / f"{name}-install.log"
    root.mkdir(parents=True, exist_ok=True)
    try:
        with open(log, "w") as out:
            subprocess.run(
                [sys.executable, "-m", "venv", str(env_dir)],
                check=True,
                stdout=out,
                stderr=subprocess.STDOUT,
                timeout=120,
            )
            subprocess.run(
                [
                    str(env_dir / "bin" / "pip"),
                    "install",
                    "--quiet",
                    "--disable-pip-version-check",
                    *requirements(packages),
                ],
                check=True,
                stdout=out,
                stderr=subprocess.STDOUT,
                timeout=timeout,
            )
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as exc:
        return PeerEnv(name, None, f"install failed ({exc}); see {log}")
    marker.write_text(wanted)
    return PeerEnv(name, env_dir / "bin")
