"""Every PromQL query the dashboards show, by name, apart from the panels that use
them; tests run each against a real Prometheus and check the metrics exist."""

from __future__ import annotations

PREDICT = 'endpoint="/predict"'

QUERIES: dict[str, str] = {
    # serving
    "request_rate": "watchkeeper:predict_requests:rate5m",
    "error_ratio": "watchkeeper:predict_errors:ratio5m",
    "rejected_ratio": "watchkeeper:predict_rejected:ratio5m",
    "latency_p50": "watchkeeper:predict_latency_seconds:p50_5m",
    "latency_p95": "watchkeeper:predict_latency_seconds:p95_5m",
    "latency_p99": "watchkeeper:predict_latency_seconds:p99_5m",
    "batch_size_p50": (
        "histogram_quantile(0.5, sum by (le) (rate(watchkeeper_predict_batch_size_bucket[5m])))"
    ),
    "batch_size_p99": (
        "histogram_quantile(0.99, sum by (le) (rate(watchkeeper_predict_batch_size_bucket[5m])))"
    ),
    "model_version": "max by (model_version) (watchkeeper_model_info) > 0",
    "prediction_rate": "watchkeeper:predictions:rate5m",
    "log_queue_depth": "sum(watchkeeper_log_queue_depth)",
    "log_rows_written": "sum by (table) (rate(watchkeeper_log_rows_written_total[5m]))",
    "log_backlog_bytes": "sum(watchkeeper_log_backlog_bytes)",
    "log_journal_bytes": "max(watchkeeper_log_journal_bytes)",
    "log_dead_lettered": "sum(increase(watchkeeper_log_rows_dead_lettered_total[1h]))",
    "log_rejected": "sum(increase(watchkeeper_log_entries_rejected_total[1h]))",
    "log_replayed": "sum(increase(watchkeeper_log_rows_replayed_total[1h]))",
    "log_database_up": "min(watchkeeper_log_database_up)",
    # model health
    "dataset_drift": "max by (model_version) (watchkeeper_monitor_dataset_drift)",
    "drifted_share": "max by (model_version) (watchkeeper_monitor_drifted_features_ratio)",
    "feature_p_values": "min by (feature) (watchkeeper_monitor_feature_drift_p_value)",
    "feature_distances": "max by (feature) (watchkeeper_monitor_feature_drift_distance)",
    "output_drift_p": "max by (model_version) (watchkeeper_monitor_output_drift_p_value)",
    "multivariate_drift_p": (
        "max by (model_version) (watchkeeper_monitor_multivariate_drift_p_value)"
    ),
    "ood_fraction": "max by (model_version) (watchkeeper_monitor_ood_fraction)",
    "missing_rate": "max by (feature) (watchkeeper_monitor_missing_rate)",
    "unseen_rate": "max by (feature) (watchkeeper_monitor_unseen_category_rate)",
    "out_of_range_rate": "max by (feature) (watchkeeper_monitor_out_of_range_rate)",
    "monitor_rejected_rate": "max(watchkeeper_monitor_rejected_request_rate)",
    "prediction_p10": (
        "histogram_quantile(0.1, sum by (le) (rate(watchkeeper_prediction_value_bucket[1h])))"
    ),
    "prediction_p50": (
        "histogram_quantile(0.5, sum by (le) (rate(watchkeeper_prediction_value_bucket[1h])))"
    ),
    "prediction_p90": (
        "histogram_quantile(0.9, sum by (le) (rate(watchkeeper_prediction_value_bucket[1h])))"
    ),
    "window_size": "max by (model_version) (watchkeeper_monitor_window_size)",
    "monitor_age": "time() - max(watchkeeper_monitor_last_success_timestamp_seconds)",
    # accuracy and lifecycle
    "mae": "max by (model_version) (watchkeeper_monitor_mae)",
    "validation_mae": "max by (model_version) (watchkeeper_monitor_validation_mae)",
    "rmse": "max by (model_version) (watchkeeper_monitor_rmse)",
    "mape": "max by (model_version) (watchkeeper_monitor_mape_percent)",
    "coverage": "max by (model_version) (watchkeeper_monitor_interval_coverage)",
    "label_delay": "max by (model_version) (watchkeeper_monitor_label_delay_seconds)",
    "labels": "max by (model_version) (watchkeeper_monitor_labels)",
    "retrain_runs": "sum by (outcome) (watchkeeper_retrain_runs_total)",
    "retrain_pending": "max(watchkeeper_retrain_requests_pending)",
    "retrain_requests": "sum by (reason) (watchkeeper_monitor_retrain_requests_total)",
    "retrain_duration": "max(watchkeeper_retrain_last_run_duration_seconds)",
    "current_model": "max by (model_version) (watchkeeper_current_model_info)",
    # an annotation at each promotion: the value is the time (Grafana's useValueForTime)
    "promotions": "max(watchkeeper_retrain_last_promotion_timestamp_seconds) * 1000",
}
