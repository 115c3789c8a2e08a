"""Recording rules used by the dashboards and alerts. Every one keeps ``namespace``
and ``job``, so an alert on a recorded series still tells releases apart."""

from __future__ import annotations

from dataclasses import dataclass

from watchkeeper.mixin.config import Component, MixinConfig

PREDICT = 'endpoint="/predict"'
# The requests that ask for a prediction: the error and rejection ratios are shares of
# these. An OPTIONS (204) asks for none, and a 405 to another method (counted under
# /predict too) is no prediction refused.
POSTED = 'method="POST"'


@dataclass(frozen=True)
class Recording:
    record: str
    expr: str
    comment: str = ""


def recording_rules(c: MixinConfig) -> list[Recording]:
    by = c.by
    requests = c.selector(Component.SERVING, PREDICT)
    buckets = f"watchkeeper_http_request_duration_seconds_bucket{requests}"
    posted = c.selector(Component.SERVING, PREDICT, POSTED)
    total = f"sum by ({by()}) (rate(watchkeeper_http_requests_total{posted}[5m]))"

    def ratio(status: str) -> str:
        matching = c.selector(Component.SERVING, PREDICT, POSTED, f'status=~"{status}"')
        part = f"sum by ({by()}) (rate(watchkeeper_http_requests_total{matching}[5m]))"
        # no 5xx (or 4xx) series at all is a ratio of 0, not no data; `total * 0`
        # rather than `vector(0)` so that the zero keeps namespace and job
        return f"({part}\nor {total} * 0)\n/\n{total}"

    rules = [
        Recording(
            "watchkeeper:predict_requests:rate5m",
            f"sum by ({by('status')}) (rate(watchkeeper_http_requests_total{requests}[5m]))",
        ),
        Recording("watchkeeper:predict_errors:ratio5m", ratio("5..")),
        Recording("watchkeeper:predict_rejected:ratio5m", ratio("4..")),
    ]
    for quantile in ("50", "95", "99"):
        rules.append(
            Recording(
                f"watchkeeper:predict_latency_seconds:p{quantile}_5m",
                f"histogram_quantile(0.{quantile}, sum by ({by('le')}) (rate({buckets}[5m])))",
            )
        )
    rules.append(
        Recording(
            "watchkeeper:predictions:rate5m",
            f"sum by ({by('model_version')}) "
            f"(rate(watchkeeper_predictions_total{c.selector(Component.SERVING)}[5m]))",
        )
    )
    return rules
