"""Settings from the environment, and the README's table kept equal to them."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from watchkeeper.settings import Settings, settings_table

README = Path(__file__).resolve().parents[2] / "README.md"


def test_paths_derive_from_the_data_dir(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WATCHKEEPER_DATA_DIR", "/srv/wk")

    settings = Settings()

    assert settings.database_url == "sqlite:////srv/wk/watchkeeper.db"
    assert settings.registry_dir == Path("/srv/wk/registry")
    assert settings.spill_path == Path("/srv/wk/spill")


def test_environment_overrides_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WATCHKEEPER_DATABASE_URL", "postgresql+psycopg://u@db/wk")
    monkeypatch.setenv("WATCHKEEPER_WORKERS", "8")
    monkeypatch.setenv("WATCHKEEPER_PREDICTION_BUCKETS", "300,100, 200")
    monkeypatch.setenv("WATCHKEEPER_TRUSTED_TYPES", "a.B, c.D")

    settings = Settings()

    assert settings.database_url == "postgresql+psycopg://u@db/wk"
    assert settings.workers == 8
    assert settings.prediction_buckets == (100.0, 200.0, 300.0)
    assert settings.trusted_types == ("a.B", "c.D")


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
