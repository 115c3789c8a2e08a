"""Accuracy from ground truth: feedback joined to the predictions it labels.

Labels arrive long after their predictions, and in any order. Accuracy is therefore
reported by **prediction time**, on the same windows the drift checks use (a window is
a range of the log's ``seq``): a window's accuracy is computed when the window is cut,
from the labels already in, and computed again whenever later labels for its
predictions arrive, so that it can be lined up with the window's drift verdicts.

A window's accuracy also checks the label-free estimate of its MAE made when the window
was cut (:mod:`monitoring.estimated_accuracy`): ``estimated_mae`` and its relative
``estimate_error`` are stored beside the realised figures.

Beside it, each model version has a rolling figure over its most recently predicted
``monitor_accuracy_labels`` labelled predictions, with a one-sided lower confidence
bound of its MAE: that bound, not the point figure, is what the retrain trigger and the
accuracy alert compare with the validation MAE.

A classifier version's windows and rolling figure carry classification figures instead
(accuracy with Wilson bounds, log-loss, Brier, set coverage and size, calibration
error, per-class recall: :mod:`monitoring.class_accuracy`), read from the same rows:
the stored class probabilities and ``feedback.label``.

New labels are found by a watermark on ``feedback.received_at``. A label whose
prediction is not in the log yet simply joins nothing until it is; one still unmatched
``feedback_orphan_seconds`` after it arrived is counted once as an orphan.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa
from scipy import stats

from monitoring.check_details import AccuracyDetails
from watchkeeper.db.planner_hints import unindexed
from watchkeeper.db.prediction_seq import request_seq_of
from watchkeeper.db.prediction_view import held_time
from watchkeeper.db.tables import feedback, predictions, window_results
from watchkeeper.prediction_ids import logged_requests, parse_prediction_id

LABEL_COLUMNS = (
    predictions.c.seq,
    predictions.c.model_version,
    # NULL (NaT) for a time pandas cannot hold (a foreign writer's year 1000 or 9999):
    # its delay raised, failing the window's accuracy, and the version's rolling
    # figure failed the cycle; the monitor leaves such rows out and counts them
    held_time(predictions.c.created_at).label("created_at"),
    predictions.c.prediction,
    predictions.c.lower,
    predictions.c.upper,
    predictions.c.probabilities,  # classifiers only
    feedback.c.actual,
    feedback.c.label,  # classifiers: the true class as text
    # NULL (NaT) likewise for a label's own arrival pandas cannot hold (a foreign
    # writer's or a wrong clock's year 9999): its delay raised in every window's and
    # the version's accuracy that read it; left out and counted as above
    held_time(feedback.c.received_at).label("received_at"),
)


IMPLAUSIBLE_SHARE = 0.05
"""Implausible labels (:data:`IMPLAUSIBLE_FACTOR`) are left out only while they are at
most this share of the labels measured together: more are the data, and leaving them
out would blind accuracy monitoring when it matters most."""
IMPLAUSIBLE_FACTOR = 1000.0
"""A label whose error is more than this many times the size of the model's
predictions (the larger of a prediction and its scale, :func:`_model_scale`) is left
out of the figures and counted; so is a positive target's label this many times below
it out of the MAPE."""


@dataclass(frozen=True)
class AccuracyMetrics:
    """Accuracy of a set of labelled predictions."""

    labels: int
    mae: float
    mae_lower_bound: float
    """One-sided lower confidence bound of the MAE (see :func:`mae_lower_bound`)."""
    abs_error_std: float
    rmse: float
    mape: float | None
    """Percent, over the labels with a positive actual value; None for a model whose
    target is not positive throughout (its interval is not on the log scale): a
    percentage of a value near zero or of either sign means nothing."""
    coverage: float
    """Share of actual values inside the prediction interval."""
    label_delay_seconds_median: float
    label_delay_seconds_max: float
    non_finite_predictions: int = 0
    """Labelled predictions left out: the model returned NaN or an infinity (the
    prediction or a bound), which has no error to measure and would make every figure
    NaN or infinite. With none left, the figures are NaN."""
    implausible_labels: int = 0
    """Labels left out: their error is more than :data:`IMPLAUSIBLE_FACTOR` times the
    size of what the model predicts (a price of 1e308 or 2**70 where houses sell for
    1e5). One such label would be most of a thousand labels' MAE, and its variance
    would hold the MAE's lower bound at 0: accuracy monitoring blind until it ages out."""

    @classmethod
    def of(
        cls, labelled: pd.DataFrame, *, confidence: float, positive_target: bool = True
    ) -> AccuracyMetrics:
        numbers = labelled[["prediction", "lower", "upper"]].to_numpy(dtype=np.float64)
        finite = np.isfinite(numbers).all(axis=1)
        non_finite = int(finite.size - np.count_nonzero(finite))
        if non_finite:
            labelled = labelled[finite]
            if labelled.empty:
                return cls.unmeasured(non_finite)
        actual = labelled["actual"].to_numpy(dtype=np.float64)
        predicted = labelled["prediction"].to_numpy(dtype=np.float64)
        lower = labelled["lower"].to_numpy(dtype=np.float64)
        upper = labelled["upper"].to_numpy(dtype=np.float64)
        scale = _model_scale(predicted, lower, upper)
        with np.errstate(over="ignore"):  # 1e308 - -1e308: an infinite error, left out
            error = predicted - actual
        absolute = np.abs(error)
        # an implausible label (1e308, 2**70 for a house price) would be most of a
        # thousand labels' MAE and its variance would sink the lower bound to 0
        plausible = absolute / IMPLAUSIBLE_FACTOR <= np.maximum(scale, np.abs(predicted))
        if scale == 0:  # a model predicting 0 with no interval gives no size to judge by
            plausible[:] = True
        if plausible.size - np.count_nonzero(plausible) > IMPLAUSIBLE_SHARE * plausible.size:
            # so many are what happened (a unit changed upstream, a level shift), not a
            # broken client: measured, but for errors too large for a float
            plausible = np.isfinite(absolute)
        implausible = int(plausible.size - np.count_nonzero(plausible))
        if implausible:
            labelled = labelled[plausible]
            actual, predicted, lower, upper, error, absolute = (
                values[plausible] for values in (actual, predicted, lower, upper, error, absolute)
            )
            if labelled.empty:
                return cls.unmeasured(non_finite, implausible)
        # a percentage of a label a thousand times below what the model predicts
        # measures the label, not the model (and 1e5 / 5e-324 overflows)
        positive = (
            (actual > 0) & (actual >= scale / IMPLAUSIBLE_FACTOR)
            if positive_target
            else np.zeros(actual.size, dtype=bool)
        )
        inside = (actual >= lower) & (actual <= upper)
        delay = (
            pd.to_datetime(labelled["received_at"], utc=True)
            - pd.to_datetime(labelled["created_at"], utc=True)
        ).dt.total_seconds()
        return cls(
            labels=int(actual.size),
            mae=scaled_mean(absolute),
            mae_lower_bound=mae_lower_bound(absolute, confidence),
            abs_error_std=scaled_std(absolute),
            rmse=scaled_rms(error),
            mape=(
                scaled_mean(absolute[positive] / actual[positive]) * 100 if positive.any() else None
            ),
            coverage=float(np.mean(inside)),
            label_delay_seconds_median=float(np.median(delay)),
            label_delay_seconds_max=float(np.max(delay)),
            non_finite_predictions=non_finite,
            implausible_labels=implausible,
        )

    @classmethod
    def unmeasured(cls, non_finite: int, implausible: int = 0) -> AccuracyMetrics:
        """No labelled prediction with a finite value: nothing measured."""
        nan = math.nan
        return cls(0, nan, nan, nan, nan, None, nan, nan, nan, non_finite, implausible)

    def as_details(self, **extra: float | None) -> AccuracyDetails:
        """Stored as a result's details, with the caller's ``extra`` figures (a window's
        ``labelled_share``, a rolling figure's ``confidence``, ``validation_mae``…)."""
        return AccuracyDetails(**asdict(self), **extra)


def _model_scale(predicted: np.ndarray, lower: np.ndarray, upper: np.ndarray) -> float:
    """The size of what the model predicts here: the median over the rows of the larger
    of the prediction's magnitude and its interval's width (a median: one absurd
    prediction does not move it)."""
    with np.errstate(over="ignore"):
        width = upper - lower
    # the lower middle value: np.median averages two, and 1e308 + 1e308 overflows
    return float(np.quantile(np.maximum(np.abs(predicted), width), 0.5, method="lower"))


def _largest(values: np.ndarray) -> float:
    """The largest magnitude, or 1 when all are 0: figures are computed on ``values``
    divided by it, so that neither a sum nor a square overflows."""
    largest = float(np.max(np.abs(values)))
    return largest if largest > 0 else 1.0


def scaled_mean(values: np.ndarray) -> float:
    """The mean of finite ``values``, finite however large they are."""
    scale = _largest(values)
    return scale * float(np.mean(values / scale))


def scaled_rms(values: np.ndarray) -> float:
    """The root mean square of finite ``values``, finite however large they are."""
    scale = _largest(values)
    return scale * float(np.sqrt(np.mean((values / scale) ** 2)))


def scaled_std(values: np.ndarray) -> float:
    """The sample standard deviation of finite ``values`` (0 for one), finite however
    large they are."""
    if values.size < 2:
        return 0.0
    scale = _largest(values)
    return scale * float(np.std(values / scale, ddof=1))


def mae_lower_bound(absolute_errors: np.ndarray, confidence: float) -> float:
    """The MAE is at least this with probability ``confidence``: the mean absolute
    error minus Student's t quantile times its standard error, and at least 0. With
    fewer than two labels nothing is known: 0."""
    n = absolute_errors.size
    if n < 2:
        return 0.0
    # in units of the largest error: the bound is then at most 1 of them, never inf
    scale = _largest(absolute_errors)
    scaled = absolute_errors / scale
    standard_error = float(scaled.std(ddof=1)) / math.sqrt(n)
    bound = float(scaled.mean() - stats.t.ppf(confidence, n - 1) * standard_error)
    return scale * max(bound, 0.0)


@dataclass(frozen=True)
class WindowSpan:
    """A drift window's place in the log: its accuracy covers the same predictions."""

    window_id: str
    model_version: str
    first_seq: int
    last_seq: int
    n_rows: int
    started_at: datetime
    ended_at: datetime


def _frame(rows: list[Any]) -> pd.DataFrame:
    """The rows read, ``created_at`` and ``received_at`` as UTC timestamps (NaT where
    none is held)."""
    frame = pd.DataFrame(rows, columns=[c.name for c in LABEL_COLUMNS])
    for column in ("created_at", "received_at"):
        frame[column] = pd.to_datetime(frame[column], utc=True)
    return frame


_OF_PREDICTIONS = predictions.c.prediction_id == feedback.c.prediction_id
"""A prediction's label, for reads that start from predictions (a window, a version's
newest): looked up by its id, the key of ``feedback``. A condition on the request
(``request_id_of``) is left out: it says nothing more here, and PostgreSQL, reading the
two conditions as independent, expected next to no labelled rows (42 of 7,000) and so
hash-joined every label with every prediction of the version instead of walking back
from the newest request (210 ms against 22 ms on 110,000 predictions, growing with the
log)."""


def _labelled() -> sa.Select[Any]:
    return sa.select(*LABEL_COLUMNS).select_from(predictions).join(feedback, _OF_PREDICTIONS)


def read_window_labels(connection: sa.Connection, span: WindowSpan) -> pd.DataFrame:
    """Every label so far of the window's predictions: the window's requests read by
    the index on ``requests.seq``, each prediction's label by its id. SQLite without
    statistics (as served) would rather read every request of the version by its
    index: the version is checked, not looked up."""
    query = _labelled().where(
        predictions.c.request_seq.between(
            request_seq_of(span.first_seq), request_seq_of(span.last_seq)
        ),
        predictions.c.seq.between(span.first_seq, span.last_seq),
        unindexed(predictions.c.model_version) == span.model_version,
    )
    return _frame(connection.execute(query).all())


def read_window_estimates(connection: sa.Connection, window_ids: list[str]) -> dict[str, float]:
    """The label-free estimate (a regression version's MAE, a classifier's accuracy)
    stored for each of ``window_ids`` (detector ``estimated_accuracy``), for those that
    have one: checked when their labels arrive."""
    if not window_ids:
        return {}
    rows = connection.execute(
        sa.select(window_results.c.window_id, window_results.c.score).where(
            window_results.c.detector == "estimated_accuracy",
            window_results.c.window_id.in_(window_ids),
            window_results.c.score.is_not(None),
        )
    ).all()
    return {row.window_id: float(row.score) for row in rows}


def read_recent_labels(connection: sa.Connection, version: str, limit: int) -> pd.DataFrame:
    """The version's ``limit`` most recently predicted labelled predictions: the
    requests walked back from the newest by the index on ``requests.seq``, each
    prediction's label looked up, until the ``limit``-th, as the log did with a row per
    prediction. The version is checked, not looked up: by its index SQLite (no
    statistics) would read every request of the version and sort them."""
    query = (
        _labelled()
        .where(unindexed(predictions.c.model_version) == version)
        .order_by(predictions.c.request_seq.desc(), predictions.c.item_index.desc())  # = seq
        .limit(limit)
    )
    return _frame(connection.execute(query).all())


@dataclass(frozen=True)
class NewLabels:
    """Labels that arrived in ``(after, up_to]``."""

    latest_received: datetime | None
    """The newest arrival among them, matched or not: the next watermark."""
    matched: pd.DataFrame
    """``seq`` and ``model_version`` of those whose prediction is in the log."""


def read_new_labels(connection: sa.Connection, after: datetime, up_to: datetime) -> NewLabels:
    """Labels that arrived in ``(after, up_to]``: the newest arrival, and the position
    and version of each one's prediction the log holds (:func:`_label_predictions`)."""
    arrived = (feedback.c.received_at > after) & (feedback.c.received_at <= up_to)
    latest = connection.execute(sa.select(sa.func.max(feedback.c.received_at)).where(arrived))
    ids = connection.execute(sa.select(feedback.c.prediction_id).where(arrived)).scalars()
    matched, _ = _label_predictions(connection, ids)
    return NewLabels(latest.scalar(), pd.DataFrame(matched, columns=["seq", "model_version"]))


def _label_predictions(
    connection: sa.Connection, prediction_ids: Iterable[str]
) -> tuple[list[tuple[int, str | None]], list[str]]:
    """Each label's prediction as ``(seq, model_version)``, and the ids that match no
    logged prediction. A prediction id names its request and item: the requests are
    read by key, a chunk at a time, and their positions computed here. Joining labels
    to the ``predictions`` view made SQLite expand each label's whole request to find
    its item: 4.7 s for 20,000 labels of 1,000-row requests."""
    keys = {pid: parse_prediction_id(pid) for pid in prediction_ids}
    stored = logged_requests(connection, (k.request_id for k in keys.values() if k is not None))
    matched: list[tuple[int, str | None]] = []
    unmatched: list[str] = []
    for pid, key in keys.items():
        request = None if key is None else stored.get(key.request_id)
        if request is not None and key is not None and request.holds(key):
            matched.append((request.position(key), request.model_version))
        else:
            unmatched.append(pid)
    return matched, unmatched


def windows_holding(
    connection: sa.Connection, matched: pd.DataFrame, *, detector: str
) -> list[WindowSpan]:
    """The stored windows (one result row of ``detector`` each) that hold any of the
    ``matched`` predictions."""
    spans: list[WindowSpan] = []
    for version, group in matched.groupby("model_version", sort=True):
        seqs = np.sort(group["seq"].to_numpy(dtype=np.int64))
        rows = connection.execute(
            sa.select(
                window_results.c.window_id,
                window_results.c.model_version,
                window_results.c.first_seq,
                window_results.c.last_seq,
                window_results.c.n_rows,
                window_results.c.started_at,
                window_results.c.ended_at,
            ).where(
                window_results.c.detector == detector,
                window_results.c.model_version == str(version),
                window_results.c.first_seq <= int(seqs[-1]),
                window_results.c.last_seq >= int(seqs[0]),
            )
        ).all()
        for row in rows:
            # any label inside [first_seq, last_seq]?
            at = np.searchsorted(seqs, row.first_seq)
            if at < seqs.size and seqs[at] <= row.last_seq:
                spans.append(WindowSpan(*row))
    return spans


def unmatched_labels(connection: sa.Connection, after: datetime, up_to: datetime) -> list[str]:
    """Ids of labels that arrived in ``(after, up_to]`` and match no prediction."""
    ids = connection.execute(
        sa.select(feedback.c.prediction_id).where(
            feedback.c.received_at > after, feedback.c.received_at <= up_to
        )
    ).scalars()
    return _label_predictions(connection, ids)[1]


def settled_now(settle_seconds: float) -> datetime:
    return datetime.now(UTC) - timedelta(seconds=settle_seconds)
