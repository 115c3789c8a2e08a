"""How ``make test`` shares the suite among pytest-xdist workers (``--dist loadgroup``).

Tests that start real servers form one group that one worker runs one test at a time:
their deadlines were set for one such test at a time, and two of them side by side on
two busy cores starve each other. A module whose fixtures are module- or class-scoped
is one unit, so they are built once. Every other test is a unit of its own.
"""

from __future__ import annotations

import pytest
from _pytest.nodeid import coerce_node_id

# Fixtures that start real servers: gunicorn, Prometheus, Alertmanager, a PostgreSQL
# cluster of the test's own, the whole platform.
SERVER_FIXTURES = frozenset(
    {
        "start_watchkeeper",
        "start_module_watchkeeper",
        "start_prometheus",
        "start_alertmanager",
        "private_postgres",
        "platform",
    }
)


def pytest_itemcollected(item: pytest.Item) -> None:
    """Mark each test's unit as it is collected: xdist reads the marks in its own
    ``pytest_collection_modifyitems``, which runs before a conftest's would."""
    fixtures = getattr(item, "_fixtureinfo", None)
    definitions = fixtures.name2fixturedefs.values() if fixtures else []
    if item.get_closest_marker("integration") or SERVER_FIXTURES & set(
        getattr(item, "fixturenames", ())
    ):
        item.add_marker(pytest.mark.xdist_group("servers"))
    elif any(d.scope in ("module", "class") for defs in definitions for d in defs):
        item.add_marker(pytest.mark.xdist_group(item.nodeid.split("::")[0]))


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Carry each test's xdist group into its node id under pytest 9 as well: the
    ``loadgroup`` scheduler groups tests by an ``@group`` suffix of the node id, which
    xdist 3.8 writes to ``_nodeid`` while pytest 9 reads ``_id``; without this every
    test was a unit of its own, and server tests ran side by side. A no-op where xdist
    already added the suffix (pytest 8, or a fixed xdist)."""
    if not getattr(config.option, "loadgroup", False):  # set on xdist workers
        return
    for item in items:
        groups = sorted({str(mark.args[0]) for mark in item.iter_markers("xdist_group")})
        suffix = "@" + "_".join(groups)
        if groups and not item.nodeid.endswith(suffix):
            item._id = coerce_node_id(item.nodeid + suffix)  # type: ignore[attr-defined]
