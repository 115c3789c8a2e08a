"""Bucket bounds of ``watchkeeper_prediction_value``, fitted to the model's target.

Fixed bounds suit one target only: Ames dollars put every prediction of a 0–1 target
into the first bucket. Unless ``WATCHKEEPER_PREDICTION_BUCKETS`` is set, the bounds are
the quantiles of the training target recorded with the registry's *oldest* version
that has them (``training_window.target_quantiles``): retrained versions of a model
predict the same target, and every worker, whenever it starts, must use the same
bounds for their histograms to add up.
"""

from __future__ import annotations

import logging

from watchkeeper.errors import WatchkeeperError
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
        except WatchkeeperError as exc:  # an unreadable version: look at the next
            log.warning("prediction buckets: skipping %s: %s", version, exc)
            continue
        if quantiles:
            return tuple(sorted({float(q) for q in quantiles}))
    return FALLBACK
