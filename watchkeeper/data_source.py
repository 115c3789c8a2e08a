"""A model family's original training data, recorded with every version so that any
retraining job, whatever started it (the monitor, an alert, ``/admin/retrain``, the
command line), reads the same data again.

A version records where its base data lives (a path, resolved when it was trained,
or a URL), the SHA-256 of its bytes then, its target and its period column
(:class:`~watchkeeper.version_metadata.DataSource`). Reading it back checks the
bytes: data that is missing or changed since is one clear error naming it, never a
silent retrain on other data. The Ames sales ship in a package and are recorded by
name.
"""

from __future__ import annotations

import hashlib
import tempfile
from dataclasses import replace
from pathlib import Path

from watchkeeper.dataset import AMES_PERIOD, AMES_TARGET, Dataset, load_ames, load_csv
from watchkeeper.errors import WatchkeeperError
from watchkeeper.version_metadata import DataSource

AMES = DataSource(dataset="ames", target=AMES_TARGET, period_column=AMES_PERIOD)
URL_SCHEMES = ("http://", "https://")
FETCH_TIMEOUT_SECONDS = 60


class DataSourceError(WatchkeeperError):
    """The recorded training data cannot be read as it was: missing, changed, or never
    recorded."""

    status_code = 409
    code = "training_data_unavailable"


def describe_csv(location: str | Path, target: str, period: str | None) -> DataSource:
    """The source record of a CSV at ``location`` (a path or an http(s) URL) as it is
    now."""
    where = _location(location)
    return DataSource(
        dataset=Path(where).stem,
        location=where,
        sha256=hashlib.sha256(_read(where, version=None)).hexdigest(),
        target=target,
        period_column=period,
    )


def load_source(source: DataSource, *, version: str) -> Dataset:
    """The data ``source`` describes, if its bytes are still those recorded when
    ``version`` was trained; :class:`DataSourceError` naming it otherwise."""
    if source.location is None:
        if source.dataset == AMES.dataset:
            return load_ames()
        raise DataSourceError(
            f"the training data of {version} ({source.dataset!r}) has no recorded location: "
            "retrain with --csv FILE --target COLUMN"
        )
    blob = _read(source.location, version=version)
    actual = hashlib.sha256(blob).hexdigest()
    if source.sha256 is not None and actual != source.sha256:
        raise DataSourceError(
            f"the training data of {version} changed: {source.location} has SHA-256 "
            f"{actual[:12]}…, not {source.sha256[:12]}… as when {version} was trained; "
            f"restore that file, or retrain with --csv {source.location} --target "
            f"{source.target} to train on it as it is now"
        )
    # parse the very bytes checked (a URL, or a file replaced meanwhile)
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / f"{source.dataset}.csv"
        path.write_bytes(blob)
        dataset = load_csv(path, source.target, period=source.period_column)
    return replace(dataset, name=source.dataset)


def _location(location: str | Path) -> str:
    text = str(location)
    if text.startswith(URL_SCHEMES):
        return text
    # resolved: the retraining worker may run from another directory
    return str(Path(text).expanduser().resolve())


def _read(location: str, *, version: str | None) -> bytes:
    of = f"the training data of {version}" if version else "the training data"
    if location.startswith(URL_SCHEMES):
        import requests

        try:
            response = requests.get(location, timeout=FETCH_TIMEOUT_SECONDS)
            response.raise_for_status()
        except requests.RequestException as exc:
            raise DataSourceError(f"{of} cannot be fetched from {location}: {exc}") from exc
        return response.content
    try:
        return Path(location).read_bytes()
    except FileNotFoundError as exc:
        raise DataSourceError(
            f"{of} is missing: {location} is not there any more; restore it, or retrain "
            "with --csv FILE --target COLUMN"
        ) from exc
    except OSError as exc:
        raise DataSourceError(f"{of} cannot be read: {location}: {exc.strerror}") from exc
