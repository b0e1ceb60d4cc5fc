"""The deployment kit agrees with the code: compose, Prometheus, Grafana, Kubernetes, plans.

Pure file parsing: every name a file points at (service, port, setting, metric,
endpoint, runbook section, topic) is resolved against the code or the other files.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import shlex
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from pydantic import BaseModel

from controller.adapters.http import HttpServer
from controller.adapters.http.health import HealthServer
from controller.core.rollouts.plan import load_plan
from controller.daemon.metrics import Metrics
from controller.settings import HttpSettings, Settings, TopicSettings, load_settings

ROOT = Path(__file__).resolve().parents[3]
OPS = ROOT / "ops"
K8S = OPS / "k8s"
CONVENTIONAL = {"KAFKA_BOOTSTRAP_SERVERS", "REDIS_URL", "LLM_BASE_URL"}


# -- helpers ------------------------------------------------------------------------------


def _yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def _services() -> dict[str, Any]:
    services: dict[str, Any] = _yaml(ROOT / "docker-compose.yml")["services"]
    return services


def _env(service: dict[str, Any]) -> dict[str, str | None]:
    raw = service.get("environment", {})
    if isinstance(raw, list):
        raw = dict(item.split("=", 1) if "=" in item else (item, None) for item in raw)
    return {k: None if v is None else str(v) for k, v in raw.items()}


def _container_ports(service: dict[str, Any]) -> set[int]:
    ports = {int(p) for p in service.get("expose", [])}
    for entry in service.get("ports", []):
        target = entry["target"] if isinstance(entry, dict) else str(entry).rsplit(":", 1)[-1]
        ports.add(int(str(target).split("/")[0]))
    return ports


def _mounts(service: dict[str, Any]) -> dict[str, str]:
    """Bind mounts of repository files: source (relative to the repo) -> container path."""
    out = {}
    for volume in service.get("volumes", []):
        source, target, *_ = volume.split(":")
        if source.startswith("./"):
            out[source[2:]] = target
    return out


def _setting_for(env_name: str) -> str | None:
    """The dotted setting an ``RC_<GROUP>__<FIELD>`` variable sets, or None if it sets none."""
    if not env_name.startswith("RC_"):
        return None
    group, _, field = env_name[3:].lower().partition("__")
    top = Settings.model_fields.get(group)
    if top is None:
        return None
    model = top.annotation
    if not (isinstance(model, type) and issubclass(model, BaseModel)):
        return group if not field else None
    return f"{group}.{field}" if field in model.model_fields else None


def _groups() -> Iterator[tuple[str, type[BaseModel] | None]]:
    for name, info in Settings.model_fields.items():
        model = info.annotation
        yield name, model if isinstance(model, type) and issubclass(model, BaseModel) else None


def _served_paths() -> set[str]:
    async def nothing() -> Any:
        return None

    server = HttpServer(
        host="127.0.0.1",
        port=0,
        readiness=nothing,
        flags=nothing,
        metrics=bytes,
        metrics_content_type="text/plain",
    )
    resources = server._runner.app.router.resources()
    return {resource.canonical for resource in resources}


def _health_paths() -> set[str]:
    async def nothing() -> Any:
        return None

    server = HealthServer(
        host="127.0.0.1",
        port=0,
        readiness=nothing,
        metrics=bytes,
        metrics_content_type="text/plain",
    )
    return {resource.canonical for resource in server._runner.app.router.resources()}


def _clean_env(monkeypatch: pytest.MonkeyPatch, env: dict[str, str | None]) -> None:
    """Exactly ``env`` over the files: nothing from the shell that runs the tests."""
    for name in [*CONVENTIONAL, *(n for n in os.environ if n.startswith("RC_"))]:
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        if value is not None:
            monkeypatch.setenv(name, value)


def _compose_settings(monkeypatch: pytest.MonkeyPatch) -> Settings:
    """The controller's settings in the compose stack: its config file and environment."""
    _clean_env(monkeypatch, _env(_services()["controller"]))
    return load_settings(ROOT / "ops" / "controller.yaml")


def _settings_from_text(text: str, tmp_path: Path) -> Settings:
    path = tmp_path / "controller.yaml"
    path.write_text(text, encoding="utf-8")
    return load_settings(path)


def _exported_metric_names() -> set[str]:
    suffixes = {"counter": ["_total", "_created"], "histogram": ["_bucket", "_sum", "_count"]}
    names: set[str] = set()
    for family in Metrics().registry.collect():
        names.update(family.name + s for s in suffixes.get(family.type, [""]))
        if family.type == "histogram":
            names.add(family.name + "_created")
    return names


def _metric_refs(text: str) -> set[str]:
    return set(re.findall(r"\brollout_[a-z0-9_]+", text))


def _dashboard() -> dict[str, Any]:
    path = OPS / "grafana" / "dashboards" / "rollout-controller.json"
    dashboard: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return dashboard


def _dashboard_queries() -> list[str]:
    dashboard = _dashboard()
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    variables = dashboard["templating"]["list"]
    return exprs + [v["definition"] for v in variables if v["type"] == "query"]


def _alert_rules() -> list[dict[str, Any]]:
    groups = _yaml(OPS / "prometheus" / "alerts.yml")["groups"]
    return [rule for group in groups for rule in group["rules"]]


def _anchors(markdown: str) -> set[str]:
    """GitHub's anchors for a Markdown text: one per heading, plus explicit ids."""
    slugs = set(re.findall(r'<a id="([^"]+)"', markdown))
    for heading in re.findall(r"^#{1,6}\s+(.+?)\s*$", markdown, re.MULTILINE):
        slugs.add(_slug(heading))
    return slugs


def _slug(heading: str) -> str:
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def _k8s_docs() -> dict[str, dict[str, Any]]:
    """Every manifest under ops/k8s by kind (one of each)."""
    docs = {}
    for path in sorted(K8S.glob("*.yaml")):
        if path.name != "kustomization.yaml":
            for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")):
                docs[doc["kind"]] = doc
    return docs


def _bytes(quantity: str) -> int:
    units = {"Ki": 1024, "Mi": 1024**2, "Gi": 1024**3, "M": 10**6, "G": 10**9}
    number, unit = re.fullmatch(r"(\d+)([A-Za-z]*)", quantity).groups()  # type: ignore[union-attr]
    return int(number) * units.get(unit, 1)


def _seconds(duration: str) -> float:
    number, unit = re.fullmatch(r"(\d+)(s|m)", duration).groups()  # type: ignore[union-attr]
    return float(number) * (60 if unit == "m" else 1)


# -- the helpers themselves ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("env_name", "setting"),
    [
        ("RC_INGEST__MAX_BATCH_RECORDS", "ingest.max_batch_records"),
        ("RC_HTTP__WEBHOOK_TOKEN", "http.webhook_token"),
        ("RC_SHUTDOWN_GRACE_SECONDS", "shutdown_grace_seconds"),
        ("RC_INGEST__NO_SUCH_FIELD", None),
        ("RC_NO_SUCH_GROUP__PORT", None),
        ("RC_SHUTDOWN_GRACE_SECONDS__X", None),
        ("INGEST__MAX_BATCH_RECORDS", None),
    ],
)
def test_env_names_resolve_to_settings(env_name: str, setting: str | None) -> None:
    assert _setting_for(env_name) == setting


@pytest.mark.parametrize(
    ("heading", "slug"),
    [("RolloutConsumerLagHigh", "rolloutconsumerlaghigh"), ("Restart safely", "restart-safely")],
)
def test_runbook_anchor_slugs(heading: str, slug: str) -> None:
    assert _slug(heading) == slug


# -- docker-compose -----------------------------------------------------------------------


def _endpoint(name: str, value: str) -> tuple[str, int]:
    if name == "KAFKA_BOOTSTRAP_SERVERS":
        host, port = value.split(",", maxsplit=1)[0].rsplit(":", 1)
        return host, int(port)
    url = urlsplit(value)
    assert url.hostname is not None, value
    return url.hostname, url.port or {"redis": 6379, "http": 80}[url.scheme]


@pytest.mark.parametrize("variable", sorted(CONVENTIONAL))
def test_controller_endpoints_are_compose_services(variable: str) -> None:
    services = _services()
    value = _env(services["controller"])[variable]
    assert value, f"{variable} is not set on the controller"
    host, port = _endpoint(variable, value)
    assert host in services, f"{variable} points at {host}, not a compose service"
    assert port in _container_ports(services[host]), f"{host} does not expose {port}"


def test_every_controller_variable_is_a_setting() -> None:
    env = _env(_services()["controller"])
    assert env
    unknown = [name for name in env if name not in CONVENTIONAL and _setting_for(name) is None]
    assert unknown == []


def test_compose_controller_settings_load_and_name_the_localai_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    services = _services()
    mounts = _mounts(services["controller"])
    assert mounts["ops/controller.yaml"] == "/etc/rollout-controller/controller.yaml"
    settings = _compose_settings(monkeypatch)
    model_files = [src for src in _mounts(services["localai"]) if src.startswith("ops/localai/")]
    assert len(model_files) == 1
    model = _yaml(ROOT / model_files[0])
    assert settings.llm.model == model["name"]
    assert settings.llm.mode != "off"
    assert settings.llm.response_format == "json_schema"
    assert urlsplit(settings.llm.base_url).path == "/v1"
    assert model["parameters"]["model"] in {f["filename"] for f in model["download_files"]}
    assert settings.kafka.create_topics is False  # kafka-init owns the topics


def _created_topics(command: str) -> dict[str, str]:
    """`create <topic> <partitions> [options]` lines of kafka-init: topic -> options."""
    lines = re.findall(r"^\s*create (\S+ \d+.*)$", command, re.MULTILINE)
    return {shlex.split(line)[0]: " ".join(shlex.split(line)[2:]) for line in lines}


def test_kafka_init_creates_exactly_the_controller_topics_before_it_starts() -> None:
    services = _services()
    topics = _created_topics("\n".join(services["kafka-init"]["command"]))
    assert set(topics) == set(TopicSettings().model_dump().values())
    compacted = {topic for topic, options in topics.items() if "cleanup.policy=compact" in options}
    assert compacted == {TopicSettings().flag_state, TopicSettings().segments}
    waits = services["controller"]["depends_on"]
    assert waits["kafka-init"]["condition"] == "service_completed_successfully"
    assert waits["redis"]["condition"] == "service_healthy"
    assert services["kafka-init"]["depends_on"]["kafka"]["condition"] == "service_healthy"


@pytest.mark.parametrize("name", sorted(_services()))
def test_every_long_running_service_has_a_health_check(name: str) -> None:
    service = _services()[name]
    if service.get("restart") == "no":
        return  # a one-shot job: it exits, nothing to probe
    assert service["healthcheck"]["test"], name


def test_redis_persists_with_aof() -> None:
    redis = _services()["redis"]
    command = " ".join(redis["command"])
    assert "--appendonly yes" in command
    assert any(volume.endswith(":/data") for volume in redis["volumes"])


def test_compose_stop_grace_covers_the_drain(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = _compose_settings(monkeypatch)
    grace = _seconds(_services()["controller"]["stop_grace_period"])
    assert grace > settings.shutdown_grace_seconds


def _health_checks() -> Iterator[tuple[str, str, bool]]:
    """Where, the health check's text, and whether it runs with the compose settings."""
    test = _services()["controller"]["healthcheck"]["test"]
    yield "compose", " ".join(test), True
    yield "Dockerfile", (ROOT / "Dockerfile").read_text(encoding="utf-8"), False


@pytest.mark.parametrize(
    ("where", "text", "in_compose"), [pytest.param(*h, id=h[0]) for h in _health_checks()]
)
def test_health_checks_hit_served_endpoints(
    where: str, text: str, in_compose: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    http = _compose_settings(monkeypatch).http if in_compose else HttpSettings()
    urls = re.findall(r"http://[^'\"\s)]+", text)
    assert urls, f"no URL in the {where} health check"
    for url in urls:
        parts = urlsplit(url)
        # The health listener: a flood on the main port cannot fail the check
        assert parts.path in _health_paths(), url
        assert parts.port == http.health_port, url


# -- Prometheus, Grafana, alerts ------------------------------------------------------------


def test_prometheus_scrapes_the_controller_and_loads_the_mounted_rules(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    config = _yaml(OPS / "prometheus" / "prometheus.yml")
    job = next(j for j in config["scrape_configs"] if j["job_name"] == "rollout-controller")
    targets = [t for group in job["static_configs"] for t in group["targets"]]
    assert targets == [f"controller:{_compose_settings(monkeypatch).http.port}"]
    assert job.get("metrics_path", "/metrics") in _served_paths()
    mounts = _mounts(_services()["prometheus"])
    config_dir = Path(mounts["ops/prometheus/prometheus.yml"]).parent
    assert (
        "--config.file=" + mounts["ops/prometheus/prometheus.yml"]
        in _services()["prometheus"]["command"]
    )
    rules = {str(config_dir / rule) for rule in config["rule_files"]}
    assert rules == {mounts["ops/prometheus/alerts.yml"]}


def _metric_sources() -> Iterator[tuple[str, set[str]]]:
    yield "dashboard", set().union(*map(_metric_refs, _dashboard_queries()))
    yield "alerts", set().union(*(_metric_refs(r["expr"]) for r in _alert_rules()))
    tests = _yaml(OPS / "prometheus" / "alerts.test.yml")["tests"]
    series = [s["series"] for case in tests for s in case["input_series"]]
    yield "alert tests", set().union(*map(_metric_refs, series))


@pytest.mark.parametrize(("where", "names"), [pytest.param(*s, id=s[0]) for s in _metric_sources()])
def test_referenced_metrics_exist(where: str, names: set[str]) -> None:
    assert names, f"the {where} reference no metric"
    assert names - _exported_metric_names() == set(), where


def test_dashboard_shows_every_metric_from_the_chosen_data_source() -> None:
    families = {family.name for family in Metrics().registry.collect()}
    text = "\n".join(_dashboard_queries())
    assert {name for name in families if name not in text} == set()
    dashboard = _dashboard()
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["query"] == "prometheus"
    panels = [p for p in dashboard["panels"] if p["type"] != "row"]
    assert {p["datasource"]["uid"] for p in panels} == {"${datasource}"}
    assert len({p["id"] for p in dashboard["panels"]}) == len(dashboard["panels"])


def test_grafana_provisioning_matches_the_compose_mounts() -> None:
    provisioning = OPS / "grafana" / "provisioning"
    source = _yaml(provisioning / "datasources" / "prometheus.yaml")["datasources"][0]
    url = urlsplit(source["url"])
    assert source["type"] == "prometheus"
    assert url.hostname in _services()
    assert url.port in _container_ports(_services()[str(url.hostname)])
    provider = _yaml(provisioning / "dashboards" / "rollout-controller.yaml")["providers"][0]
    mounts = _mounts(_services()["grafana"])
    assert mounts["ops/grafana/dashboards"] == provider["options"]["path"]


@pytest.mark.parametrize("rule", _alert_rules(), ids=lambda rule: rule["alert"])
def test_every_alert_explains_itself_and_links_its_runbook_section(rule: dict[str, Any]) -> None:
    annotations = rule["annotations"]
    assert annotations["summary"]
    assert annotations["description"]
    assert rule["labels"]["severity"] in {"critical", "warning"}
    url = urlsplit(annotations["runbook_url"])
    runbook = ROOT / url.path
    assert runbook.is_file(), url.path
    assert url.fragment in _anchors(runbook.read_text(encoding="utf-8"))


def test_every_alert_has_a_promtool_test_case() -> None:
    tests = _yaml(OPS / "prometheus" / "alerts.test.yml")["tests"]
    tested = {case["alertname"] for test in tests for case in test["alert_rule_test"]}
    assert {rule["alert"] for rule in _alert_rules()} == tested


# -- Kubernetes ---------------------------------------------------------------------------


def test_kustomization_lists_every_manifest_and_each_parses() -> None:
    listed = _yaml(K8S / "kustomization.yaml")["resources"]
    files = sorted(p.name for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml")
    assert sorted(listed) == files
    for doc in _k8s_docs().values():
        assert doc["apiVersion"]
        assert doc["metadata"]["name"]


def test_configmap_settings_load(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _clean_env(monkeypatch, {})
    config = _k8s_docs()["ConfigMap"]["data"]["controller.yaml"]
    settings = _settings_from_text(config, tmp_path)
    assert settings.kafka.replication_factor >= 3
    assert settings.log.format == "json"


def _container() -> dict[str, Any]:
    container: dict[str, Any] = _k8s_docs()["Deployment"]["spec"]["template"]["spec"]["containers"][
        0
    ]
    return container


@pytest.mark.parametrize(
    ("probe", "path"), [("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")]
)
def test_probes_hit_their_endpoints_on_the_configured_port(
    probe: str, path: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _clean_env(monkeypatch, {})
    settings = _settings_from_text(_k8s_docs()["ConfigMap"]["data"]["controller.yaml"], tmp_path)
    container = _container()
    get = container[probe]["httpGet"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    port = ports.get(get["port"], get["port"])
    assert get["path"] == path
    assert path in _health_paths()
    # The health listener: a flood on the main port cannot fail a probe
    assert port == settings.http.health_port


def test_the_image_exposes_both_ports() -> None:
    exposed = re.findall(r"^EXPOSE (.+)$", (ROOT / "Dockerfile").read_text(), re.MULTILINE)
    ports = {int(p) for line in exposed for p in line.split()}
    assert ports == {HttpSettings().port, HttpSettings().health_port}


def test_deployment_wires_config_secret_and_drain(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    docs = _k8s_docs()
    _clean_env(monkeypatch, {})
    settings = _settings_from_text(docs["ConfigMap"]["data"]["controller.yaml"], tmp_path)
    pod = docs["Deployment"]["spec"]["template"]["spec"]
    container = _container()
    config_path = Path(container["args"][container["args"].index("--config") + 1])
    mount = next(m for m in container["volumeMounts"] if m["mountPath"] == str(config_path.parent))
    volume = next(v for v in pod["volumes"] if v["name"] == mount["name"])
    assert volume["configMap"]["name"] == docs["ConfigMap"]["metadata"]["name"]
    assert config_path.name in docs["ConfigMap"]["data"]
    secret_refs = [e["secretRef"]["name"] for e in container["envFrom"]]
    assert secret_refs == [docs["Secret"]["metadata"]["name"]]
    assert pod["terminationGracePeriodSeconds"] > settings.shutdown_grace_seconds


@pytest.mark.parametrize("key", sorted(_k8s_docs()["Secret"]["stringData"]))
def test_secret_keys_are_secret_settings_with_marked_placeholders(key: str) -> None:
    value = _k8s_docs()["Secret"]["stringData"][key]
    assert _setting_for(key) is not None, key
    assert "REPLACE-ME" in value


def _measured_peak_rss() -> int:
    """The highest peak RSS in the figures of docs/benchmarks.md, in bytes.

    The figures are measured by the benches (bench/ingest.py) and written down in
    docs/benchmarks.md, not here: this test checks the manifests against whatever that
    page reports, in every table with a "peak RSS" column. The benches print MiB
    (labelled MB), rounded: one more covers the rounding.
    """
    lines = (ROOT / "docs" / "benchmarks.md").read_text(encoding="utf-8").splitlines()
    peaks: list[float] = []
    for header, line in enumerate(lines):
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if not line.startswith("|") or "peak RSS" not in cells:
            continue
        column = cells.index("peak RSS")
        rows = itertools.takewhile(lambda row: row.startswith("|"), lines[header + 2 :])
        peaks += [
            float(row.strip("|").split("|")[column].strip().removesuffix(" MB")) for row in rows
        ]
    assert len(peaks) >= 4, "docs/benchmarks.md has lost its tables of peak RSS"
    return int((max(peaks) + 1) * 1024**2)


def test_resources_fit_the_measured_memory() -> None:
    peak = _measured_peak_rss()
    resources = _container()["resources"]
    request, limit = (_bytes(resources[k]["memory"]) for k in ("requests", "limits"))
    assert peak < request <= limit
    assert 2 * peak <= limit <= 1024**3


def test_service_monitor_and_budget_select_the_controller_pods() -> None:
    docs = _k8s_docs()
    pod_labels = docs["Deployment"]["spec"]["template"]["metadata"]["labels"]
    service = docs["Service"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert (
        docs["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    )
    monitor = docs["ServiceMonitor"]["spec"]
    assert monitor["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    port_names = {p["name"] for p in service["spec"]["ports"]}
    assert {e["port"] for e in monitor["endpoints"]} <= port_names
    assert {e["path"] for e in monitor["endpoints"]} <= _served_paths()
    container_ports = {p["name"] for p in _container()["ports"]}
    assert {p["targetPort"] for p in service["spec"]["ports"]} <= container_ports


# -- ops/controller.yaml and plans ------------------------------------------------------------


def _documented_keys(text: str) -> dict[str, set[str]]:
    """Keys of each top-level section, set or shown in a comment (``# key: ...``)."""
    keys: dict[str, set[str]] = {"": set()}
    section = ""
    for line in text.splitlines():
        if top := re.match(r"^(\w+):", line):
            section = top.group(1)
            keys[""].add(section)
            keys.setdefault(section, set())
        elif key := re.match(r"^\s+#?\s*(\w+):", line):
            keys[section].add(key.group(1))
    return keys


def test_example_config_documents_every_setting() -> None:
    documented = _documented_keys((OPS / "controller.yaml").read_text(encoding="utf-8"))
    missing = []
    for name, model in _groups():
        assert name in documented[""], name
        fields = model.model_fields if model else {}
        missing += [f"{name}.{f}" for f in fields if f not in documented[name]]
    assert missing == []


@pytest.mark.parametrize("path", sorted(OPS.glob("plans/*.yaml")), ids=lambda p: p.name)
def test_every_plan_parses(path: Path) -> None:
    plan = load_plan(path.read_text(encoding="utf-8"), source=str(path))
    assert plan.name == path.stem
    assert plan.stages[-1].percent == 100
