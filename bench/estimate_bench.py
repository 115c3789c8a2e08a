"""Label-free accuracy benchmark: the estimated MAE of each window against the MAE its
labels realise, on the Ames replay.

The default model (trained on 2006–2007, as ``watchkeeper train`` does) predicts the
2008–2010 sales in sale-date order; they are cut into windows of ``--window`` rows, as
the monitor cuts them. For each window it prints the MAE the model's loss estimator
expects (``Model.expected_absolute_errors``, what the monitor stores as
``estimated_accuracy``) beside the MAE realised from the known prices, and the
estimate's own error: the mean and the largest ``|estimated - realised| / realised``
over the windows (the target: a mean under 20 %).

For comparison, on the same windows: a constant estimate (the model's validation MAE,
or its out-of-fold MAE), and estimators that differ from the shipped one in one way
(absolute-error loss, a log target, no prediction among the inputs, learnt on the 2008
validation year instead of out-of-fold). Then the same on windows of ever larger houses
(ordered by ``Gr_Liv_Area``), a covariate shift where the realised MAE triples, and on
200-row windows of 2009–2010 only (NannyML's DLE setting in issue 11). Last, the cost
of estimating a 10,000-row window. Asserts nothing.

    .venv/bin/python bench/estimate_bench.py [--window 200]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.base import clone
from sklearn.ensemble import HistGradientBoostingRegressor
from sklearn.model_selection import KFold

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from watchkeeper.dataset import Dataset, load_ames  # noqa: E402
from watchkeeper.encoding import TabularEncoder  # noqa: E402
from watchkeeper.schema import FeatureSchema  # noqa: E402
from watchkeeper.training import TrainedModel, build_pipeline, train  # noqa: E402

Estimate = Callable[[pd.DataFrame, np.ndarray], np.ndarray]
"""Per-row expected absolute errors from (features, predictions)."""


def _out_of_fold(trained: TrainedModel, data: Dataset) -> np.ndarray:
    """The out-of-fold predictions training learns the estimator from (same folds)."""
    params, schema = trained.params, trained.model.schema
    x = data.frame[list(schema.names)]
    y = data.frame[schema.target].to_numpy(dtype=np.float64)
    pipeline = build_pipeline(schema, params, trained.model.interval.scale)
    held = np.empty_like(y)
    folds = KFold(params.calibration_folds, shuffle=True, random_state=params.random_state)
    for fit_idx, held_idx in folds.split(x):
        fold = clone(pipeline).fit(x.iloc[fit_idx], y[fit_idx])
        held[held_idx] = fold.predict(x.iloc[held_idx])
    return held


def _variant(
    schema: FeatureSchema,
    features: pd.DataFrame,
    predicted: np.ndarray,
    actual: np.ndarray,
    *,
    loss: str = "squared_error",
    log_target: bool = False,
    with_prediction: bool = True,
) -> Estimate:
    """An estimator like the shipped one, changed in one way."""
    numeric = [f.name for f in schema.numeric]
    encoder = TabularEncoder(numeric, [f.name for f in schema.categorical]).fit(features)

    def inputs(frame: pd.DataFrame, prediction: np.ndarray) -> np.ndarray:
        encoded = encoder.transform(frame)
        return np.column_stack([encoded, prediction]) if with_prediction else encoded

    errors = np.abs(actual - predicted)
    trees = HistGradientBoostingRegressor(
        loss=loss,
        max_iter=50,
        learning_rate=0.1,
        max_leaf_nodes=15,
        min_samples_leaf=20,
        l2_regularization=1.0,
        early_stopping=False,
        random_state=0,
    ).fit(inputs(features, predicted), np.log1p(errors) if log_target else errors)

    def estimate(frame: pd.DataFrame, prediction: np.ndarray) -> np.ndarray:
        out = trees.predict(inputs(frame, prediction))
        return np.expm1(out) if log_target else out

    return estimate


def _windows(values: np.ndarray, size: int) -> np.ndarray:
    whole = len(values) // size * size
    return values[:whole].reshape(-1, size).mean(axis=1)


def _report(
    title: str,
    frame: pd.DataFrame,
    trained: TrainedModel,
    estimators: dict[str, Estimate],
    size: int,
) -> None:
    schema = trained.model.schema
    features = frame[list(schema.names)]
    predicted = trained.model.predict(features).value
    realised = _windows(np.abs(frame[schema.target].to_numpy(dtype=np.float64) - predicted), size)
    print(f"\n{title}: {len(realised)} windows of {size} rows")
    print(f"  {'realised MAE':44s} " + " ".join(f"{v:7,.0f}" for v in realised))
    for name, estimate in estimators.items():
        estimated = _windows(estimate(features, predicted), size)
        relative = np.abs(estimated - realised) / realised
        print(
            f"  {name:44s} "
            + " ".join(f"{v:7,.0f}" for v in estimated)
            + f"   mean error {relative.mean():6.1%}, largest {relative.max():6.1%}"
        )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--window", type=int, default=200, help="rows per window")
    args = parser.parse_args()
    load_before = os.getloadavg()

    ames = load_ames()
    training, validation = ames.between(None, 200712), ames.between(200801, 200812)
    trained = train(training, validation)
    model, schema = trained.model, trained.model.schema
    names, target = list(schema.names), schema.target

    oof = _out_of_fold(trained, training)
    train_x, train_y = training.frame[names], training.frame[target].to_numpy(dtype=np.float64)
    valid_x = validation.frame[names]
    valid_y = validation.frame[target].to_numpy(dtype=np.float64)
    oof_mae = float(np.mean(np.abs(train_y - oof)))

    def shipped(frame: pd.DataFrame, prediction: np.ndarray) -> np.ndarray:
        errors = model.expected_absolute_errors(frame, prediction)
        assert errors is not None
        return errors

    def constant(value: float) -> Estimate:
        return lambda frame, prediction: np.full(len(frame), value)

    estimators: dict[str, Estimate] = {
        "estimated (shipped: out-of-fold, L2, + pred.)": shipped,
        f"constant: validation MAE {trained.metrics.mae:,.0f}": constant(trained.metrics.mae),
        f"constant: out-of-fold MAE {oof_mae:,.0f}": constant(oof_mae),
        "absolute-error loss (median)": _variant(
            schema, train_x, oof, train_y, loss="absolute_error"
        ),
        "log target (geometric mean)": _variant(schema, train_x, oof, train_y, log_target=True),
        "features only, no prediction": _variant(
            schema, train_x, oof, train_y, with_prediction=False
        ),
        "learnt on the 2008 validation year": _variant(
            schema, valid_x, model.predict(valid_x).value, valid_y
        ),
    }

    print(f"model trained on 2006–2007 ({len(training.frame):,} sales)")
    replay = ames.between(200801, None).frame
    _report("2008–2010 replay in sale-date order", replay, trained, estimators, args.window)
    by_size = replay.sort_values("Gr_Liv_Area", kind="stable").reset_index(drop=True)
    _report("2008–2010 ordered by Gr_Liv_Area", by_size, trained, estimators, args.window)
    later = ames.between(200901, None).frame
    _report("2009–2010 only (NannyML's chunks)", later, trained, estimators, 200)

    big = replay[names].sample(10_000, replace=True, random_state=0).reset_index(drop=True)
    predicted = model.predict(big).value
    runs = []
    for _ in range(5):
        started = time.perf_counter()
        shipped(big, predicted)
        runs.append(time.perf_counter() - started)
    print(f"\nestimating a 10,000-row window: {min(runs) * 1000:.0f} ms (best of 5)")
    print(f"load average before / after: {load_before[0]:.2f} / {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
