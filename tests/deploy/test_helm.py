"""The Helm chart, rendered and linted by Helm's own library (helm-python-sdk) with
the default values and every ci/ scenario; each manifest validated against the
Kubernetes schemas; and the content that matters checked against the code: the
autoscaler's target, probe paths, environment variables, commands, hook order, and
the rules and dashboards the chart carries."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import helm_python
import kubernetes_validate
import pytest
import yaml

from tests.deploy.conftest import REPO, Stage, settings_fields
from tests.observability import binary
from tests.ports import free_port
from tests.postgres import PostgresServer
from tests.processes import Process
from watchkeeper.helm_schema import (
    BUILT_INTO_FILES,
    BUILT_SETTINGS_FILE,
    CHART_OWNED,
    built_settings,
)
from watchkeeper.helm_schema import render as render_schema
from watchkeeper.mixin.files import generated
from watchkeeper.settings import Settings
from watchkeeper_cli.commands.healthcheck import HEALTH_ENDPOINTS
from watchkeeper_cli.main import build_parser

CHART = REPO / "helm" / "watchkeeper"
SCENARIOS = sorted(p.name for p in (CHART / "ci").glob("*-values.yaml"))
# The scenario whose serving journal is an emptyDir (a Deployment); the others keep it
# on a claim per replica (a StatefulSet), the default.
EMPTYDIR = "emptydir-journal-values.yaml"
CRD_KINDS = {"ServiceMonitor", "PrometheusRule"}
# Variables a container may set besides settings: libpq reads the bundled database's
# password from PGPASSWORD.
NON_SETTINGS_ENV = {"PGPASSWORD"}
# Values passed through as Kubernetes objects: their fields are Kubernetes' own.
PASSTHROUGH = {"podSecurityContext", "securityContext", "resources"}


class Rendered:
    """A rendered release: manifests by kind and name, and the template of each."""

    def __init__(self, manifests: dict[str, str]) -> None:
        self.notes = ""
        self.documents: list[tuple[str, dict[str, Any]]] = []
        for template, text in manifests.items():
            if template.endswith("NOTES.txt"):
                self.notes = text
                continue
            for document in yaml.safe_load_all(text):
                if document:
                    self.documents.append((template, document))

    def all(self, kind: str) -> list[dict[str, Any]]:
        return [d for _, d in self.documents if d["kind"] == kind]

    def get(self, kind: str, suffix: str) -> dict[str, Any]:
        (found,) = [d for d in self.all(kind) if d["metadata"]["name"].endswith(suffix)]
        return found

    def pod_specs(self) -> Iterator[tuple[str, dict[str, Any]]]:
        """Pods of Watchkeeper's own image (the bundled PostgreSQL's left out)."""
        for _, document in self.documents:
            spec = document.get("spec", {})
            if document["kind"] == "CronJob":
                spec = spec["jobTemplate"]["spec"]
            if "template" in spec and not _is_postgresql(document):
                yield document["metadata"]["name"], spec["template"]["spec"]

    def workloads(self) -> list[dict[str, Any]]:
        """The long-running components: Deployments, and serving's StatefulSet."""
        return [
            d
            for kind in ("Deployment", "StatefulSet")
            for d in self.all(kind)
            if not _is_postgresql(d)
        ]

    def serving(self) -> dict[str, Any]:
        """The serving workload, whichever kind the journal's volume makes it."""
        (found,) = [w for w in self.workloads() if w["metadata"]["name"].endswith("-serving")]
        return found

    def containers(self) -> Iterator[tuple[str, dict[str, Any]]]:
        for name, pod in self.pod_specs():
            for container in pod.get("initContainers", []) + pod["containers"]:
                yield f"{name}/{container['name']}", container


def _is_postgresql(document: dict[str, Any]) -> bool:
    labels = document["metadata"].get("labels", {})
    return labels.get("app.kubernetes.io/component") == "postgresql"


@pytest.fixture(scope="module")
def chart() -> Iterator[helm_python.Chart]:
    with helm_python.Chart.load(CHART) as loaded:
        yield loaded


def _values(scenario: str | None) -> dict[str, Any]:
    return yaml.safe_load((CHART / "ci" / scenario).read_text()) if scenario else {}


def render(chart: helm_python.Chart, values: dict[str, Any]) -> Rendered:
    return Rendered(chart.render(values, name="wk", namespace="ml", is_install=True))


@pytest.fixture(scope="module")
def default(chart: helm_python.Chart) -> Rendered:
    return render(chart, {})


@pytest.fixture(scope="module")
def scenario(chart: helm_python.Chart) -> Any:
    cache: dict[str, Rendered] = {}

    def get(name: str) -> Rendered:
        if name not in cache:
            cache[name] = render(chart, _values(name))
        return cache[name]

    return get


def _env(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env", [])}


# -- Helm itself ------------------------------------------------------------------


@pytest.mark.parametrize("name", [None, *SCENARIOS])
def test_chart_lints_clean_in_strict_mode(name: str | None) -> None:
    result = helm_python.lint(CHART, _values(name), strict=True)

    assert result["errors"] == []
    # severity 1 is INFO (e.g. "icon is recommended"); warnings and errors fail strict
    assert [m for m in result["messages"] if m["severity"] > 1] == []


def test_ci_scenarios_cover_operator_bundled_database_fixed_replicas_and_emptydir_journal() -> None:
    assert {"operator-values.yaml", "bundled-postgresql-values.yaml"} <= set(SCENARIOS)
    assert "autoscaling-off-values.yaml" in SCENARIOS
    assert _values(EMPTYDIR)["serving"]["journal"]["volume"] == "emptyDir"


@pytest.mark.parametrize("name", [None, *SCENARIOS])
def test_every_manifest_validates_against_the_kubernetes_schemas(
    chart: helm_python.Chart, name: str | None
) -> None:
    rendered = render(chart, _values(name))
    version = kubernetes_validate.latest_version()
    templates = [template for template, _ in rendered.documents]

    assert rendered.documents
    assert len(templates) == len(set(templates)), "one resource per template"
    for template, document in rendered.documents:
        if document["kind"] in CRD_KINDS:
            continue  # no schema in kubernetes-validate; checked by the tests below
        kubernetes_validate.validate(document, version, strict=True)
        assert document["metadata"]["name"].startswith("wk-watchkeeper"), template


def test_unknown_or_chart_owned_settings_are_refused_by_the_values_schema(
    chart: helm_python.Chart,
) -> None:
    with pytest.raises(helm_python.HelmValuesError, match="invalid propertyName 'WINDOW_SIZE'"):
        chart.render({"settings": {"WINDOW_SIZE": "1"}}, name="wk")
    with pytest.raises(helm_python.HelmValuesError, match="invalid propertyName 'PORT'"):
        chart.render({"settings": {"PORT": "9000"}}, name="wk")


def test_every_setting_the_schema_keeps_for_the_chart_is_set_by_the_chart(
    scenario: Any,
) -> None:
    # The schema refused WATCHKEEPER_*_HOST as "fixed: 0.0.0.0, for the probes", but no
    # template set them: the probes worked only with an image that set them itself.
    owned = {f"WATCHKEEPER_{name.upper()}" for name in CHART_OWNED}
    set_somewhere: set[str] = set()
    for name in ("bundled-postgresql-values.yaml", "operator-values.yaml"):
        for _, container in scenario(name).containers():
            set_somewhere |= set(_env(container))
    assert owned - set_somewhere == set()
    serving = _env(
        scenario("operator-values.yaml").serving()["spec"]["template"]["spec"]["containers"][0]
    )
    assert serving["WATCHKEEPER_HOST"] == "0.0.0.0"


@pytest.mark.parametrize("name", ["TRIGGER_OOD_FRACTION", "ALERT_RUNBOOK_URL", "METRICS_NAMESPACE"])
def test_settings_the_shipped_rules_are_built_from_are_refused_naming_how_to_set_them(
    chart: helm_python.Chart, name: str
) -> None:
    # They reached the pods but not the PrometheusRule and dashboards built into
    # files/: the monitor retrained at one threshold while the alert fired at another.
    with pytest.raises(
        helm_python.HelmRenderError, match=rf"settings.{name} cannot be set .* make mixin"
    ):
        chart.render({"settings": {name: "ml"}}, name="wk")


def test_a_chart_built_with_other_settings_ships_them_in_its_rules_and_pods(
    tmp_path: Path,
) -> None:
    built = Settings(trigger_ood_fraction=0.2, metrics_namespace="ml")
    copy = tmp_path / "watchkeeper"
    shutil.copytree(CHART, copy)
    (copy / BUILT_SETTINGS_FILE).write_text(built_settings(built))
    for relative, text in generated(built).items():
        if relative.startswith("prometheus/rules/"):
            (copy / "files" / relative).write_text(text)
    with helm_python.Chart.load(copy) as loaded:
        rendered = render(loaded, {"metrics": {"prometheusRule": {"enabled": True}}})

    rules = {
        r["alert"]: r
        for g in rendered.get("PrometheusRule", "")["spec"]["groups"]
        for r in g["rules"]
        if "alert" in r
    }
    assert rules["WatchkeeperHighOODFraction"]["expr"].rstrip().endswith("> 0.2")
    assert 'namespace="ml"' in rules["WatchkeeperHighOODFraction"]["expr"]
    for name, container in rendered.containers():
        env = _env(container)
        assert env["WATCHKEEPER_TRIGGER_OOD_FRACTION"] == "0.2", name
        assert env["WATCHKEEPER_METRICS_NAMESPACE"] == "ml", name


def test_chart_manual_names_every_setting_the_rules_are_built_from() -> None:
    manual = (REPO / "helm" / "README.md").read_text()
    for name in (n.upper() for n in BUILT_INTO_FILES):
        trigger = name.startswith("TRIGGER_") and "`TRIGGER_*` thresholds" in manual
        assert f"`{name}`" in manual or trigger, name
    assert "make mixin" in manual


def test_built_settings_file_is_generated_from_the_default_settings() -> None:
    assert (CHART / BUILT_SETTINGS_FILE).read_text() == built_settings(Settings()), (
        "run `make mixin` with no WATCHKEEPER_* set"
    )


def test_bundled_postgresql_without_a_password_is_refused(chart: helm_python.Chart) -> None:
    with pytest.raises(helm_python.HelmRenderError, match="needs postgresql.password"):
        chart.render({"postgresql": {"enabled": True}}, name="wk")


def test_values_file_documents_every_key() -> None:
    """Each key of the chart's own values has a comment right above it; keys inside a
    documented Kubernetes object (securityContext, resources...) may share its comment."""
    lines = (CHART / "values.yaml").read_text().splitlines()
    documented: dict[int, bool] = {}  # indent -> whether the enclosing key is documented
    for number, line in enumerate(lines):
        match = re.match(r"^(\s*)([A-Za-z][\w.-]*):", line)
        if not match:
            continue
        indent = len(match.group(1))
        documented = {i: d for i, d in documented.items() if i < indent}
        above = lines[number - 1].strip() if number else ""
        has_comment = above.startswith("#")
        passthrough = any(documented.values())
        assert has_comment or passthrough, f"values.yaml:{number + 1} {line}"
        documented[indent] = has_comment and line.split(":")[0].strip() in PASSTHROUGH


# -- serving, autoscaling, probes -------------------------------------------------


@pytest.mark.parametrize("name", [None, EMPTYDIR])
def test_autoscaler_targets_the_serving_workload(
    scenario: Any, default: Rendered, name: str
) -> None:
    rendered = scenario(name) if name else default
    hpa = rendered.get("HorizontalPodAutoscaler", "-serving")
    workload = rendered.serving()
    target = hpa["spec"]["scaleTargetRef"]

    assert workload["kind"] == ("Deployment" if name else "StatefulSet")
    assert (target["apiVersion"], target["kind"]) == ("apps/v1", workload["kind"])
    assert target["name"] == workload["metadata"]["name"]
    assert "replicas" not in workload["spec"]  # the autoscaler owns the count
    (metric,) = hpa["spec"]["metrics"]
    assert metric["resource"]["name"] == "cpu"
    (container,) = workload["spec"]["template"]["spec"]["containers"]
    assert "cpu" in container["resources"]["requests"]  # utilisation needs a request


def test_without_autoscaling_the_replica_count_is_fixed(scenario: Any) -> None:
    rendered = scenario("autoscaling-off-values.yaml")

    assert rendered.all("HorizontalPodAutoscaler") == []
    assert rendered.get("StatefulSet", "-serving")["spec"]["replicas"] == 3


@pytest.mark.parametrize("name", [None, EMPTYDIR])
def test_disruption_budget_and_services_select_the_serving_pods(
    scenario: Any, default: Rendered, name: str | None
) -> None:
    rendered = scenario(name) if name else default
    workload = rendered.serving()
    pods = workload["spec"]["template"]["metadata"]["labels"]
    pdb = rendered.get("PodDisruptionBudget", "-serving")["spec"]["selector"]["matchLabels"]
    service = rendered.get("Service", "-serving")["spec"]["selector"]

    assert workload["spec"]["selector"]["matchLabels"].items() <= pods.items()
    assert pdb.items() <= pods.items() and service.items() <= pods.items()
    assert pdb["app.kubernetes.io/component"] == "serving"
    # Other components' pods are not counted by the budget, nor sent requests.
    for other in rendered.workloads():
        if other is not workload:
            labels = other["spec"]["template"]["metadata"]["labels"]
            assert not pdb.items() <= labels.items(), other["metadata"]["name"]


def test_the_serving_statefulset_is_governed_by_a_headless_service_of_its_pods(
    default: Rendered,
) -> None:
    workload = default.serving()
    (governing,) = [
        s
        for s in default.all("Service")
        if s["metadata"]["name"] == workload["spec"]["serviceName"]
    ]
    pods = workload["spec"]["template"]["metadata"]["labels"]

    assert governing["spec"]["clusterIP"] == "None"
    assert governing["spec"]["selector"].items() <= pods.items()
    # Scraped once, through <fullname>-serving: the governing Service carries no job.
    assert "watchkeeper.io/job" not in governing["metadata"]["labels"]
    # Replicas are interchangeable: the HPA may add or remove several at once.
    assert workload["spec"]["podManagementPolicy"] == "Parallel"


def test_probes_point_at_endpoints_the_components_serve(
    default: Rendered, served_paths: dict[str, set[str]]
) -> None:
    # a container's first argument -> the component `watchkeeper healthcheck` names
    components = {"serve": "serve", "monitor": "monitor", "retrain": "worker"}
    probed = set()
    for name, container in default.containers():
        probes = [container[p] for p in container if p.endswith("Probe")]
        if not probes:
            continue
        command = container["args"][0]
        component = components[command]
        paths = served_paths[component]
        port_setting = HEALTH_ENDPOINTS[component].port_variable
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        for probe in probes:
            assert probe["httpGet"]["path"] in paths, (name, probe)
            port = ports[probe["httpGet"]["port"]]
            assert str(port) == _env(container)[port_setting], name
        probed.add(command)
    serving = default.serving()["spec"]["template"]["spec"]["containers"][0]
    assert serving["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert serving["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert probed == {"serve", "monitor", "retrain"}


@pytest.mark.parametrize(
    ("grace", "pre_stop"), [(None, None), (2, 0), (7, None), (11, None), (12, 3), (120, None)]
)
@pytest.mark.parametrize("volume", ["persistentVolumeClaim", "emptyDir"])
def test_server_drains_within_the_pod_grace_period(
    chart: helm_python.Chart, volume: str, grace: int | None, pre_stop: int | None
) -> None:
    """The pod keeps serving through its preStop pause, then gunicorn stops its workers
    (each draining its journal) within WATCHKEEPER_GRACEFUL_TIMEOUT; the kubelet kills
    the pod once the grace period, which counts the pause, is over: the pause and the
    drain must end before it, in either journal mode."""
    serving: dict[str, Any] = {"journal": {"volume": volume}}
    if grace is not None:
        serving["terminationGracePeriodSeconds"] = grace
    if pre_stop is not None:
        serving["preStopSeconds"] = pre_stop
    pod = render(chart, {"serving": serving}).serving()["spec"]["template"]["spec"]
    container = pod["containers"][0]
    graceful = int(_env(container)["WATCHKEEPER_GRACEFUL_TIMEOUT"])
    hook = container.get("lifecycle", {}).get("preStop")
    paused = int(hook["exec"]["command"][1]) if hook else 0

    grace_period = pod["terminationGracePeriodSeconds"]
    assert grace_period == (grace or 40)
    assert paused == (5 if pre_stop is None else pre_stop)
    assert 0 < graceful and paused + graceful < grace_period
    if grace_period >= 20:
        assert grace_period - paused - graceful >= 10  # room to exit


def test_serving_pods_keep_serving_until_the_service_drops_them(default: Rendered) -> None:
    """Endpoints and load balancers drop a terminating pod after it is told to stop: a
    preStop pause keeps it accepting what they still send it (without one, gunicorn
    stopped listening at once and those requests were refused)."""
    container = default.serving()["spec"]["template"]["spec"]["containers"][0]
    assert container["lifecycle"]["preStop"] == {"exec": {"command": ["sleep", "5"]}}


def test_a_grace_period_too_short_to_stop_the_server_is_refused(chart: helm_python.Chart) -> None:
    with pytest.raises(helm_python.HelmValuesError, match="terminationGracePeriodSeconds"):
        chart.render({"serving": {"terminationGracePeriodSeconds": 1}}, name="wk")
    with pytest.raises(helm_python.HelmRenderError, match="preStopSeconds"):
        chart.render({"serving": {"terminationGracePeriodSeconds": 6}}, name="wk")
    with pytest.raises(helm_python.HelmValuesError, match="preStopSeconds"):
        chart.render({"serving": {"preStopSeconds": -1}}, name="wk")


def test_both_journal_modes_run_the_same_serving_pod(
    chart: helm_python.Chart, default: Rendered
) -> None:
    """One pod template: probes, grace period and drain timeout cannot differ between the
    StatefulSet and the Deployment; only where the journal's volume comes from does."""
    durable = default.serving()["spec"]["template"]
    emptydir = render(chart, {"serving": {"journal": {"volume": "emptyDir"}}})
    ephemeral = emptydir.serving()["spec"]["template"]
    volumes = ephemeral["spec"]["volumes"]
    (journal,) = [v for v in volumes if v["name"] == "journal"]

    assert journal["emptyDir"]["sizeLimit"] == "5Gi"
    without_journal = {**ephemeral["spec"], "volumes": [v for v in volumes if v is not journal]}
    assert {**ephemeral, "spec": without_journal} == durable


def _journal_volume(rendered: Rendered) -> tuple[dict[str, Any], dict[str, Any]]:
    """The serving workload and the volume its container mounts at WATCHKEEPER_SPILL_DIR:
    a pod volume, or the StatefulSet's claim template of that name."""
    workload = rendered.serving()
    pod = workload["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    spill = _env(container)["WATCHKEEPER_SPILL_DIR"]
    (mount,) = [m for m in container["volumeMounts"] if m["mountPath"] == spill]
    claims = {t["metadata"]["name"]: t for t in workload["spec"].get("volumeClaimTemplates", [])}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert (mount["name"] in claims) != (mount["name"] in volumes)  # one source, not two
    return workload, claims.get(mount["name"]) or volumes[mount["name"]]


def test_by_default_the_serving_journal_survives_pod_deletion(default: Rendered) -> None:
    """An answered prediction is in the journal until the writer has stored it; a
    pod deleted while the database is away (rolling update, drain, eviction, scale-down)
    must leave that journal to its replacement: an emptyDir goes with the pod."""
    workload, volume = _journal_volume(default)

    assert "emptyDir" not in volume
    assert workload["kind"] == "StatefulSet"
    assert volume["spec"]["accessModes"] == ["ReadWriteOnce"]  # a claim per replica
    assert volume["spec"]["resources"]["requests"]["storage"] == "5Gi"
    assert "storageClassName" not in volume["spec"]  # the cluster's default class
    # The claim outlives a scale-down and the StatefulSet: the journal waits on it.
    assert workload["spec"]["persistentVolumeClaimRetentionPolicy"] == {
        "whenScaled": "Retain",
        "whenDeleted": "Retain",
    }
    # kubectl finds the claims by the serving pods' labels.
    pods = workload["spec"]["template"]["metadata"]["labels"]
    assert volume["metadata"]["labels"] == pods


def test_journal_claims_take_their_class_size_access_and_retention_from_the_values(
    scenario: Any,
) -> None:
    values = _values("autoscaling-off-values.yaml")["serving"]["journal"]
    workload, volume = _journal_volume(scenario("autoscaling-off-values.yaml"))

    assert volume["spec"]["storageClassName"] == values["storageClass"]
    assert volume["spec"]["accessModes"] == values["accessModes"]
    assert volume["spec"]["resources"]["requests"]["storage"] == values["size"]
    assert (
        workload["spec"]["persistentVolumeClaimRetentionPolicy"]
        == values["persistentVolumeClaimRetentionPolicy"]
    )


def test_in_emptydir_mode_serving_is_a_deployment_with_the_journal_on_the_node(
    scenario: Any,
) -> None:
    rendered = scenario(EMPTYDIR)
    workload, volume = _journal_volume(rendered)

    assert workload["kind"] == "Deployment"
    assert volume["emptyDir"] == {"sizeLimit": _values(EMPTYDIR)["serving"]["journal"]["size"]}
    # A Deployment can surge: a rolling update never runs short of replicas.
    assert workload["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    assert [s for s in rendered.all("StatefulSet") if not _is_postgresql(s)] == []
    serving_services = [
        s["metadata"]["name"]
        for s in rendered.all("Service")
        if s["metadata"]["labels"]["app.kubernetes.io/component"] == "serving"
    ]
    assert serving_services == ["wk-watchkeeper-serving"]  # no governing Service
    assert "WARNING: the prediction log's journal is on an emptyDir" in rendered.notes


def test_notes_say_where_the_journal_waits(default: Rendered) -> None:
    assert "journal-wk-watchkeeper-serving-<ordinal>" in default.notes
    assert "until that ordinal is scaled up again" in default.notes
    assert "WARNING: the prediction log's journal" not in default.notes


def test_the_default_journal_size_holds_what_the_manual_says_to_size_it_for() -> None:
    # The manual asked for twice the workers' journals (a predecessor's "as much
    # again"), values.yaml and the setting for once: they now agree on once.
    values = yaml.safe_load((CHART / "values.yaml").read_text())["serving"]
    size = int(values["journal"]["size"].removesuffix("Gi")) * 2**30
    defaults = Settings().log
    needed = values["workers"] * defaults.journal_max_bytes + defaults.dead_letter_max_bytes
    assert size >= needed
    manual = " ".join((REPO / "helm" / "README.md").read_text().split())
    assert (
        "at least `serving.workers` × `WATCHKEEPER_LOG_JOURNAL_MAX_BYTES` (1 GiB) plus "
        "`WATCHKEEPER_LOG_DEAD_LETTER_MAX_BYTES`" in manual
    )
    assert "as much again" not in manual


@pytest.mark.parametrize(
    "journal",
    [
        {"volume": "pvc"},  # the template would take it for emptyDir
        {"volume": "emptydir"},
        {"accessModes": ["ReadWriteMany"]},
        {"accessModes": []},
        {"size": "5 GB"},
        {"persistentVolumeClaimRetentionPolicy": {"whenScaled": "Keep"}},
        {"retentionPolicy": {"whenScaled": "Retain"}},  # misspelt: would be ignored
    ],
)
def test_journal_values_the_chart_would_misread_are_refused(
    chart: helm_python.Chart, journal: dict[str, Any]
) -> None:
    with pytest.raises(helm_python.HelmValuesError, match="journal"):
        chart.render({"serving": {"journal": journal}}, name="wk")


def test_the_old_spill_size_value_names_its_replacement(chart: helm_python.Chart) -> None:
    with pytest.raises(helm_python.HelmRenderError, match="serving.journal.size"):
        chart.render({"serving": {"spillSizeLimit": "3Gi"}}, name="wk")


# -- environment and commands -----------------------------------------------------


@pytest.mark.parametrize("name", [None, *SCENARIOS])
def test_environment_variables_are_settings_fields(
    chart: helm_python.Chart, name: str | None
) -> None:
    rendered = render(chart, _values(name))
    known = settings_fields() | NON_SETTINGS_ENV
    for container_name, container in rendered.containers():
        if container_name.endswith("/postgresql"):
            continue
        env = _env(container)
        assert set(env) <= known, (container_name, set(env) - known)
        plain = {
            k.removeprefix("WATCHKEEPER_").lower(): v
            for k, v in env.items()
            if isinstance(v, str) and k.startswith("WATCHKEEPER_")
        }
        Settings(**plain)  # every plain value is one the settings accept
        assert env["WATCHKEEPER_AUTO_MIGRATE"] == "false", container_name


def test_settings_values_reach_every_component(scenario: Any) -> None:
    rendered = scenario("operator-values.yaml")
    for name, container in rendered.containers():
        env = _env(container)
        assert env["WATCHKEEPER_MONITOR_WINDOW_SIZE"] == "1000", name
        assert env["WATCHKEEPER_TRIGGER_COOLDOWN_SECONDS"] == "7200", name
        assert env["WATCHKEEPER_DRIFT_MULTIVARIATE"] == "false", name


@pytest.mark.parametrize("name", [None, *SCENARIOS])
def test_every_container_sets_its_numeric_threads_once(
    chart: helm_python.Chart, name: str | None
) -> None:
    rendered = render(chart, _values(name))
    for container_name, container in rendered.containers():
        if container_name.endswith("/postgresql"):
            continue
        names = [e["name"] for e in container["env"]]
        assert len(names) == len(set(names)), container_name
        assert _env(container)["WATCHKEEPER_NUMERIC_THREADS"] == "1", container_name


def test_numeric_threads_can_be_raised_for_every_component(chart: helm_python.Chart) -> None:
    rendered = render(chart, {"settings": {"NUMERIC_THREADS": "2"}})
    for container_name, container in rendered.containers():
        if not container_name.endswith("/postgresql"):
            assert _env(container)["WATCHKEEPER_NUMERIC_THREADS"] == "2", container_name


def test_settings_numbers_reach_the_pods_as_written_and_are_accepted(
    chart: helm_python.Chart, tmp_path: Path
) -> None:
    # Helm reads numbers as floats: from a million up, toString wrote "1e+06", which
    # the integer settings refuse, and every pod of the release failed to start.
    written = {
        "LOG_JOURNAL_MAX_BYTES": (2147483648, "2147483648"),
        "MAX_REQUEST_BYTES": (33554432, "33554432"),
        "MONITOR_WINDOW_SIZE": (1000000, "1000000"),
        "LOG_FLUSH_INTERVAL": (0.25, "0.25"),
        "TRIGGER_COOLDOWN_SECONDS": (7200.5, "7200.5"),
        "DRIFT_MULTIVARIATE": (False, "false"),
    }
    rendered = render(chart, {"settings": {k: v for k, (v, _) in written.items()}})
    expected = {f"WATCHKEEPER_{k}": text for k, (_, text) in written.items()}
    for name, container in rendered.containers():
        env = _env(container)
        assert {k: env[k] for k in expected} == expected, name

    result = subprocess.run(
        [sys.executable, "-m", "watchkeeper_cli", "settings"],
        env={**os.environ, **expected, "WATCHKEEPER_DATA_DIR": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    effective = json.loads(result.stdout)
    assert effective["log_journal_max_bytes"] == 2147483648
    assert effective["max_request_bytes"] == 33554432
    assert effective["monitor_window_size"] == 1000000


@pytest.mark.parametrize("name", [None, *SCENARIOS])
def test_every_container_runs_a_real_cli_command(
    chart: helm_python.Chart, name: str | None
) -> None:
    rendered = render(chart, _values(name))
    parser = build_parser()
    commands = set()
    for container_name, container in rendered.containers():
        if container_name.endswith("/postgresql"):
            continue
        assert "command" not in container  # the image's entrypoint is `watchkeeper`
        args = parser.parse_args(container["args"])
        commands.add(" ".join(container["args"][:2]))
        if args.command == "db":
            assert args.db_command == "upgrade" and args.wait > 0
    assert {"serve", "monitor", "retrain worker"} <= commands


def test_pods_run_as_the_image_user_with_writable_scratch_volumes(
    default: Rendered, stages: list[Stage]
) -> None:
    (user,) = stages[-1].args("USER")
    uid = int(user.split(":")[0])
    for name, pod in default.pod_specs():
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        assert pod["securityContext"]["runAsUser"] == uid, name
        for container in pod.get("initContainers", []) + pod["containers"]:
            assert container["securityContext"]["readOnlyRootFilesystem"] is True
            mounts = {m["mountPath"] for m in container["volumeMounts"]}
            data_dir = _env(container)["WATCHKEEPER_DATA_DIR"]
            assert {"/tmp", data_dir} <= mounts, name


# -- migrations and model store ---------------------------------------------------


def _hook(document: dict[str, Any]) -> tuple[set[str], int] | None:
    annotations = document["metadata"].get("annotations", {})
    if "helm.sh/hook" not in annotations:
        return None
    return set(annotations["helm.sh/hook"].split(",")), int(
        annotations.get("helm.sh/hook-weight", "0")
    )


def test_migrations_run_as_a_hook_before_the_application(scenario: Any, default: Rendered) -> None:
    for rendered in (default, scenario("autoscaling-off-values.yaml")):
        job = rendered.get("Job", "-migrate")
        phases, weight = _hook(job)  # type: ignore[misc]
        assert phases == {"pre-install", "pre-upgrade"}
        (container,) = job["spec"]["template"]["spec"]["containers"]
        assert build_parser().parse_args(container["args"]).db_command == "upgrade"
        # What the hook's pod needs exists before it: hooks of a lower weight.
        pod = job["spec"]["template"]["spec"]
        account = rendered.get("ServiceAccount", "")
        assert account["metadata"]["name"] == pod["serviceAccountName"]
        assert _hook(account)[0] == phases and _hook(account)[1] < weight  # type: ignore[index]
        secret_name = _env(container)["WATCHKEEPER_DATABASE_URL"]["secretKeyRef"]["name"]
        for secret in rendered.all("Secret"):
            if secret["metadata"]["name"] == secret_name:
                assert _hook(secret)[0] == phases and _hook(secret)[1] < weight  # type: ignore[index]
        volumes = {v["name"] for v in pod["volumes"]}
        assert "models" not in volumes  # the claim does not exist yet at pre-install
        # The application itself is ordinary resources, which Helm applies after hooks.
        for workload in rendered.workloads():
            assert _hook(workload) is None
            assert "initContainers" not in workload["spec"]["template"]["spec"]


def test_with_bundled_postgresql_each_pod_migrates_before_starting(scenario: Any) -> None:
    rendered = scenario("bundled-postgresql-values.yaml")

    assert [j for j in rendered.all("Job") if j["metadata"]["name"].endswith("-migrate")] == []
    assert {w["kind"] for w in rendered.workloads()} == {"Deployment", "StatefulSet"}
    for workload in rendered.workloads():
        pod = workload["spec"]["template"]["spec"]
        (init,) = pod["initContainers"]
        args = build_parser().parse_args(init["args"])
        assert (args.command, args.db_command) == ("db", "upgrade")
        env = _env(init)
        service = rendered.get("Service", "-postgresql")["metadata"]["name"]
        assert f"@{service}:5432/" in env["WATCHKEEPER_DATABASE_URL"]
        assert env["PGPASSWORD"]["secretKeyRef"]["name"] == service
    assert rendered.get("StatefulSet", "-postgresql")["spec"]["replicas"] == 1


def test_the_training_arguments_example_names_files_the_job_mounts(default: Rendered) -> None:
    # The example named /data/train.csv, which no volume of the Job provides.
    lines = (CHART / "values.yaml").read_text().splitlines()
    at = next(i for i, line in enumerate(lines) if line.strip().startswith("extraArgs:"))
    comment = []
    for line in reversed(lines[:at]):
        if not line.strip().startswith("#"):
            break
        comment.append(line)
    paths = re.findall(r'"(/[^"]+)"', " ".join(comment))
    (container,) = default.get("Job", "-train-1")["spec"]["template"]["spec"]["containers"]
    mounts = [m["mountPath"] for m in container["volumeMounts"]]
    assert paths
    for path in paths:
        assert any(path.startswith(mount.rstrip("/") + "/") for mount in mounts), path


def test_every_component_shares_one_model_store(default: Rendered, scenario: Any) -> None:
    claim = default.get("PersistentVolumeClaim", "-models")
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]
    assert claim["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    for rendered, claim_name in (
        (default, claim["metadata"]["name"]),
        (scenario("autoscaling-off-values.yaml"), "shared-models"),
    ):
        users = set()
        for name, pod in rendered.pod_specs():
            claims = {
                v["name"]: v["persistentVolumeClaim"]["claimName"]
                for v in pod["volumes"]
                if "persistentVolumeClaim" in v
            }
            if not claims:
                continue
            assert set(claims.values()) == {claim_name}, name
            for container in pod["containers"]:
                mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
                registry = Path(_env(container)["WATCHKEEPER_REGISTRY_PATH"])
                assert registry.is_relative_to(mounts["models"]), name
                users.add(container["args"][0])
        assert {"serve", "monitor", "retrain"} <= users
    assert scenario("autoscaling-off-values.yaml").all("PersistentVolumeClaim") == []


def test_monitor_runs_exactly_once(default: Rendered) -> None:
    monitor = default.get("Deployment", "-monitor")

    assert monitor["spec"]["replicas"] == 1
    assert monitor["spec"]["strategy"]["type"] == "Recreate"


def test_scheduled_retraining_is_a_cronjob_running_one_job(scenario: Any) -> None:
    cronjob = scenario("operator-values.yaml").get("CronJob", "-retrain")

    assert cronjob["spec"]["concurrencyPolicy"] == "Forbid"
    container = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]
    args = build_parser().parse_args(container["args"])
    assert args.command == "retrain" and args.mode is None and args.reason


# -- Prometheus Operator and Grafana ----------------------------------------------


def _rule_groups() -> list[dict[str, Any]]:
    groups = []
    for path in sorted((REPO / "prometheus" / "rules").glob("*.yml")):
        groups += yaml.safe_load(path.read_text())["groups"]
    return groups


def test_operator_objects_are_off_by_default(default: Rendered) -> None:
    assert default.all("ServiceMonitor") == [] and default.all("PrometheusRule") == []


def test_prometheus_rule_carries_the_project_rules_and_passes_promtool(
    scenario: Any, tmp_path: Path
) -> None:
    rule = scenario("operator-values.yaml").get("PrometheusRule", "")
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    groups = rule["spec"]["groups"]

    assert sorted(groups, key=lambda g: g["name"]) == sorted(
        _rule_groups(), key=lambda g: g["name"]
    )
    extracted = tmp_path / "rules.yml"
    extracted.write_text(yaml.safe_dump({"groups": groups}))
    promtool = binary("promtool", "prometheus")
    result = subprocess.run(
        [promtool, "check", "rules", str(extracted)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_service_monitor_scrapes_each_component_under_its_job_name(scenario: Any) -> None:
    rendered = scenario("operator-values.yaml")
    monitor = rendered.get("ServiceMonitor", "")
    spec = monitor["spec"]
    local = yaml.safe_load((REPO / "prometheus" / "prometheus.yml").read_text())
    jobs = {job["job_name"] for job in local["scrape_configs"]}

    selected = {}
    for service in rendered.all("Service"):
        labels = service["metadata"]["labels"]
        matches = spec["selector"]["matchLabels"].items() <= labels.items()
        if matches and all(e["key"] in labels for e in spec["selector"]["matchExpressions"]):
            selected[labels[spec["jobLabel"]]] = service
    assert set(selected) == jobs
    (endpoint,) = spec["endpoints"]
    assert endpoint["path"] == "/metrics"
    for service in selected.values():
        assert endpoint["port"] in {p["name"] for p in service["spec"]["ports"]}
    assert spec["namespaceSelector"]["matchNames"] == ["ml"]


def test_dashboards_config_map_carries_the_generated_dashboards(default: Rendered) -> None:
    config_map = default.get("ConfigMap", "-dashboards")
    generated = {p.name: p.read_text() for p in (REPO / "grafana" / "dashboards").glob("*.json")}

    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert config_map["metadata"]["annotations"]["grafana_folder"] == "Watchkeeper"
    assert {k: v.strip() for k, v in config_map["data"].items()} == {
        k: v.strip() for k, v in generated.items()
    }


def test_datasource_config_map_gives_the_dashboards_their_data_source(scenario: Any) -> None:
    config_map = scenario("operator-values.yaml").get("ConfigMap", "-datasource")
    (text,) = config_map["data"].values()
    (source,) = yaml.safe_load(text)["datasources"]
    dashboard = json.loads((REPO / "grafana" / "dashboards" / "serving.json").read_text())
    (variable,) = [v for v in dashboard["templating"]["list"] if v["type"] == "datasource"]

    assert config_map["metadata"]["labels"]["grafana_datasource"] == "1"
    assert source["url"] == "http://prometheus-operated.monitoring.svc:9090"
    # kube-prometheus-stack's Grafana has a default data source already, and Grafana
    # refuses a second one; the dashboards name this one by uid.
    assert source["isDefault"] is False
    assert variable["current"]["value"] == source["uid"]  # the dashboards' default source


def test_notes_name_the_alertmanager_webhook_target(default: Rendered) -> None:
    assert "http://wk-watchkeeper-serving.ml.svc:8000/alerts" in default.notes
    assert "no admin token is set" in default.notes


# -- the chart's copies stay equal to their sources --------------------------------


@pytest.mark.parametrize(
    ("copy", "source"),
    [
        ("files/grafana/dashboards", "grafana/dashboards"),
        ("files/grafana/datasources", "grafana/provisioning/datasources"),
        ("files/prometheus/rules", "prometheus/rules"),
    ],
)
def test_chart_files_equal_their_sources(copy: str, source: str) -> None:
    copies = {p.name: p.read_bytes() for p in (CHART / copy).iterdir()}
    sources = {p.name: p.read_bytes() for p in (REPO / source).iterdir() if p.is_file()}

    assert copies == sources, "run scripts/sync-chart-files"


def test_chart_files_copies_what_make_mixin_built_whatever_the_shell_s_settings(
    tmp_path: Path,
) -> None:
    """`make chart-files` rebuilt the dashboards and `built-settings.yaml` from the
    settings of the shell it ran in: run without those `make mixin` had, it reset the
    pods' thresholds to the defaults while the copied rules kept the built ones."""
    tree = tmp_path / "repo"
    for part in ("scripts", "helm", "grafana", "prometheus"):
        shutil.copytree(REPO / part, tree / part)
    shell = {
        **{k: v for k, v in os.environ.items() if not k.startswith("WATCHKEEPER_")},
        "WATCHKEEPER_TRIGGER_OOD_FRACTION": "0.2",
        "WATCHKEEPER_METRICS_NAMESPACE": "ml",
        "VENV": str(Path(sys.executable).parent.parent),
    }

    subprocess.run([tree / "scripts" / "sync-chart-files"], env=shell, check=True)

    chart = tree / "helm" / "watchkeeper"
    assert (chart / BUILT_SETTINGS_FILE).read_text() == built_settings(Settings())
    for copy in ("files/grafana/dashboards", "files/prometheus/rules"):
        copies = {p.name: p.read_bytes() for p in (chart / copy).iterdir()}
        assert copies == {p.name: p.read_bytes() for p in (CHART / copy).iterdir()}, copy


def test_values_schema_is_generated_from_the_settings() -> None:
    assert (CHART / "values.schema.json").read_text() == render_schema(), (
        "run scripts/sync-chart-files"
    )


@pytest.mark.integration
@pytest.mark.postgres
def test_rendered_pods_start_and_pass_their_probes(
    scenario: Any, postgres_server: PostgresServer, tmp_path: Path
) -> None:
    """A trial release without a cluster: the migration init containers, the training
    Job and the three workloads' containers (serving's StatefulSet, the monitor's and
    the worker's Deployments) run with their rendered args and environment against a
    real PostgreSQL, in Helm's order, until every probe of theirs answers 200. Secrets
    come from the rendered Secrets; only what the cluster provides is replaced: the
    database's address, the volumes' folder and free ports."""
    rendered = scenario("bundled-postgresql-values.yaml")
    database_url = postgres_server.create_database()
    root = tmp_path / "pod"
    ports: dict[str, int] = {}

    secrets = {s["metadata"]["name"]: s["stringData"] for s in rendered.all("Secret")}

    def environment(container: dict[str, Any]) -> dict[str, str]:
        env = {}
        for name, value in _env(container).items():
            if isinstance(value, dict):  # from one of the release's Secrets
                value = secrets[value["secretKeyRef"]["name"]][value["secretKeyRef"]["key"]]
            if name == "WATCHKEEPER_DATABASE_URL":
                value = database_url  # the bundled database's Service, here on loopback
            elif name.endswith("_HOST"):
                value = "127.0.0.1"  # the pod's own interfaces, here this host's
            elif name.endswith("_PORT"):
                value = str(ports.setdefault(value, free_port()))
            assert isinstance(value, str), (name, value)
            env[name] = value.replace("/var/lib/watchkeeper", str(root))
        return env

    def run(container: dict[str, Any]) -> None:
        result = subprocess.run(
            [sys.executable, "-m", "watchkeeper_cli", *container["args"]],
            env={**os.environ, **environment(container)},
            capture_output=True,
            text=True,
            timeout=180,
        )
        assert result.returncode == 0, (container["name"], result.stdout, result.stderr)

    # Before each application container: its pod's init container migrates.
    for workload in rendered.workloads():
        (init,) = workload["spec"]["template"]["spec"]["initContainers"]
        run(init)
    run(rendered.get("Job", "-train-1")["spec"]["template"]["spec"]["containers"][0])

    processes = []
    try:
        for workload in rendered.workloads():
            (container,) = workload["spec"]["template"]["spec"]["containers"]
            env = environment(container)
            port = next(int(v) for k, v in env.items() if k.endswith("_PORT"))
            process = Process(
                container["args"],
                env,
                tmp_path / f"{container['name']}.log",
                f"http://127.0.0.1:{port}",
            )
            processes.append(process)
            for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
                if probe in container:
                    process.wait_ready(container[probe]["httpGet"]["path"], timeout=90)
            pools = process.get("/healthz").json()["thread_pools"]
            assert set(pools.values()) == {1}, (container["name"], pools)
        assert len(processes) == 3
    finally:
        for process in processes:
            process.kill()
