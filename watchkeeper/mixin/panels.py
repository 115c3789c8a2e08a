"""Titles of the dashboard panels alerts link to: the dashboards use them, and each
alert's ``dashboard_url`` is resolved from them (a test fails on a title no dashboard
has)."""

from __future__ import annotations

# serving
ERRORS = "Errors (5xx) and rejections (4xx)"
LATENCY = "Latency of /predict"
LOG_DATABASE_UP = "Log database up"
LOG_JOURNAL_WRITABLE = "Log journal writable"
LOG_QUEUE = "Log queue depth"
LOG_STALLED = "Log entries waiting with no write"
LOG_ENTRIES = "Log entries replayed / dead-lettered / refused (1h)"
LOG_WRITER_RESTARTS = "Log writer restarts (15m)"
MODEL_FALLBACK = "Serving a fallback version (1 = yes)"
RETENTION_AGE = "Oldest row age and its retention, by table"
LOG_ROWS = "Log rows by table"
RETENTION_ERRORS = "Retention errors by task (1h)"
# model health
DATASET_DRIFT = "Dataset drift (1 = drift)"
DRIFTED_SHARE = "Share of features drifted"
OOD_FRACTION = "Out-of-distribution fraction"
MISSING = "Missing-value rate above the reference, by feature"
OUT_OF_RANGE = "Out-of-range rate above the reference, by feature"
UNSEEN = "Unseen-category rate above the reference, by feature"
PREDICTED_VALUES = "Predicted values (p10 / p50 / p90, 1h)"
PREDICTED_CLASSES = "Predicted class mix (1h)"
MONITOR_AGE = "Seconds since last monitor cycle"
WINDOW_ERRORS = "Monitor window errors (10m)"
# accuracy and lifecycle
MAE = "MAE from feedback vs validation"
LABELS_AGE = "Time since accuracy from new labels"
INTERVAL_COVERAGE = "Interval coverage"
# accuracy of a classifier
CLASSIFIER_ACCURACY = "Accuracy from feedback vs validation"
LOG_LOSS = "Log-loss from feedback vs validation"
BRIER = "Brier score"
SET_COVERAGE = "Prediction set coverage"
SET_SIZE = "Prediction set size"
CALIBRATION_ERROR = "Calibration error (ECE)"
CLASS_RECALL = "Recall by class"
ESTIMATED_ACCURACY = "Estimated vs realised accuracy"
ESTIMATE_ERROR = "Accuracy estimate error (last labelled window)"
FEEDBACK_ORPHANS = "Feedback orphans (1h)"
RETRAIN_RUNS = "Retraining runs by outcome (1h)"
RETRAIN_DATABASE_UP = "Retraining database up"
RETRAIN_PROGRESS = "Retraining job: seconds since progress, by worker"
RETRAIN_STALLS = "Retraining jobs stalled, by worker"
