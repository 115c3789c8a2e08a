"""Serving metrics: helpers, and labels that stay a bounded set whatever clients send."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from flask import Flask
from flask.testing import FlaskClient
from prometheus_client import CollectorRegistry, Histogram

from serving.metrics import observe_many
from serving.services import services
from watchkeeper.dataset import Dataset
from watchkeeper.registry import ModelRegistry
from watchkeeper.training import train


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
        for metric in services(client.application).metrics.registry.collect()
        if metric.name == "watchkeeper_http_requests"
        for labels in (s.labels for s in metric.samples)
    }
    assert methods == {"other"}


def test_a_method_a_route_does_not_take_is_counted_under_that_route(client: FlaskClient) -> None:
    """A 405's path matched a route: it is counted under the route (once `unmatched`,
    which hid /predict's 405s among unknown paths); an unknown path stays `unmatched`,
    so the label stays the app's routes and one more value."""
    client.get("/predict")
    client.delete("/feedback")
    client.open("/healthz", method="PROPFIND")
    client.get("/no-such-path")

    registry = services(client.application).metrics.registry
    counted = {
        (s.labels["endpoint"], s.labels["method"], s.labels["status"]): s.value
        for metric in registry.collect()
        if metric.name == "watchkeeper_http_requests"
        for s in metric.samples
        if s.name.endswith("_total")
    }
    assert counted == {
        ("/predict", "GET", "405"): 1,
        ("/feedback", "DELETE", "405"): 1,
        ("/healthz", "other", "405"): 1,
        ("unmatched", "GET", "404"): 1,
    }


def test_only_requests_a_view_answers_are_timed_in_its_route_latency(
    client: FlaskClient, record: dict[str, Any]
) -> None:
    """``OPTIONS`` (a browser's CORS preflight) and a method the route does not take
    are answered without the view in microseconds: timed, a flood of them pulled
    /predict's latency quantiles down and hid a slow model. They are still counted."""
    for _ in range(20):
        client.options("/predict")
        client.get("/predict")
    assert client.post("/predict", json={"features": record}).status_code == 200

    registry = services(client.application).metrics.registry
    timed = registry.get_sample_value(
        "watchkeeper_http_request_duration_seconds_count", {"endpoint": "/predict"}
    )
    assert timed == 1
    counted = registry.get_sample_value(
        "watchkeeper_http_requests_total",
        {"endpoint": "/predict", "method": "OPTIONS", "status": "204"},
    )
    assert counted == 20


def test_prediction_buckets_follow_the_training_target_of_any_model(
    make_app: Callable[..., Flask], tmp_path: Path
) -> None:
    """Bounds fixed in Ames dollars put every prediction of a 0–1 target in one bucket."""
    rng = np.random.default_rng(3)
    frame = pd.DataFrame({"x": rng.uniform(size=400)})
    frame["y"] = frame["x"] ** 2 + rng.normal(scale=0.01, size=400)
    data = Dataset("small", frame, "y")
    ModelRegistry(tmp_path / "small").register(
        train(replace(data, frame=frame[:300]), replace(data, frame=frame[300:]))
    )
    app = make_app(registry_path=tmp_path / "small")
    client = app.test_client()

    response = client.post(
        "/predict", json={"instances": [{"x": float(x)} for x in np.linspace(0, 1, 50)]}
    )

    assert response.status_code == 200, response.json
    buckets = [
        float(line.split(" ")[-1])
        for line in client.get("/metrics").text.splitlines()
        if line.startswith("watchkeeper_prediction_value_bucket")
    ]
    filled = np.diff([0.0, *buckets])
    assert (filled > 0).sum() >= 5, buckets  # spread over the buckets, not one
