"""Settings from the environment, by component, and the README's table kept equal to them."""

from __future__ import annotations

import socket
import threading
from datetime import UTC, datetime, timedelta
from operator import attrgetter
from pathlib import Path

import pytest
from pydantic import SecretStr, ValidationError

from watchkeeper.settings import (
    MAX_DAYS,
    MAX_SPAN_SECONDS,
    MAX_WAIT_SECONDS,
    SETTINGS,
    MonitorSettings,
    Setting,
    Settings,
    redact_url,
    settings_table,
    variable_at,
)

README = Path(__file__).resolve().parents[2] / "README.md"

# Every variable of the README's table when the one flat settings object was split into
# groups (issue 15): a value other than its default, where it lands, and as what. The
# names are a contract with deployments: none may stop being read.
VARIABLES: list[tuple[str, str, str, object]] = [
    ("WATCHKEEPER_DATA_DIR", "/srv/data_dir", "storage.data_dir", Path("/srv/data_dir")),
    (
        "WATCHKEEPER_DATABASE_URL",
        "postgresql+psycopg://u@db/wk",
        "storage.database_url",
        "postgresql+psycopg://u@db/wk",
    ),
    (
        "WATCHKEEPER_REGISTRY_PATH",
        "/srv/registry_path",
        "storage.registry_path",
        Path("/srv/registry_path"),
    ),
    ("WATCHKEEPER_SPILL_DIR", "/srv/spill_dir", "storage.spill_dir", Path("/srv/spill_dir")),
    (
        "WATCHKEEPER_PROMETHEUS_MULTIPROC_DIR",
        "/srv/prometheus_multiproc_dir",
        "storage.prometheus_multiproc_dir",
        Path("/srv/prometheus_multiproc_dir"),
    ),
    ("WATCHKEEPER_AUTO_MIGRATE", "false", "storage.auto_migrate", False),
    ("WATCHKEEPER_HOST", "x-host", "serving.host", "x-host"),
    ("WATCHKEEPER_PORT", "8001", "serving.port", 8001),
    ("WATCHKEEPER_WORKERS", "3", "serving.workers", 3),
    ("WATCHKEEPER_THREADS", "5", "serving.threads", 5),
    ("WATCHKEEPER_NUMERIC_THREADS", "2", "process.numeric_threads", 2),
    ("WATCHKEEPER_WORKER_TIMEOUT", "31", "serving.worker_timeout", 31),
    ("WATCHKEEPER_GRACEFUL_TIMEOUT", "31", "serving.graceful_timeout", 31),
    ("WATCHKEEPER_MAX_REQUEST_BYTES", "16777217", "serving.max_request_bytes", 16777217),
    ("WATCHKEEPER_REQUEST_READ_TIMEOUT", "31.5", "serving.request_read_timeout", 31.5),
    ("WATCHKEEPER_REQUEST_BUFFER_BYTES", "67108865", "serving.request_buffer_bytes", 67108865),
    ("WATCHKEEPER_MAX_BATCH_SIZE", "10001", "serving.max_batch_size", 10001),
    ("WATCHKEEPER_LOG_ENABLED", "false", "log.enabled", False),
    ("WATCHKEEPER_OOD_IN_RESPONSE", "false", "serving.ood_in_response", False),
    ("WATCHKEEPER_LOG_BATCH_BYTES", "4194305", "log.batch_bytes", 4194305),
    ("WATCHKEEPER_LOG_FLUSH_INTERVAL", "0.1", "log.flush_interval", 0.1),
    ("WATCHKEEPER_LOG_WRITE_INTERVAL", "2", "log.write_interval", 2.0),
    ("WATCHKEEPER_LOG_JOURNAL_MAX_BYTES", "1073741825", "log.journal_max_bytes", 1073741825),
    (
        "WATCHKEEPER_LOG_DEAD_LETTER_MAX_BYTES",
        "268435457",
        "log.dead_letter_max_bytes",
        268435457,
    ),
    ("WATCHKEEPER_LOG_SEGMENT_BYTES", "67108865", "log.segment_bytes", 67108865),
    ("WATCHKEEPER_LOG_PROBE_INTERVAL", "3.5", "log.probe_interval", 3.5),
    ("WATCHKEEPER_LOG_BODY_LIMIT", "65537", "log.body_limit", 65537),
    ("WATCHKEEPER_RETENTION_DAYS", "31.5", "retention.days", 31.5),
    ("WATCHKEEPER_RETENTION_LABELLED_DAYS", "0.5", "retention.labelled_days", 0.5),
    ("WATCHKEEPER_RETENTION_HISTORY_DAYS", "731.5", "retention.history_days", 731.5),
    ("WATCHKEEPER_RETENTION_BATCH_ROWS", "5001", "retention.batch_rows", 5001),
    (
        "WATCHKEEPER_RETENTION_ARCHIVE",
        "x-retention_archive",
        "retention.archive",
        "x-retention_archive",
    ),
    ("WATCHKEEPER_RETENTION_PRUNE_INTERVAL", "3601.5", "retention.prune_interval", 3601.5),
    ("WATCHKEEPER_TRUSTED_TYPES", "a.B, c.D", "storage.trusted_types", ("a.B", "c.D")),
    ("WATCHKEEPER_ADMIN_TOKEN", "t0ken", "serving.admin_token", SecretStr("t0ken")),
    ("WATCHKEEPER_MODEL_POLL_SECONDS", "3.5", "serving.model_poll_seconds", 3.5),
    (
        "WATCHKEEPER_ALERT_PEOPLE_URL",
        "x-alert_people_url",
        "alerting.people_url",
        "x-alert_people_url",
    ),
    (
        "WATCHKEEPER_ALERT_RETRAIN_URL",
        "x-alert_retrain_url",
        "alerting.retrain_url",
        "x-alert_retrain_url",
    ),
    (
        "WATCHKEEPER_ALERT_TOKEN_FILE",
        "x-alert_token_file",
        "alerting.token_file",
        "x-alert_token_file",
    ),
    (
        "WATCHKEEPER_ALERT_RUNBOOK_URL",
        "https://wiki.example/runbook.md",
        "alerting.runbook_url",
        "https://wiki.example/runbook.md",
    ),
    (
        "WATCHKEEPER_METRICS_NAMESPACE",
        "x-metrics-namespace",
        "alerting.metrics_namespace",
        "x-metrics-namespace",
    ),
    (
        "WATCHKEEPER_DASHBOARD_TARGET_UNIT",
        "x-dashboard_target_unit",
        "grafana.dashboard_target_unit",
        "x-dashboard_target_unit",
    ),
    (
        "WATCHKEEPER_GRAFANA_URL",
        "https://x-grafana.example/grafana",
        "grafana.url",
        "https://x-grafana.example/grafana",
    ),
    ("WATCHKEEPER_GRAFANA_TOKEN", "gr4fana", "grafana.token", SecretStr("gr4fana")),
    (
        "WATCHKEEPER_GRAFANA_PROMETHEUS_URL",
        "x-grafana_prometheus_url",
        "grafana.prometheus_url",
        "x-grafana_prometheus_url",
    ),
    ("WATCHKEEPER_RUN_PROMETHEUS_PORT", "9091", "run.prometheus_port", 9091),
    ("WATCHKEEPER_RUN_ALERTMANAGER_PORT", "9094", "run.alertmanager_port", 9094),
    ("WATCHKEEPER_RUN_SCRAPE_INTERVAL", "16.5", "run.scrape_interval", 16.5),
    ("WATCHKEEPER_RETRAIN_ALERT_NAMES", "A, B", "alerting.retrain_alert_names", ("A", "B")),
    (
        "WATCHKEEPER_PREDICTION_BUCKETS",
        "300,100, 200",
        "serving.prediction_buckets",
        (100.0, 200.0, 300.0),
    ),
    (
        "WATCHKEEPER_DETECTORS_DIR",
        "/srv/detectors_dir",
        "storage.detectors_dir",
        Path("/srv/detectors_dir"),
    ),
    ("WATCHKEEPER_MONITOR_HOST", "x-monitor_host", "monitor.host", "x-monitor_host"),
    ("WATCHKEEPER_MONITOR_PORT", "8002", "monitor.port", 8002),
    ("WATCHKEEPER_MONITOR_INTERVAL", "11.5", "monitor.interval", 11.5),
    ("WATCHKEEPER_MONITOR_STALL_SECONDS", "1801.5", "monitor.stall_seconds", 1801.5),
    ("WATCHKEEPER_MONITOR_WINDOW_SIZE", "501", "monitor.window_size", 501),
    ("WATCHKEEPER_MONITOR_WINDOW_SECONDS", "601.5", "monitor.window_seconds", 601.5),
    ("WATCHKEEPER_MONITOR_MIN_SAMPLES", "201", "monitor.min_samples", 201),
    ("WATCHKEEPER_MONITOR_SAMPLE_ROWS", "501", "monitor.sample_rows", 501),
    ("WATCHKEEPER_MONITOR_SETTLE_SECONDS", "6.5", "monitor.settle_seconds", 6.5),
    ("WATCHKEEPER_MONITOR_MIN_LABELS", "51", "monitor.min_labels", 51),
    ("WATCHKEEPER_MONITOR_ACCURACY_LABELS", "1001", "monitor.accuracy_labels", 1001),
    ("WATCHKEEPER_FEEDBACK_ORPHAN_SECONDS", "86401.5", "monitor.feedback_orphan_seconds", 86401.5),
    ("WATCHKEEPER_TRIGGER_DRIFT_WINDOWS", "4", "trigger.drift_windows", 4),
    ("WATCHKEEPER_TRIGGER_OOD_FRACTION", "0.05", "trigger.ood_fraction", 0.05),
    ("WATCHKEEPER_TRIGGER_MAE_DEGRADATION", "0.125", "trigger.mae_degradation", 0.125),
    ("WATCHKEEPER_TRIGGER_ACCURACY_CONFIDENCE", "0.9", "trigger.accuracy_confidence", 0.9),
    ("WATCHKEEPER_TRIGGER_ACCURACY_DROP", "0.025", "trigger.accuracy_drop", 0.025),
    ("WATCHKEEPER_TRIGGER_COOLDOWN_SECONDS", "3601.5", "trigger.cooldown_seconds", 3601.5),
    ("WATCHKEEPER_RETRAIN_WINDOW_DAYS", "366.5", "retrain.window_days", 366.5),
    ("WATCHKEEPER_RETRAIN_ARCHIVE_DAYS", "0.5", "retrain.archive_days", 0.5),
    ("WATCHKEEPER_RETRAIN_HOLDOUT_FRACTION", "0.1", "retrain.holdout_fraction", 0.1),
    ("WATCHKEEPER_RETRAIN_MIN_HOLDOUT", "51", "retrain.min_holdout", 51),
    ("WATCHKEEPER_RETRAIN_MARGIN", "0.01", "retrain.margin", 0.01),
    ("WATCHKEEPER_RETRAIN_MIN_COVERAGE", "0.4", "retrain.min_coverage", 0.4),
    ("WATCHKEEPER_RETRAIN_MAX_COVERAGE", "0.49", "retrain.max_coverage", 0.49),
    ("WATCHKEEPER_RETRAIN_LEASE_SECONDS", "3601.5", "retrain.lease_seconds", 3601.5),
    ("WATCHKEEPER_RETRAIN_POLL_SECONDS", "11.5", "retrain.poll_seconds", 11.5),
    ("WATCHKEEPER_RETRAIN_HOST", "x-retrain_host", "retrain.host", "x-retrain_host"),
    ("WATCHKEEPER_RETRAIN_PORT", "8003", "retrain.port", 8003),
    ("WATCHKEEPER_DRIFT_P_VALUE", "0.025", "drift.p_value", 0.025),
    ("WATCHKEEPER_DRIFT_CORRECTION", "fdr", "drift.correction", "fdr"),
    ("WATCHKEEPER_DRIFT_MULTIVARIATE", "false", "drift.multivariate", False),
    ("WATCHKEEPER_OOD_PERCENTILE", "95", "drift.ood_percentile", 95.0),
]


def test_paths_derive_from_the_data_dir(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WATCHKEEPER_DATA_DIR", "/srv/wk")

    settings = Settings()

    assert settings.storage.database_url == "sqlite:////srv/wk/watchkeeper.db"
    assert settings.storage.registry_path == Path("/srv/wk/registry")
    assert settings.storage.spill_dir == Path("/srv/wk/spill")


def test_environment_overrides_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WATCHKEEPER_DATABASE_URL", "postgresql+psycopg://u@db/wk")
    monkeypatch.setenv("WATCHKEEPER_WORKERS", "8")
    monkeypatch.setenv("WATCHKEEPER_PREDICTION_BUCKETS", "300,100, 200")
    monkeypatch.setenv("WATCHKEEPER_TRUSTED_TYPES", "a.B, c.D")

    settings = Settings()

    assert settings.storage.database_url == "postgresql+psycopg://u@db/wk"
    assert settings.serving.workers == 8
    assert settings.serving.prediction_buckets == (100.0, 200.0, 300.0)
    assert settings.storage.trusted_types == ("a.B", "c.D")


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("WATCHKEEPER_WORKERS", "0", "greater than or equal to 1"),
        ("WATCHKEEPER_PORT", "http", "valid integer"),
        ("WATCHKEEPER_PREDICTION_BUCKETS", "1,two", "comma-separated numbers"),
    ],
)
def test_bad_values_are_refused_naming_the_setting(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, message: str
) -> None:
    monkeypatch.setenv(name, value)

    with pytest.raises(ValidationError, match=message):
        Settings()


def test_readme_configuration_table_matches_the_settings_object() -> None:
    assert settings_table() in README.read_text(), (
        "README.md's configuration table is stale: paste `make settings-table` into it"
    )


def test_every_variable_of_the_flat_settings_is_read_into_its_group(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name, raw, _, _ in VARIABLES:
        monkeypatch.setenv(name, raw)

    settings = Settings()

    for name, _, place, expected in VARIABLES:
        assert attrgetter(place)(settings) == expected, name
    assert len(VARIABLES) == 84 and {v for v, *_ in VARIABLES} <= {
        s.variable for s in SETTINGS.values()
    }


def test_flat_names_reach_the_same_settings_as_their_variables(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name, raw, place, expected in VARIABLES:
        monkeypatch.delenv(name, raising=False)
        flat = name.removeprefix("WATCHKEEPER_").lower()

        assert attrgetter(place)(Settings(**{flat: raw})) == expected, name
        assert attrgetter(place)(Settings().replace(**{flat: raw})) == expected, name


def test_a_flat_name_overrides_its_variable_and_the_rest_of_its_group_is_read(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("WATCHKEEPER_MONITOR_INTERVAL", "3")
    monkeypatch.setenv("WATCHKEEPER_MONITOR_PORT", "9001")

    settings = Settings(monitor_interval=0.5)

    assert (settings.monitor.interval, settings.monitor.port) == (0.5, 9001)
    assert Settings(monitor=MonitorSettings(interval=2)).monitor.interval == 2


@pytest.mark.parametrize("name", ["monitor_intervall", "interval", "registry_dir", "MONITOR_PORT"])
def test_an_unknown_name_is_refused(name: str) -> None:
    with pytest.raises(ValidationError, match="unknown setting"):
        Settings(**{name: 1})
    with pytest.raises(ValueError, match="unknown setting"):
        Settings().replace(**{name: 1})


def test_a_group_cannot_also_be_given_by_its_settings() -> None:
    with pytest.raises(ValidationError, match="given both as a group and as single settings"):
        Settings(monitor=MonitorSettings(), monitor_port=9001)


def test_replace_validates_and_keeps_the_other_settings() -> None:
    settings = Settings(data_dir="/srv/wk", monitor_port=9001)

    changed = settings.replace(monitor_interval=0.5, ood_percentile=90)

    assert (changed.monitor.interval, changed.monitor.port) == (0.5, 9001)
    assert changed.drift.ood_percentile == 90
    assert changed.storage is settings.storage
    with pytest.raises(ValidationError, match="greater than 0"):
        settings.replace(monitor_interval=0)


def test_replace_takes_a_whole_group_as_it_is() -> None:
    settings = Settings()
    # a file: URI has no host: the runbook check refuses it, make run's rules use one
    alerting = settings.alerting.model_copy(update={"runbook_url": "file:///srv/runbook.md"})

    changed = settings.replace(alerting=alerting)

    assert changed.alerting.runbook_url == "file:///srv/runbook.md"
    assert changed.monitor is settings.monitor
    with pytest.raises(TypeError, match="AlertingSettings"):
        settings.replace(alerting=settings.monitor)
    with pytest.raises(ValueError, match="both"):
        settings.replace(alerting=alerting, alert_token_file="/t")


def test_model_copy_refuses_flat_names_it_would_silently_ignore() -> None:
    current = Settings()

    with pytest.raises(TypeError, match="replace"):
        current.model_copy(update={"monitor_interval": 0.5})


def test_an_empty_path_variable_means_the_path_under_the_data_dir(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """As documented ("Empty means `<data_dir>/registry`"); the flat settings object
    read an empty variable as the current directory."""
    monkeypatch.setenv("WATCHKEEPER_DATA_DIR", "/srv/wk")
    for name in ("REGISTRY_PATH", "SPILL_DIR", "PROMETHEUS_MULTIPROC_DIR", "DETECTORS_DIR"):
        monkeypatch.setenv(f"WATCHKEEPER_{name}", "")
    monkeypatch.setenv("WATCHKEEPER_DATABASE_URL", "")

    storage = Settings().storage

    assert storage.registry_path == Path("/srv/wk/registry")
    assert storage.spill_dir == Path("/srv/wk/spill")
    assert storage.prometheus_multiproc_dir == Path("/srv/wk/prometheus-multiproc")
    assert storage.detectors_dir == Path("/srv/wk/detectors")
    assert storage.database_url == "sqlite:////srv/wk/watchkeeper.db"


def test_errors_of_every_group_locate_their_variable_whether_read_or_passed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("WATCHKEEPER_OOD_PERCENTILE", "200")
    monkeypatch.setenv("WATCHKEEPER_PORT", "http")
    with pytest.raises(ValidationError) as read:
        Settings()
    monkeypatch.delenv("WATCHKEEPER_OOD_PERCENTILE")
    monkeypatch.delenv("WATCHKEEPER_PORT")
    with pytest.raises(ValidationError) as passed:
        Settings(monitor_interval=0)

    assert {variable_at(error["loc"]) for error in read.value.errors()} == {
        "WATCHKEEPER_OOD_PERCENTILE",
        "WATCHKEEPER_PORT",
    }
    assert variable_at(passed.value.errors()[0]["loc"]) == "WATCHKEEPER_MONITOR_INTERVAL"


def test_printing_masks_secrets_and_keeps_the_flat_names() -> None:
    dumped = Settings(admin_token=SecretStr("t0ken"), monitor_port=9001).flat_dump(mode="json")

    assert list(dumped) == list(SETTINGS)
    assert dumped["admin_token"] == "**********" and dumped["monitor_port"] == 9001


# Every number setting, found by its type: one added later is covered unasked.
NUMBERS = [s for s in SETTINGS.values() if s.info.annotation in (int, float)]
HOSTS = [s.variable for s in SETTINGS.values() if s.field == "host"]


def _refused_variables(monkeypatch: pytest.MonkeyPatch, name: str, value: str) -> set[str]:
    monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError) as refused:
        Settings()
    return {variable_at(error["loc"]) for error in refused.value.errors()}


@pytest.mark.parametrize("value", ["inf", "-inf", "nan", "1e300", "99999999999999999999"])
@pytest.mark.parametrize("setting", NUMBERS, ids=attrgetter("variable"))
def test_every_number_setting_refuses_non_finite_and_huge_values_naming_its_variable(
    monkeypatch: pytest.MonkeyPatch, setting: Setting, value: str
) -> None:
    """WATCHKEEPER_REQUEST_READ_TIMEOUT=1e10 made every request a 500 (a socket timeout
    past time_t), WATCHKEEPER_LOG_WRITE_INTERVAL=inf killed the log writer on each
    request, WATCHKEEPER_WORKERS=99999999999999999999 was taken."""
    assert _refused_variables(monkeypatch, setting.variable, value) == {setting.variable}


@pytest.mark.parametrize("value", ["1,nan", "inf", "1,2,-inf"])
def test_prediction_buckets_must_be_finite(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    """`nan` was taken, and the metrics then showed a bucket le="NaN"."""
    refused = _refused_variables(monkeypatch, "WATCHKEEPER_PREDICTION_BUCKETS", value)

    assert refused == {"WATCHKEEPER_PREDICTION_BUCKETS"}


def test_the_ceilings_are_values_the_code_can_wait_on() -> None:
    with socket.socket() as sock:
        sock.settimeout(MAX_WAIT_SECONDS)  # a request thread's socket timeout
    assert MAX_SPAN_SECONDS < threading.TIMEOUT_MAX
    assert datetime.now(UTC) - timedelta(days=MAX_DAYS) > datetime(1900, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize("value", ["", "  "])
@pytest.mark.parametrize("name", HOSTS)
def test_an_empty_host_is_refused_naming_its_variable(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    """WATCHKEEPER_HOST="" was taken, and gunicorn bound ":8000": every interface."""
    assert _refused_variables(monkeypatch, name, value) == {name}


@pytest.mark.parametrize("name", HOSTS)
def test_a_bracketed_ipv6_host_is_taken_as_its_address(
    monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    """``[::1]`` (as a URL writes it) passed the settings, and then the status server
    could not resolve it and serve's port check failed; gunicorn alone took it."""
    monkeypatch.setenv(name, "[::1]")

    flat = Settings().flat_dump()

    [setting] = [key for key, s in SETTINGS.items() if s.variable == name]
    assert flat[setting] == "::1"


@pytest.mark.parametrize("value", ["memory://wk", "memory:///log", "simplecache::memory://x"])
def test_an_archive_in_the_process_memory_is_refused(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    """`memory://` was taken: the prune archived there and deleted the rows, and the
    archive went with the process."""
    assert _refused_variables(monkeypatch, "WATCHKEEPER_RETENTION_ARCHIVE", value) == {
        "WATCHKEEPER_RETENTION_ARCHIVE"
    }


def test_an_archive_of_an_unknown_filesystem_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WATCHKEEPER_RETENTION_ARCHIVE", "s4://bucket/log")
    with pytest.raises(ValidationError, match="unknown filesystem 's4'"):
        Settings()


@pytest.mark.parametrize("value", ["", "/srv/archive", "file:///srv/a", "s3://bucket/log"])
def test_an_archive_on_disk_or_in_object_storage_is_taken(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("WATCHKEEPER_RETENTION_ARCHIVE", value)
    assert Settings().retention.archive == value


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("sftp://archiver:hunter2@backup/wk", "sftp://archiver:***@backup/wk"),
        ("https://h/x?a=1&api_key=k&sig=s&b=2", "https://h/x?a=1&api_key=***&sig=***&b=2"),
        ("https://h/x?Access_Token=t#frag", "https://h/x?Access_Token=***#frag"),
        (
            "postgresql+psycopg://wk@db/wk?sslmode=require",
            "postgresql+psycopg://wk@db/wk?sslmode=require",
        ),
        ("/srv/archive", "/srv/archive"),
        # a token as the user (GitHub, Grafana): the user part of a web URL is a secret
        ("https://ghp_abc123@hooks.example/x", "https://***@hooks.example/x"),
        ("http://t0ken@127.0.0.1:9095/notify", "http://***@127.0.0.1:9095/notify"),
    ],
)
def test_redact_url_masks_passwords_and_secret_query_parameters(text: str, shown: str) -> None:
    assert redact_url(text) == shown


@pytest.mark.parametrize(
    "value", ['team"a', "Team-A", "-team", "team-", "team_a", "team.a", "t" * 64, "a b"]
)
def test_a_metrics_namespace_that_is_no_kubernetes_namespace_is_refused(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    """`team"a` was taken: `watchkeeper mixin build` wrote rules promtool refuses, and
    Prometheus then failed to start on them."""
    monkeypatch.setenv("WATCHKEEPER_METRICS_NAMESPACE", value)
    with pytest.raises(ValidationError, match="Kubernetes namespace") as refused:
        Settings()
    assert {variable_at(e["loc"]) for e in refused.value.errors()} == {
        "WATCHKEEPER_METRICS_NAMESPACE"
    }


@pytest.mark.parametrize("value", ["", "team-a", "0", "t" * 63])
def test_a_kubernetes_namespace_is_taken(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("WATCHKEEPER_METRICS_NAMESPACE", value)
    assert Settings().alerting.metrics_namespace == value


@pytest.mark.parametrize(
    "value", ["127.0.0.1:18250", "grafana:3000", "ftp://grafana/", "http://", "/grafana", ""]
)
def test_a_grafana_url_that_is_no_web_address_is_refused(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    """127.0.0.1:18250 (no scheme) was taken, and `grafana provision` then failed with
    "Invalid URL '://None/api/...'"."""
    monkeypatch.setenv("WATCHKEEPER_GRAFANA_URL", value)
    with pytest.raises(ValidationError, match="absolute http or https URL") as refused:
        Settings()
    assert {variable_at(e["loc"]) for e in refused.value.errors()} == {"WATCHKEEPER_GRAFANA_URL"}


@pytest.mark.parametrize(
    "value", ["http://127.0.0.1:3000", "https://grafana.example/sub/", "http://[::1]:3000"]
)
def test_a_grafana_web_address_is_taken(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("WATCHKEEPER_GRAFANA_URL", value)
    assert Settings().grafana.url == value
