"""The shared OOD score: a vectorised Mahalanobis distance on a frozen reference, safe
on overflowing values, saved as arrays and JSON, and importable without alibi-detect."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from watchkeeper.errors import ArtifactIntegrityError
from watchkeeper.ood import ARRAYS_FILE, JSON_FILE, SCORE_CAP, OodReference

FEATURES = ("area", "rooms", "year")


@pytest.fixture(scope="module")
def reference() -> OodReference:
    rng = np.random.default_rng(0)
    x = rng.normal([1500, 6, 1970], [400, 1.5, 25], size=(800, 3))
    x[:, 1] += x[:, 0] / 500  # correlated, as areas and rooms are
    x[::50, 2] = np.nan
    return OodReference.fit(FEATURES, x, percentile=99.0)


def test_score_is_the_mahalanobis_distance_to_the_frozen_reference(
    reference: OodReference,
) -> None:
    rows = np.array([[1500.0, 9.0, 1970.0], [3000.0, 6.0, 1900.0]])
    z = (rows - reference.mean) / reference.scale
    expected = np.sqrt(np.einsum("ij,jk,ik->i", z, reference.precision, z))

    np.testing.assert_allclose(reference.score(rows), expected)
    # scoring never moves the reference: the same row scores the same after any batch
    reference.score(np.full((1000, 3), 1e6))
    np.testing.assert_allclose(reference.score(rows), expected)


def test_threshold_flags_about_the_percentile_of_reference_like_rows(
    reference: OodReference,
) -> None:
    rng = np.random.default_rng(1)
    fresh = rng.normal([1500, 6, 1970], [400, 1.5, 25], size=(5000, 3))
    fresh[:, 1] += fresh[:, 0] / 500

    assert 0.002 < reference.flags(reference.score(fresh)).mean() < 0.03


def test_missing_values_take_the_reference_median(reference: OodReference) -> None:
    row = np.array([[np.nan, np.nan, np.nan]])

    np.testing.assert_allclose(reference.score(row), reference.score(reference.medians[None, :]))


@pytest.mark.parametrize("value", [1e308, -1e308, 1e200, np.inf])
def test_a_value_that_overflows_scores_the_cap_and_is_flagged(
    reference: OodReference, value: float
) -> None:
    scores = reference.score(np.array([[value, 6.0, 1970.0], [1500.0, 6.0, 1970.0]]))

    assert scores[0] == SCORE_CAP
    assert reference.flags(scores).tolist() == [True, False]


def _reference_rows(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.normal([1500, 6, 1970], [400, 1.5, 25], size=(n, 3))
    x[:, 1] += x[:, 0] / 500
    return x


@pytest.mark.parametrize("extreme", [[1e308, 1e308], [1e308, -1e308], [2.0**70, -1e200]])
def test_a_reference_holding_extreme_finite_values_fits_and_still_sees_them(
    extreme: list[float],
) -> None:
    """Two labelled rows at 1e308 in a retrained version's reference overflowed its mean
    and spread: the fit raised, and the version was never monitored. Clipped to the
    feature's ordinary range, they no longer set its spread."""
    x = _reference_rows(800, seed=0)
    x[[3, 7], 0] = extreme
    ordinary = OodReference.fit(FEATURES, _reference_rows(800, seed=0), percentile=99.0)

    fitted = OodReference.fit(FEATURES, x, percentile=99.0)

    assert np.all(np.isfinite(fitted.mean)) and np.all(np.isfinite(fitted.precision))
    assert np.isfinite(fitted.threshold)
    rows = np.array([[1500.0, 6.0, 1970.0], [15000.0, 6.0, 1970.0], [1e308, 6.0, 1970.0]])
    assert fitted.flags(fitted.score(rows)).tolist() == [False, True, True]
    # the feature keeps about its ordinary spread (two rows now at its largest value)
    np.testing.assert_allclose(fitted.scale, ordinary.scale, rtol=0.05)


def test_a_reference_with_many_extreme_rows_keeps_an_ordinary_threshold() -> None:
    """More extreme rows than the percentile leaves out: the threshold is still that of
    the ordinary rows, not the cap (which would flag nothing but overflowing values)."""
    x = _reference_rows(800, seed=0)
    x[::20, 0] = 1e308
    ordinary = OodReference.fit(FEATURES, _reference_rows(800, seed=0), percentile=99.0)

    fitted = OodReference.fit(FEATURES, x, percentile=99.0)

    assert fitted.threshold == pytest.approx(ordinary.threshold, rel=0.2)


def test_a_reference_of_ordinary_values_fits_exactly_as_before_clipping() -> None:
    """Served scores and the monitor's saved ones must agree for versions fitted before."""
    x = _reference_rows(800, seed=2)
    fitted = OodReference.fit(FEATURES, x, percentile=99.0)

    np.testing.assert_array_equal(fitted.mean, x.mean(axis=0))
    np.testing.assert_array_equal(fitted.scale, x.std(axis=0))


def test_saved_state_loads_identical_and_tampering_is_refused(
    reference: OodReference, tmp_path: Path
) -> None:
    sha256 = reference.save(tmp_path)
    loaded = OodReference.load(tmp_path, sha256)
    rows = np.array([[1500.0, 9.0, 1970.0], [1e308, 1.0, np.nan]])

    np.testing.assert_array_equal(loaded.score(rows), reference.score(rows))
    assert loaded.threshold == reference.threshold
    assert sorted(sha256) == sorted([ARRAYS_FILE, JSON_FILE])

    (tmp_path / JSON_FILE).write_text((tmp_path / JSON_FILE).read_text().replace("99.0", "50.0"))
    with pytest.raises(ArtifactIntegrityError, match="SHA-256"):
        OodReference.load(tmp_path, sha256)


def test_arrays_that_need_pickle_are_refused_even_with_the_right_hash(
    reference: OodReference, tmp_path: Path
) -> None:
    sha256 = reference.save(tmp_path)
    np.savez(
        tmp_path / ARRAYS_FILE,
        medians=np.array([object()], dtype=object),
        mean=reference.mean,
        scale=reference.scale,
        precision=reference.precision,
    )

    sha256[ARRAYS_FILE] = hashlib.sha256((tmp_path / ARRAYS_FILE).read_bytes()).hexdigest()

    with pytest.raises(ArtifactIntegrityError, match="pickle"):
        OodReference.load(tmp_path, sha256)


@pytest.mark.parametrize("module", ["watchkeeper.ood", "monitoring.monitor"])
def test_importing_the_scorer_or_the_monitor_does_not_import_alibi_detect(module: str) -> None:
    """The serving worker will score with watchkeeper.ood: its import path must stay
    free of alibi-detect (seconds to import, and it pulls in transformers)."""
    code = (
        f"import sys, {module}; "
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'alibi_detect', 'transformers'}))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )

    assert result.stdout.strip() == "[]"
