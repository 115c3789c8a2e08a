"""README's code layout (the table under Architecture) matches the tree: every module
of a package is named in its package's row, and every file a row names exists."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# A package's row, and the folders whose modules that row describes too.
PACKAGES = {
    "watchkeeper/": ("watchkeeper", "watchkeeper/db"),
    "watchkeeper_cli/": ("watchkeeper_cli",),
    "serving/": ("serving",),
    "monitoring/": ("monitoring",),
    "retrain/": ("retrain",),
    "watchkeeper/local_run/": ("watchkeeper/local_run",),
    "watchkeeper/grafana/": ("watchkeeper/grafana",),
}
NOT_DESCRIBED = {"__init__.py", "__main__.py"}


def layout_rows() -> dict[str, str]:
    readme = (ROOT / "README.md").read_text()
    table = readme[readme.index("Code layout:") : readme.index("Imports go downward only")]
    rows = re.findall(r"^\| `([^`]+)` \| (.*) \|$", table, flags=re.MULTILINE)
    return dict(rows)


def named(row: str) -> set[str]:
    return {name for name in re.findall(r"`([^` ]+)`", row) if name.endswith((".py", "/"))}


@pytest.mark.parametrize("package", sorted(PACKAGES))
def test_every_module_of_a_package_is_named_in_its_row(package: str) -> None:
    rows = layout_rows()
    names = named(rows[package]) | {
        Path(row).name + "/" for row in rows if row.startswith(package) and row != package
    }
    undescribed = [
        str(path.relative_to(ROOT))
        for folder in PACKAGES[package]
        for path in sorted((ROOT / folder).iterdir())
        if (path.suffix == ".py" and path.name not in NOT_DESCRIBED and path.name not in names)
        or (path.is_dir() and (path / "__init__.py").exists() and f"{path.name}/" not in names)
    ]
    assert not undescribed, f"README's layout row for {package} does not name {undescribed}"


@pytest.mark.parametrize("package", sorted(PACKAGES))
def test_every_file_a_row_names_exists(package: str) -> None:
    root = ROOT / package
    missing = [
        name
        for name in sorted(named(layout_rows()[package]))
        if not (root / name).exists()
        and not (ROOT / name).exists()
        and not any(root.rglob(name.rstrip("/")))
    ]
    assert not missing, (
        f"README's layout row for {package} names files that do not exist: {missing}"
    )
