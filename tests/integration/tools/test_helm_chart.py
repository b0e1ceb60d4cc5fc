"""The Helm chart, rendered by a real ``helm`` and checked by ``kubeconform`` against
Kubernetes' own schemas (``make helm-tools``; the schemas from
:mod:`tests.support.kubernetes_schemas`).

Each rendering is checked three ways: kubeconform in strict mode (every field known to
Kubernetes, every type right), the controller's own settings model on the rendered
``controller.yaml``, and the wiring between the objects (probes on the health port, the
Service and the ServiceMonitor on the API port, the Secret the pods read).
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from controller.settings import load_settings
from tests.support.kubernetes_schemas import KUBERNETES_VERSION, standalone

pytestmark = [pytest.mark.integration]

ROOT = Path(__file__).resolve().parents[3]
CHART = ROOT / "ops" / "helm" / "rollout-controller"
SCHEMA_FILES = [
    "configmap-v1.json",
    "secret-v1.json",
    "service-v1.json",
    "deployment-apps-v1.json",
    "poddisruptionbudget-policy-v1.json",
]
CRDS = "ServiceMonitor"
"""Kinds of CRDs, whose schemas no Kubernetes release carries: checked field by field here."""
OPERATOR_KEYS = '{"alice": "MCowBQYDK2VwAyEAGb9ECWmEzf6FQbrBZ9w7lshQhqowtrbLDFw4rXAxZuE="}'
CUSTOM_VALUES = {
    "replicaCount": 3,
    "serviceMonitor": {"enabled": True, "labels": {"release": "prometheus"}},
    "secret": {
        "create": True,
        "values": {"RC_ENGINE__OPERATOR_KEYS": OPERATOR_KEYS, "RC_HTTP__WEBHOOK_TOKEN": "t0ken"},
    },
    "config": {"http": {"port": 9000, "health_port": 9001}, "llm": {"mode": "advisory"}},
    "image": {"digest": "sha256:" + "a" * 64},
    "resources": {"limits": {"memory": "1Gi"}},
    "nodeSelector": {"kubernetes.io/os": "linux"},
}
"""Values a team would give in a file: JSON in a secret (``--set`` would read its braces as a
list), other ports, the ServiceMonitor on."""


def _render(helm: str, *values: str) -> subprocess.CompletedProcess[str]:
    command = [helm, "template", "rc", str(CHART), "--namespace", "flags", *values]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)


def _objects(text: str) -> dict[str, dict[str, Any]]:
    return {d["kind"]: d for d in yaml.safe_load_all(text) if d}


@pytest.fixture(scope="module")
def custom(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """``helm template``'s arguments for :data:`CUSTOM_VALUES`."""
    path = tmp_path_factory.mktemp("values") / "values.yaml"
    path.write_text(yaml.safe_dump(CUSTOM_VALUES))
    return ["--values", str(path)]


@pytest.fixture(scope="module")
def schema_location(tmp_path_factory: pytest.TempPathFactory) -> str:
    return standalone(tmp_path_factory.mktemp("kubernetes-schemas"), SCHEMA_FILES)


def _conform(kubeconform: str, location: str, text: str) -> str:
    command = [kubeconform, "-strict", "-summary", "-schema-location", location]
    command += ["-kubernetes-version", KUBERNETES_VERSION, "-skip", CRDS, "-"]
    checked = subprocess.run(
        command, input=text, capture_output=True, text=True, timeout=120, check=False
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    return checked.stdout


@pytest.mark.parametrize(
    ("customized", "kinds"), [(False, 4), (True, 6)], ids=["default", "custom"]
)
def test_the_chart_renders_what_kubernetes_accepts(
    helm: list[str], schema_location: str, custom: list[str], customized: bool, kinds: int
) -> None:
    rendered = _render(helm[0], *(custom if customized else []))
    assert rendered.returncode == 0, rendered.stderr
    summary = _conform(helm[1], schema_location, rendered.stdout)
    # Every kind checked against its schema but the CRD's, none left without one
    skipped = 1 if customized else 0
    counts = f"Valid: {kinds - skipped}, Invalid: 0, Errors: 0, Skipped: {skipped}"
    assert f"{kinds} resources found parsing stdin - {counts}" in summary, summary
    assert len(_objects(rendered.stdout)) == kinds


def test_helm_lints_the_chart_strictly(helm: list[str]) -> None:
    linted = subprocess.run(
        [helm[0], "lint", "--strict", str(CHART)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert linted.returncode == 0, linted.stdout + linted.stderr


def test_kubeconform_refuses_what_kubernetes_would(helm: list[str], schema_location: str) -> None:
    # The check must be able to fail: a field Kubernetes does not know is an error.
    rendered = _render(helm[0]).stdout.replace("revisionHistoryLimit:", "revisionHistory:")
    command = [helm[1], "-strict", "-schema-location", schema_location]
    command += ["-kubernetes-version", KUBERNETES_VERSION, "-"]
    checked = subprocess.run(command, input=rendered, capture_output=True, text=True, check=False)
    assert checked.returncode != 0
    assert "revisionHistory" in checked.stdout, checked.stdout


@pytest.mark.parametrize("customized", [False, True], ids=["default", "custom"])
def test_the_settings_file_is_one_the_controller_loads(
    helm: list[str], custom: list[str], customized: bool, tmp_path: Path
) -> None:
    objects = _objects(_render(helm[0], *(custom if customized else [])).stdout)
    config = tmp_path / "controller.yaml"
    config.write_text(objects["ConfigMap"]["data"]["controller.yaml"])
    settings = load_settings(config)
    container = objects["Deployment"]["spec"]["template"]["spec"]["containers"][0]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"http": settings.http.port, "health": settings.http.health_port}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "health"}


def test_the_pods_read_the_secret_and_the_monitor_scrapes_the_api_port(
    helm: list[str], custom: list[str]
) -> None:
    objects = _objects(_render(helm[0], *custom).stdout)
    pod = objects["Deployment"]["spec"]["template"]["spec"]
    secret = objects["Secret"]
    assert pod["containers"][0]["envFrom"] == [{"secretRef": {"name": secret["metadata"]["name"]}}]
    assert secret["stringData"]["RC_ENGINE__OPERATOR_KEYS"] == OPERATOR_KEYS
    assert [p["name"] for p in objects["Service"]["spec"]["ports"]] == ["http"]
    endpoints = objects["ServiceMonitor"]["spec"]["endpoints"]
    assert [(e["port"], e["path"]) for e in endpoints] == [("http", "/metrics")]
    selector = objects["ServiceMonitor"]["spec"]["selector"]["matchLabels"]
    assert selector.items() <= objects["Service"]["metadata"]["labels"].items()


@pytest.mark.parametrize(
    ("values", "reason"),
    [
        (["--set", "secret.create=true"], "RC_ENGINE__OPERATOR_KEYS"),
        (["--set", "secret.existingSecret="], "secret.existingSecret"),
        (
            [*("--set", "secret.create=true", "--set-string"), "secret.values.password=x"],
            "'password' does not match pattern",
        ),
        (["--set", "replicaCount=two"], "/replicaCount': got string, want integer"),
        (["--set", "serviceMonitr.enabled=true"], "'serviceMonitr' not allowed"),
        (["--set", "config.http.health_port=70000"], "/config/http/health_port"),
        (["--set", "image.digest=latest"], "/image/digest"),
    ],
    ids=["no-operator-keys", "no-secret", "not-a-setting", "words", "misspelt", "port", "digest"],
)
def test_values_that_cannot_run_are_refused_with_a_reason(
    helm: list[str], values: list[str], reason: str
) -> None:
    rendered = _render(helm[0], *values)
    assert rendered.returncode != 0
    assert reason in rendered.stderr, rendered.stderr


KUSTOMIZE = ROOT / "ops" / "k8s"
SAME = ("ports", "resources", "livenessProbe", "readinessProbe", "securityContext", "args")


def test_the_kustomize_files_run_the_pod_the_charts_defaults_run(helm: list[str]) -> None:
    # ops/k8s stays for teams that deploy with kustomize; it must not drift from the chart.
    chart = _objects(_render(helm[0]).stdout)["Deployment"]["spec"]
    kept = yaml.safe_load((KUSTOMIZE / "deployment.yaml").read_text())["spec"]
    ours, theirs = chart["template"]["spec"], kept["template"]["spec"]
    for field in SAME:
        assert ours["containers"][0][field] == theirs["containers"][0][field], field
    assert ours["securityContext"] == theirs["securityContext"]
    assert ours["terminationGracePeriodSeconds"] == theirs["terminationGracePeriodSeconds"]
    assert chart["strategy"] == kept["strategy"]
    pdb = yaml.safe_load((KUSTOMIZE / "pdb.yaml").read_text())["spec"]
    assert (
        _objects(_render(helm[0]).stdout)["PodDisruptionBudget"]["spec"]["maxUnavailable"]
        == (pdb["maxUnavailable"])
    )
