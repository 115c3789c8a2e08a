"""Datasets split in time whatever their period column holds: numbers or dates, with
the dataset's own split or one cut at row quantiles, and bounds read in the column's
type."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from watchkeeper.dataset import Dataset, DatasetError, PeriodSplit, load_ames, load_csv
from watchkeeper.schema import (
    IGNORED_EXCLUDED,
    IGNORED_PERIOD,
    IGNORED_PERIOD_PART,
    IgnoredColumn,
)


def _monthly(tmp_path: Path, *, dates: bool) -> Path:
    months = pd.date_range("2020-01-01", periods=20, freq="MS")
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(
        {
            "month": np.repeat(months.strftime("%Y-%m-%d") if dates else np.arange(20), 10),
            "x": rng.normal(size=200),
            "y": rng.normal(size=200),
        }
    )
    path = tmp_path / "monthly.csv"
    frame.to_csv(path, index=False)
    return path


def test_a_csv_without_its_own_split_is_cut_at_60_and_80_percent_of_its_rows(
    tmp_path: Path,
) -> None:
    dataset = load_csv(_monthly(tmp_path, dates=False), "y", period="month")

    split = dataset.default_split()

    # 20 months of 10 rows: months 0–11 hold 60 %, 12–15 the next 20 %
    assert split == PeriodSplit(train_end=11, validation_start=12, validation_end=15)
    assert len(dataset.between(None, split.train_end).frame) == 120
    assert len(dataset.after(split.validation_end).frame) == 40


def test_a_date_period_column_is_read_as_dates_and_split_by_dates(tmp_path: Path) -> None:
    dataset = load_csv(_monthly(tmp_path, dates=True), "y", period="month")

    split = dataset.default_split()
    training = dataset.between(None, split.train_end)
    validation = dataset.between("2021-01-01", "2021-04-30")

    assert split.train_end == pd.Timestamp("2020-12-01")
    assert len(training.frame) == 120
    assert len(validation.frame) == 40
    assert training.window()["end"] == "2020-12-01T00:00:00"


def test_the_ames_data_keeps_its_documented_split() -> None:
    assert load_ames().default_split() == PeriodSplit(200712, 200801, 200812)


def test_the_columns_a_dataset_excludes_say_why_they_are_no_features(tmp_path: Path) -> None:
    """They become the schema's ignored columns: a record shaped like the data holds
    them."""
    csv = load_csv(_monthly(tmp_path, dates=True), "y", period="month", exclude=("x",))

    assert load_ames().excluded_columns() == (
        IgnoredColumn("Year_Sold", IGNORED_PERIOD_PART),
        IgnoredColumn("Mo_Sold", IGNORED_PERIOD_PART),
        IgnoredColumn("Sale_Period", IGNORED_PERIOD),
    )
    assert csv.excluded_columns() == (
        IgnoredColumn("x", IGNORED_EXCLUDED),
        IgnoredColumn("month", IGNORED_PERIOD),
    )


@pytest.mark.parametrize(
    ("values", "problem"),
    [(["a", "b", "c"], "neither numbers nor dates"), ([1, 1, 1], "at least 3 are needed")],
)
def test_an_unusable_period_column_is_a_clear_error(
    tmp_path: Path, values: list[object], problem: str
) -> None:
    path = tmp_path / "bad.csv"
    pd.DataFrame({"when": values, "y": [1.0, 2.0, 3.0]}).to_csv(path, index=False)

    with pytest.raises(DatasetError, match=problem):
        load_csv(path, "y", period="when").default_split()


def test_a_bound_of_the_wrong_type_names_the_column(tmp_path: Path) -> None:
    dataset = load_csv(_monthly(tmp_path, dates=False), "y", period="month")

    with pytest.raises(DatasetError, match="'soon' is not a number, as column 'month' is"):
        dataset.between("soon", None)


def test_a_missing_target_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="no target column 'price'"):
        load_csv(_monthly(tmp_path, dates=False), "price", period="month")


@pytest.mark.parametrize("separator", [";", "\t", "|"])
def test_a_csv_with_another_separator_is_a_clear_error_saying_so(
    tmp_path: Path, separator: str
) -> None:
    """It was read as one column, and the error said only that `price` was missing."""
    path = tmp_path / "semicolons.csv"
    pd.DataFrame({"x": [1.5, 2.5], "price": [3, 4]}).to_csv(path, index=False, sep=separator)

    with pytest.raises(DatasetError, match="read as one column .*comma-separated") as refused:
        load_csv(path, "price")
    assert repr(f"x{separator}price") in str(refused.value)


def test_text_classes_that_pandas_reads_as_missing_stay_classes(tmp_path: Path) -> None:
    """A severity of None/Low/High lost its 'None' rows (pandas reads 'None', 'null',
    'N/A', 'nan' as missing): a 2-class model was trained, and feedback 'None' was an
    unknown class. Only an empty cell or R's 'NA' is a missing target now."""
    path = tmp_path / "severity.csv"
    path.write_text("x,severity\n1,None\n2,Low\n3,High\n4,null\n5,N/A\n6,nan\n7,\n8,NA\n9,Low\n")

    dataset = load_csv(path, "severity")

    assert dataset.frame["severity"].tolist() == [
        "None", "Low", "High", "null", "N/A", "nan", "Low"
    ]  # fmt: skip
    assert dataset.frame["x"].tolist() == [1, 2, 3, 4, 5, 6, 9]


def test_a_numeric_target_keeps_pandas_missing_values(tmp_path: Path) -> None:
    path = tmp_path / "prices.csv"
    path.write_text("x,price\n1,10.5\n2,None\n3,NA\n4,\n5,12\n")

    assert load_csv(path, "price").frame["price"].tolist() == [10.5, 12.0]


def test_a_missing_target_names_the_columns_there_are(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"its columns: month, x, y"):
        load_csv(_monthly(tmp_path, dates=False), "price", period="month")


def test_datasets_built_in_code_still_take_integer_periods() -> None:
    frame = pd.DataFrame({"p": [1, 2, 3, 4], "y": [1.0, 2.0, 3.0, 4.0]})
    dataset = Dataset("inline", frame, "y", "p")

    assert len(dataset.between(2, 3).frame) == 2
    window = dataset.window()
    assert {k: window[k] for k in ("dataset", "rows", "period_column", "start", "end")} == {
        "dataset": "inline",
        "rows": 4,
        "period_column": "p",
        "start": 1,
        "end": 4,
    }
    assert window["target_quantiles"][0] >= 1.0 and window["target_quantiles"][-1] <= 4.0


def test_bounds_compare_with_a_date_column_whatever_their_time_zones(tmp_path: Path) -> None:
    """A column of UTC times and a bound without a zone raised a raw TypeError."""
    path = tmp_path / "zoned.csv"
    when = pd.date_range("2008-01-01", periods=12, freq="MS", tz="UTC")
    pd.DataFrame({"when": when.strftime("%Y-%m-%dT%H:%M:%SZ"), "y": range(12)}).to_csv(
        path, index=False
    )
    dataset = load_csv(path, "y", period="when")

    assert len(dataset.between(None, "2008-06-30").frame) == 6
    assert len(dataset.between("2008-07-01T00:00:00+00:00", None).frame) == 6
    assert len(dataset.after("2008-11-01").frame) == 1


def test_rows_without_a_period_value_are_left_out_and_counted(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Left to the split, a row without a period fell out of every slice of time
    unsaid: 45 of 400 rows of a CSV vanished from training."""
    path = tmp_path / "data.csv"
    path.write_text("x,when,y\n1,2020-01-01,1\n2,,2\n3,2020-02-01,3\n4,,4\n5,2020-03-01,5\n")

    with caplog.at_level("INFO", logger="watchkeeper.dataset"):
        dataset = load_csv(path, "y", period="when")

    assert dataset.frame["x"].tolist() == [1, 3, 5]
    assert "2 row(s) without a 'when' value left out" in caplog.text


def test_infinite_feature_values_are_read_as_missing_and_counted(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The server refuses an infinite feature, yet training fitted on them: the trees'
    binning drew NaN thresholds from them (NumPy "invalid value" warnings, an error under
    this suite)."""
    path = tmp_path / "data.csv"
    path.write_text("x,z,label,y\n1.5,inf,a,1\n-inf,2,b,inf\n3.5,-inf,c,3\n4.5,4,d,4\n")

    with caplog.at_level("INFO", logger="watchkeeper.dataset"):
        dataset = load_csv(path, "y")

    frame = dataset.frame
    assert frame["x"].isna().tolist() == [False, True, False, False]
    assert frame["z"].isna().tolist() == [True, False, True, False]
    assert frame["y"].tolist()[1] == np.inf  # the target is the training checks' to refuse
    assert "infinite values read as missing: 'x' (1), 'z' (2)" in caplog.text


def test_a_csv_holding_infinite_features_trains_without_numeric_warnings(tmp_path: Path) -> None:
    from watchkeeper.training import TrainingParams, train

    # over 255 distinct values, so the binning takes percentiles, which infinities break
    rng = np.random.default_rng(3)
    frame = pd.DataFrame({"x": rng.normal(size=400), "w": rng.normal(size=400)})
    frame.loc[[4, 40, 140], "x"] = [np.inf, -np.inf, np.inf]
    frame["y"] = frame["w"] * 2 + rng.normal(size=400)
    path = tmp_path / "data.csv"
    frame.to_csv(path, index=False)
    dataset = load_csv(path, "y")

    head, tail = dataset.frame.iloc[:320], dataset.frame.iloc[320:]
    result = train(
        Dataset("data", head, "y"), Dataset("data", tail, "y"), params=TrainingParams(max_iter=20)
    )

    assert result.metrics.rows == 80
