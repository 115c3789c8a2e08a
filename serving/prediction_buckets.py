"""Bucket bounds of ``watchkeeper_prediction_value``, fitted to the model's target.

Fixed bounds suit one target only: Ames dollars put every prediction of a 0–1 target
into the first bucket. Unless ``WATCHKEEPER_PREDICTION_BUCKETS`` is set, the bounds are
the quantiles of the training target recorded with the registry's *oldest* version
that has them (``training_window.target_quantiles``): retrained versions of a model
predict the same target, and every worker, whenever it starts, must use the same
bounds for their histograms to add up.

Nothing read here stops a worker: quantiles a histogram cannot take (none finite) give
the fallback bounds, with a warning, as a version that cannot be read is skipped.
"""

from __future__ import annotations

import logging
import math

from watchkeeper.registry import ModelRegistry

log = logging.getLogger(__name__)

FALLBACK = (0.001, 0.01, 0.1, 1.0, 10.0, 100.0, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8)
"""For a registry with no recorded quantiles (versions trained before they were
recorded): powers of ten, which at least keep scales apart."""


def prediction_buckets(configured: tuple[float, ...], registry: ModelRegistry) -> tuple[float, ...]:
    if configured:
        return configured
    for version in registry.versions():
        try:
            quantiles = registry.record(version).training_window.target_quantiles
        except Exception as exc:  # an unreadable version (whatever the reason): the next
            log.warning("prediction buckets: skipping %s: %s", version, exc)
            continue
        if quantiles:
            return _bounds(version, quantiles)
    return FALLBACK


def _bounds(version: str, quantiles: tuple[float, ...]) -> tuple[float, ...]:
    """The histogram's bounds from ``version``'s quantiles: the finite ones, sorted; the
    fallback if none is (a histogram needs one finite bound below +Inf)."""
    finite = tuple(sorted({float(q) for q in quantiles if math.isfinite(q)}))
    if not finite:
        log.warning(
            "prediction buckets: %s records no finite target quantile (%s): using the "
            "fallback bounds",
            version,
            list(quantiles),
        )
        return FALLBACK
    return finite
