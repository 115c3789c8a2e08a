"""Grafana dashboards as code and their provisioning through Grafana's HTTP API."""
