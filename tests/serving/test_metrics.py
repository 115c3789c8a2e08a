"""Serving metrics: helpers, and labels that stay a bounded set whatever clients send."""

from __future__ import annotations

import numpy as np
from flask.testing import FlaskClient
from prometheus_client import CollectorRegistry, Histogram

from serving.metrics import observe_many


def test_observe_many_equals_observing_each_value() -> None:
    values = np.array([-5.0, 0.0, 1.0, 1.5, 2.0, 99.0, 1e9, np.nan, 2.0])
    one_by_one, bulk = CollectorRegistry(), CollectorRegistry()
    h1 = Histogram("h", "h", buckets=(0.0, 1.0, 2.0, 100.0), registry=one_by_one)
    h2 = Histogram("h", "h", buckets=(0.0, 1.0, 2.0, 100.0), registry=bulk)

    for value in values[np.isfinite(values)]:
        h1.observe(value)
    observe_many(h2, values)

    def samples(registry: CollectorRegistry) -> list[tuple[str, dict[str, str], float]]:
        return [
            (s.name, s.labels, s.value)
            for metric in registry.collect()
            for s in metric.samples
            if not s.name.endswith("_created")
        ]

    assert samples(bulk) == samples(one_by_one)
    assert bulk.get_sample_value("h_bucket", {"le": "+Inf"}) == 8
    assert bulk.get_sample_value("h_bucket", {"le": "1.0"}) == 3


def test_invented_http_methods_share_one_label_value(client: FlaskClient) -> None:
    for n in range(50):
        client.open("/predict", method=f"M{n}X")

    methods = {
        labels["method"]
        for metric in client.application.extensions["watchkeeper.metrics"].registry.collect()
        if metric.name == "watchkeeper_http_requests"
        for labels in (s.labels for s in metric.samples)
    }
    assert methods == {"other"}
