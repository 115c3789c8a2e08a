"""Which labels a retraining job can train and judge on: finite regression labels within
reach of the original target's range, class labels naming one of the champion's classes."""

from __future__ import annotations

import math

import numpy as np

from retrain.labels import (
    NAMED,
    LeftOutReason,
    screen_classes,
    screen_values,
    trainable_range,
)


def test_the_trainable_range_is_the_original_target_range_widened_ten_times_its_width() -> None:
    assert trainable_range([100.0, 300.0, math.nan]) == (-1900.0, 2300.0)
    assert trainable_range([5.0, 5.0]) == (-45.0, 55.0)  # no width: its magnitude


def test_labels_not_finite_or_far_beyond_the_range_are_left_out_by_reason() -> None:
    labels = [150.0, math.inf, 1e308, -1e308, 2.0**70, 2299.0, math.nan]
    ids = [f"p{i}" for i in range(len(labels))]

    screened = screen_values(labels, ids, (-1900.0, 2300.0))

    assert screened.usable.tolist() == [True, False, False, False, False, True, False]
    [not_finite, extreme] = screened.left_out
    assert (not_finite.reason, not_finite.count, not_finite.prediction_ids) == (
        LeftOutReason.NOT_FINITE,
        2,
        ("p1", "p6"),
    )
    assert (extreme.reason, extreme.count, extreme.prediction_ids) == (
        LeftOutReason.EXTREME,
        3,
        ("p2", "p3", "p4"),
    )
    assert extreme.describe().startswith("3 labels outside -1,900 to 2,300")


def test_only_the_first_ids_are_named_and_all_are_counted() -> None:
    ids = [f"p{i}" for i in range(25)]

    [left] = screen_values([1e308] * 25, ids, (0.0, 1.0)).left_out

    assert left.count == 25 and left.prediction_ids == tuple(ids[:NAMED])
    assert left.describe().endswith(f"{', '.join(ids[:NAMED])} and 15 more)")


def test_class_labels_outside_the_champions_classes_are_left_out_and_named() -> None:
    screened = screen_classes(["yes", True, "no", "maybe", "1"], list("abcde"), ("no", "yes"))

    assert screened.usable.tolist() == [True, False, True, False, False]
    [left] = screened.left_out
    assert (left.reason, left.count, left.prediction_ids) == (
        LeftOutReason.UNKNOWN_CLASS,
        3,
        ("b", "d", "e"),
    )
    assert left.detail == "naming no class of the champion ('1', 'True', 'maybe')"


def test_a_long_or_multiline_label_is_named_short_and_on_one_line() -> None:
    [left] = screen_classes(["x" * 256, "no\nyes"], ["a", "b"], ("no", "yes")).left_out

    assert left.detail == f"naming no class of the champion ('no\\nyes', '{'x' * 40}…')"


def test_every_label_usable_leaves_nothing_out() -> None:
    screened = screen_values(np.array([1.0, 2.0]), ["a", "b"], (0.0, 3.0))

    assert screened.usable.all() and screened.left_out == ()
