"""The deployment kit passes the tools its users will run on it: Compose, promtool, kubectl.

``tests/unit/house/test_deploy_files.py`` cross-checks the files against the code; these
tests hand the same files to the real tools, so a file that parses as YAML but
that Docker Compose, Prometheus or kustomize would refuse fails here.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[3]
PROMETHEUS = ROOT / "ops" / "prometheus"
MANIFEST_KINDS = (
    *("Namespace", "ConfigMap", "Secret", "Deployment", "Service"),
    *("PodDisruptionBudget", "ServiceMonitor"),
)


def _run(command: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, timeout=120, check=False
    )


def test_compose_accepts_the_stack_as_written(compose_cli: list[str]) -> None:
    # Given docker-compose.yml, with none of the operator's secrets exported
    # When Docker Compose resolves it (no engine needed for `config`)
    result = _run([*compose_cli, "--file", "docker-compose.yml", "config", "--format", "json"])
    # Then it is valid, says nothing about it, and keeps every service we wrote
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == "", result.stderr
    resolved: dict[str, Any] = json.loads(result.stdout)
    written = yaml.safe_load((ROOT / "docker-compose.yml").read_text(encoding="utf-8"))
    profiled = {n for n, svc in written["services"].items() if svc.get("profiles")}
    assert profiled == {"unleash", "unleash-db"}
    assert set(resolved["services"]) == set(written["services"]) - profiled
    controller = resolved["services"]["controller"]
    assert controller["build"]["dockerfile"] == "Dockerfile"
    assert Path(controller["build"]["context"]) == ROOT
    assert set(controller["depends_on"]) == {"kafka-init", "redis"}


def test_compose_unleash_profile_adds_unleash_on_its_own_postgres(compose_cli: list[str]) -> None:
    # When Docker Compose resolves the stack with the optional Unleash profile
    command = [*compose_cli, "--file", "docker-compose.yml", "--profile", "unleash", "config"]
    result = _run([*command, "--format", "json"])
    # Then Unleash and its database join the stack, Unleash waiting for a healthy database
    assert result.returncode == 0, result.stderr
    services = json.loads(result.stdout)["services"]
    assert {"unleash", "unleash-db", "controller"} <= set(services)
    assert services["unleash"]["depends_on"]["unleash-db"]["condition"] == "service_healthy"
    assert "unleash-db:5432" in services["unleash"]["environment"]["DATABASE_URL"]


@pytest.mark.parametrize(
    "check",
    [
        pytest.param(["check", "config", "prometheus.yml"], id="scrape-config"),
        pytest.param(["check", "rules", "alerts.yml"], id="alert-rules"),
        pytest.param(["test", "rules", "alerts.test.yml"], id="alert-rule-tests"),
    ],
)
def test_promtool_accepts_the_prometheus_files(promtool: str, check: list[str]) -> None:
    *verb, name = check
    result = _run([promtool, *verb, str(PROMETHEUS / name)])
    assert result.returncode == 0, f"{result.stdout}\n{result.stderr}"
    assert "SUCCESS" in result.stdout


def test_kustomize_renders_one_namespace_whose_references_resolve(kubectl: str) -> None:
    # Given ops/k8s as an operator applies it (`kubectl apply -k ops/k8s`)
    result = _run([kubectl, "kustomize", "ops/k8s"])
    assert result.returncode == 0, result.stderr
    objects = [doc for doc in yaml.safe_load_all(result.stdout) if doc]
    by_kind = {doc["kind"]: doc for doc in objects}
    # Then it renders every object once, all in the controller's namespace
    assert sorted(doc["kind"] for doc in objects) == sorted(MANIFEST_KINDS)
    namespace = by_kind["Namespace"]["metadata"]["name"]
    assert {doc["metadata"].get("namespace") for doc in objects if doc["kind"] != "Namespace"} == {
        namespace
    }
    # ...and what the Deployment mounts and reads is what was rendered
    pod = by_kind["Deployment"]["spec"]["template"]["spec"]
    config_maps = {v["configMap"]["name"] for v in pod["volumes"] if "configMap" in v}
    secrets = {
        source["secretRef"]["name"]
        for container in pod["containers"]
        for source in container.get("envFrom", [])
        if "secretRef" in source
    }
    assert config_maps == {by_kind["ConfigMap"]["metadata"]["name"]}
    assert secrets == {by_kind["Secret"]["metadata"]["name"]}
    # ...and the Service, budget and monitor select the Deployment's pods
    labels = by_kind["Deployment"]["spec"]["template"]["metadata"]["labels"]
    for kind in ("Service", "PodDisruptionBudget", "ServiceMonitor"):
        spec = by_kind[kind]["spec"]
        selector = spec["selector"].get("matchLabels", spec["selector"])
        assert selector.items() <= labels.items(), kind
