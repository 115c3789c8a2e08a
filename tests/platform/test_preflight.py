"""What a local run refuses before it starts anything: one line naming the settings."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.platform.conftest import REPO, platform_env, run_platform_refused
from watchkeeper.local_run.layout import layout
from watchkeeper.local_run.preflight import Refused, check_alert_token_file, check_ports
from watchkeeper.settings import Settings


def test_two_components_on_one_port_name_both_settings(tmp_path: Path) -> None:
    chosen = Settings(data_dir=tmp_path, monitor_port=18461, retrain_port=18461)  # type: ignore[call-arg]
    with pytest.raises(Refused) as refused:
        check_ports(layout(chosen, REPO, grafana_installed=False))
    assert str(refused.value) == (
        "WATCHKEEPER_MONITOR_PORT and WATCHKEEPER_RETRAIN_PORT are both 18461: the monitor "
        "and the retraining worker cannot share a port; set one of them to another port"
    )


def test_the_alert_token_file_must_hold_the_admin_token(tmp_path: Path) -> None:
    path = tmp_path / "token"
    with pytest.raises(Refused, match=r"^WATCHKEEPER_ALERT_TOKEN_FILE .*/token: cannot read it"):
        check_alert_token_file(path, "secret-abc")
    path.write_text("another\n")
    with pytest.raises(Refused, match="does not hold WATCHKEEPER_ADMIN_TOKEN"):
        check_alert_token_file(path, "secret-abc")
    path.write_text("secret-abc\n")  # Alertmanager trims the line's end
    check_alert_token_file(path, "secret-abc")


def test_an_invalid_setting_is_one_line_naming_the_variable(tmp_path: Path) -> None:
    """`make run` said only "invalid configuration: Input should be a valid integer,
    unable to parse string as an integer", not which of its settings."""
    env = platform_env(tmp_path / "var", WATCHKEEPER_MONITOR_PORT="abc")
    result = run_platform_refused(env)
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "error: invalid configuration: WATCHKEEPER_MONITOR_PORT: Input should be a valid "
        "integer, unable to parse string as an integer; fix the variables named"
    ]
    assert not (tmp_path / "var").exists()
