"""What ``watchkeeper --help`` and each command's ``--help`` say beyond their options:
defaults, and which settings (environment variables) control a long-running command.

Help is plain text for a terminal: no reST or Markdown markup.
"""

from __future__ import annotations

import argparse
import textwrap
from collections.abc import Iterable, Sequence

from watchkeeper.settings import ENV_PREFIX, SETTINGS

DESCRIPTION = textwrap.fill(
    "Watchkeeper: serve a tabular model, watch its predictions for drift and errors, "
    "retrain and promote a better model. One command per job; every command reads its "
    f"settings from {ENV_PREFIX}* environment variables.",
    width=80,
)
EPILOG = textwrap.fill(
    "watchkeeper settings prints the effective settings; watchkeeper COMMAND --help "
    "describes a command.",
    width=80,
)


class HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """Options show their default, unless there is none worth showing (no value, or a
    flag's off); descriptions and epilogs keep their line breaks."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        default = action.default
        if default is None or default is False or default is argparse.SUPPRESS:
            return action.help
        return super()._get_help_string(action)


def choices_help(choices: dict[str, str], *, otherwise: str | None = None) -> str:
    """Help for a positional argument whose every value has a meaning of its own;
    ``otherwise`` says what happens when it is left out."""
    parts = [f"{name}: {meaning}" for name, meaning in choices.items()]
    if otherwise:
        parts.append(f"left out: {otherwise}")
    return "; ".join(parts)


def _prefixed(*prefixes: str) -> list[str]:
    return [name for name in SETTINGS if name.startswith(prefixes)]


# Settings read by `watchkeeper serve`, by concern. Groups of settings sharing a prefix
# are found by it, so that a new log, monitor or retrain setting is listed unasked.
SERVE_SETTINGS: Sequence[tuple[str, Sequence[str]]] = (
    ("listening", ("host", "port")),
    (
        "processes",
        ("workers", "threads", "numeric_threads", "worker_timeout", "graceful_timeout"),
    ),
    (
        "storage",
        (
            "data_dir",
            "database_url",
            "auto_migrate",
            "registry_path",
            "spill_dir",
            "prometheus_multiproc_dir",
        ),
    ),
    (
        "requests",
        ("max_request_bytes", "request_read_timeout", "request_buffer_bytes", "max_batch_size"),
    ),
    ("prediction log", _prefixed("log_")),
    ("model", ("model_poll_seconds", "trusted_types", *_prefixed("ood_in_"))),
    ("admin and alerts", ("admin_token", "retrain_alert_names")),
    ("metrics", ("prediction_buckets",)),
)
SHARED = ("data_dir", "database_url", "registry_path", "trusted_types", "numeric_threads")


def component_settings(component: str) -> Sequence[tuple[str, Sequence[str]]]:
    """The settings that control ``component`` (serve, monitor, worker, grafana), by concern."""
    if component == "serve":
        return SERVE_SETTINGS
    if component == "monitor":
        return (
            ("monitor", _prefixed("monitor_")),
            ("detectors", [*_prefixed("drift_", "ood_"), "detectors_dir"]),
            ("triggers", _prefixed("trigger_")),
            ("feedback", _prefixed("feedback_")),
            ("shared", SHARED),
        )
    if component == "worker":
        # retrain_alert_names says which alerts serving's webhook turns into requests
        retraining = [name for name in _prefixed("retrain_") if name != "retrain_alert_names"]
        return (("retraining", retraining), ("shared", SHARED))
    if component == "grafana":
        return (("grafana", _prefixed("grafana_")),)
    raise ValueError(f"no settings list for {component!r}")


def settings_epilog(component: str, command: str) -> str:
    """The settings that control a command, as environment variables, for its epilog."""
    lines = [f"Settings (environment variables) that control {command}:"]
    for concern, names in component_settings(component):
        if not names:
            continue
        lines += _wrapped(f"{concern}: ", (ENV_PREFIX + name.upper() for name in names))
    lines.append("")
    lines.append(
        "watchkeeper settings prints their values; the README's Configuration table describes each."
    )
    return "\n".join(lines)


def _wrapped(label: str, names: Iterable[str]) -> list[str]:
    return textwrap.wrap(
        ", ".join(names),
        width=88,
        initial_indent=f"  {label}",
        subsequent_indent="    ",
        break_on_hyphens=False,
    )
