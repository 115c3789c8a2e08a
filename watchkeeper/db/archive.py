"""The log's Parquet archive: predictions written out before a prune deletes them.

One Parquet file per prune batch, in a dataset partitioned by prediction day::

    <archive_url>/predictions/date=2026-10-20/seq-000000001234-000000005678.parquet

A file holds the batch's predictions (``seq``, ids, time, model version, prediction,
interval, OOD score, a classifier's class probabilities as JSON text), the label if
there was one (``actual``, a class label as text in ``label``, ``label_received_at``) and
the input features as typed columns (numbers as float64, categories as strings). Feature
sets differ between model versions, so read the dataset with schema unification
(pandas ``read_parquet`` on the directory, DuckDB ``union_by_name``, Spark
``mergeSchema``).

A feature's column is its own name, unless that name is a log column's (``seq``,
``actual``, ``label``, ``date`` …) or begins with ``feature_``: then it is
``feature_<name>`` (``seq`` → ``feature_seq``, ``feature_seq`` → ``feature_feature_seq``).
No feature's column is then a log column's or another feature's, and the feature a column
holds is its name with one leading ``feature_`` removed (:func:`feature_column`,
:func:`feature_name`). Files following this rule say so in their Parquet metadata
(``watchkeeper:feature_columns`` = ``escaped``). Files written before it carry no such
key and prefixed only the names of log columns (a ``feature_x`` feature kept its name);
:func:`read_archive` renames their columns to the rule, taking a ``feature_<log column>``
column as that log column's feature unless the reader asks for a feature of the
column's own name and not the other (as the earlier reader took it).

A file is complete before its rows are deleted (in the same prune batch, which deletes
whole requests), and its name is the range of positions (``seq``) it holds. A prune
stopped after writing a file and before its delete committed (killed, a lost
connection, a partition's drop refused) leaves rows that are both archived and still in
the database; the retry's batch may hold other rows (more aged since, a label arrived),
so its file is another one. Each write therefore first takes its rows out of the day's
older files (rewriting those under the range they keep), so that every row is in one
file, as the database held it when it was last written. A crash within that leaves at
worst a row in two files, never in none: :func:`read_archive` keeps one of each.
``archive_url`` is a local directory or any fsspec URL (``s3://bucket/log``,
``gs://…``; the filesystem's own package must be installed).
"""

from __future__ import annotations

import re
from collections.abc import Collection, Sequence
from typing import Any

import fsspec
import orjson
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import sqlalchemy as sa

from watchkeeper.db.features import feature_records
from watchkeeper.db.prediction_view import seq_in
from watchkeeper.db.tables import feedback, predictions
from watchkeeper.labelled_rows import LabelledRows

LOG_COLUMNS = (
    predictions.c.seq,
    predictions.c.prediction_id,
    predictions.c.request_id,
    predictions.c.item_index,
    predictions.c.created_at,
    predictions.c.model_version,
    predictions.c.prediction,
    predictions.c.lower,
    predictions.c.upper,
    predictions.c.ood_score,
    predictions.c.probabilities,
)
_LABEL_COLUMNS = (
    feedback.c.actual,
    feedback.c.label,
    feedback.c.received_at.label("label_received_at"),
)
_NAMES = {c.name for c in LOG_COLUMNS} | {"actual", "label", "label_received_at", "date"}
_PREFIX = "feature_"
# the naming rule a file follows (see the module's docstring); earlier files have none
_NAMING_KEY, _NAMING = b"watchkeeper:feature_columns", b"escaped"


def feature_column(name: str) -> str:
    """The archive column of the feature ``name``: never a log column's name nor another
    feature's column, whatever the features are named."""
    return _PREFIX + name if name in _NAMES or name.startswith(_PREFIX) else name


def feature_name(column: str) -> str:
    """The feature an archive column that is not a log column holds."""
    return column.removeprefix(_PREFIX)


class Archive:
    """Writes batches of predictions under ``url``."""

    def __init__(self, url: str) -> None:
        self.url = url.rstrip("/")
        self._fs, self._root = fsspec.core.url_to_fs(self.url)

    def write(self, connection: sa.Connection, seqs: Sequence[int]) -> int:
        """Archive the predictions at positions ``seqs`` as the database holds them now;
        rows written."""
        if not seqs:
            return 0
        frame = read_rows(connection, seqs)
        for day, rows in frame.groupby(frame["created_at"].dt.strftime("%Y-%m-%d"), sort=True):
            directory = f"{self._root}/predictions/date={day}"
            self._fs.makedirs(directory, exist_ok=True)
            table = pa.Table.from_pandas(rows.reset_index(drop=True), preserve_index=False)
            table = table.replace_schema_metadata(
                {**(table.schema.metadata or {}), _NAMING_KEY: _NAMING}
            )
            self._take_out(directory, table["seq"].combine_chunks())
            self._put(directory, table)
        return len(frame)

    def _take_out(self, directory: str, seqs: pa.Array) -> None:
        """Remove the rows at ``seqs`` from the files of ``directory`` (a row's day
        never changes, so no other directory holds it): the rest of a file is written
        anew before the file goes. Only files whose name's range meets ``seqs``' are
        read, their ``seq`` column first."""
        low, high = pc.min(seqs).as_py(), pc.max(seqs).as_py()
        for path in self._fs.ls(directory, detail=False):
            name = path.rsplit("/", 1)[-1]
            span = _FILE.fullmatch(name)
            if span is None or int(span[2]) < low or int(span[1]) > high:
                continue
            held = pq.read_table(path, columns=["seq"], filesystem=self._fs)["seq"]
            if not pc.any(pc.is_in(held, value_set=seqs)).as_py():
                continue
            table = pq.read_table(path, filesystem=self._fs)
            rest = table.filter(pc.invert(pc.is_in(table["seq"], value_set=seqs)))
            if rest.num_rows:
                self._put(directory, rest)  # first: a crash leaves a copy, never a loss
                if _name(rest) == name:
                    continue  # the same range: replaced in place
            self._fs.rm(path)

    def _put(self, directory: str, table: pa.Table) -> None:
        """Write ``table`` as the file named by its range of ``seq``, through a
        temporary file so that a reader never sees half a file; on failure (a full
        disk) the temporary file is removed."""
        name = _name(table)
        partial = f"{directory}/.{name}.partial"
        try:
            with self._fs.open(partial, "wb") as handle:
                pq.write_table(table, handle)
            self._fs.mv(partial, f"{directory}/{name}")
        except BaseException:
            if self._fs.exists(partial):
                self._fs.rm(partial)
            raise


_FILE = re.compile(r"seq-(\d+)-(\d+)\.parquet")


def _name(table: pa.Table) -> str:
    seqs = table["seq"]
    return f"seq-{pc.min(seqs).as_py():012d}-{pc.max(seqs).as_py():012d}.parquet"


def read_rows(connection: sa.Connection, seqs: Sequence[int]) -> pd.DataFrame:
    """The predictions at positions ``seqs`` with label and features (each under its
    :func:`feature_column`), one row each, by ``seq``."""
    query = (
        sa.select(*LOG_COLUMNS, predictions.c.features, *_LABEL_COLUMNS)
        .outerjoin(feedback, feedback.c.prediction_id == predictions.c.prediction_id)
        .where(seq_in(list(seqs)))  # through the requests' index
        .order_by(predictions.c.seq)
    )
    rows = connection.execute(query).all()
    records = feature_records(connection, rows)
    frame = pd.DataFrame(
        [r[: len(LOG_COLUMNS)] for r in rows], columns=[c.name for c in LOG_COLUMNS]
    )
    for name in ("prediction", "lower", "upper", "ood_score"):
        frame[name] = frame[name].astype("float64")  # an all-NULL batch stays numeric
    # JSON text: a list column's Parquet type would change with the number of classes
    frame["probabilities"] = [
        None if p is None else orjson.dumps(p).decode() for p in frame["probabilities"]
    ]
    frame["seq"] = frame["seq"].astype("int64")
    frame["item_index"] = frame["item_index"].astype("int64")
    frame["actual"] = pd.array([r.actual for r in rows], dtype="Float64").astype("float64")
    frame["label"] = pd.Series([r.label for r in rows], index=frame.index, dtype="object")
    frame["label_received_at"] = pd.to_datetime([r.label_received_at for r in rows], utc=True)
    frame["created_at"] = pd.to_datetime(frame["created_at"], utc=True)
    features = pd.DataFrame.from_records(records, index=frame.index)
    features.columns = [feature_column(n) for n in features.columns]
    return pd.concat([frame, features.apply(_typed)], axis=1)


def _typed(column: pd.Series[Any]) -> pd.Series[Any]:
    """Numbers as float64 (missing: NaN), anything else as strings (missing: None)."""
    values = column.dropna()
    if values.map(lambda v: isinstance(v, int | float) and not isinstance(v, bool)).all():
        return pd.to_numeric(column, errors="coerce").astype("float64")
    text = column.map(lambda v: None if v is None or v != v else str(v)).astype("object")
    return text.where(text.notna(), None)  # None, never NaN, for a missing category


def read_archive(url: str, *, features: Collection[str] = ()) -> pd.DataFrame:
    """Every archived prediction under ``url``, once each, by ``seq``, each feature under
    its :func:`feature_column` (for tests and notebooks). ``features``: the feature names
    a reader asks for, which settle how a file written before the naming rule is read
    (the module's docstring)."""
    fs, root = fsspec.core.url_to_fs(url.rstrip("/"))
    files = sorted(p for p in fs.find(f"{root}/predictions") if p.endswith(".parquet"))
    frames = [_as_named_now(pq.read_table(f, filesystem=fs), set(features)) for f in files]
    if not frames:
        return pd.DataFrame()
    frame = pd.concat(frames, ignore_index=True)
    # a crash while a write took its rows out of older files may leave a row in two:
    # the copy with a label (the later state) is kept
    frame = frame.sort_values(["seq", "label_received_at"], na_position="first", kind="stable")
    frame = frame.drop_duplicates("seq", keep="last", ignore_index=True)
    text = frame.select_dtypes("object").columns  # a file without the column: None
    frame[text] = frame[text].astype(object).where(frame[text].notna(), None)
    return frame


def _as_named_now(table: pa.Table, features: set[str]) -> pd.DataFrame:
    """A file's rows, its feature columns named by the current rule."""
    frame = table.to_pandas()
    if (table.schema.metadata or {}).get(_NAMING_KEY) == _NAMING:
        return frame
    return frame.rename(columns={c: _earlier_feature_column(c, features) for c in frame})


def _earlier_feature_column(column: str, features: set[str]) -> str:
    """The current column of an earlier file's ``column``: those files prefixed only a
    log column's name, so ``feature_<log column>`` was that feature, or (when no log
    column clashed) a feature of that very name; the reader's ``features`` tell which,
    as the earlier reader's lookup by name did."""
    if column in _NAMES or not column.startswith(_PREFIX):
        return column
    base = column.removeprefix(_PREFIX)
    if base in _NAMES and not (column in features and base not in features):
        return column  # the log column's feature, under the same name now
    return feature_column(column)


def archived_labels(
    url: str, names: Sequence[str], target: str, *, since: Any, labels: bool = False
) -> LabelledRows:
    """Archived labelled predictions whose label arrived at or after ``since``, as
    ``retrain.data.labelled_predictions`` reads the log's: the features ``names`` and
    the actual value (with ``labels``, a classifier's class label text) as ``target``,
    oldest prediction first, with each one's id and time beside them (a prediction
    archived by a prune whose delete then failed is also still in the database: the
    caller drops it by its id). Lets a retraining window reach past the database's
    retention."""
    frame = read_archive(url, features=names)
    column = "label" if labels else "actual"
    if frame.empty or column not in frame:
        return LabelledRows.empty([*names, target])
    since = pd.Timestamp(since)
    labelled = frame[frame[column].notna() & (frame["label_received_at"] >= since)]
    labelled = labelled.sort_values(["created_at", "seq"], ignore_index=True)
    out = pd.DataFrame({n: labelled.get(feature_column(n)) for n in names}, index=labelled.index)
    out[target] = labelled[column].to_numpy()
    return LabelledRows(
        out,
        tuple(labelled["prediction_id"]),
        tuple(labelled["created_at"]),
    )
