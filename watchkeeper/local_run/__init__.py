"""``make run``: the whole platform on one host, started, watched and stopped together.

The prediction server, the monitor and the retraining worker, with Prometheus (the
project's rules), Alertmanager (the project's routing, to the retraining webhook and to
a local notification sink) and Grafana where it is installed. Configuration files for
the run are generated under ``<data_dir>/run/`` from the committed ones.
"""
