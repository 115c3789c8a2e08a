"""Alerts, recording rules, Alertmanager routing and dashboards from one configuration
(:class:`~watchkeeper.mixin.config.MixinConfig`, derived from the settings), in the
manner of the Prometheus monitoring mixins."""
