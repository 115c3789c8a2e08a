"""Retraining: the job, its single-flight lease, its triggers and its worker."""
