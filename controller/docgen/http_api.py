"""The HTTP API page: each operation of ``schemas/openapi.json``, its credentials and answers."""

from __future__ import annotations

import json
from pathlib import Path

from controller.contracts.openapi import Schema
from controller.docgen.markdown import code, page, table

INTRO = (
    "Every route of the daemon's HTTP API, from `schemas/openapi.json` (OpenAPI 3.1, exported "
    "from the models by `rollout-controller schemas export`; give it to a client generator). "
    "A body names a schema of the document's `components`; the Messages page shows the read "
    "API's. OFREP (`/ofrep/v1/*`) and OTLP/HTTP (`/v1/traces`, `/v1/logs`) are served on the "
    "same port and follow their own specifications."
)
METHODS = ("get", "post", "options")


def http_api_page(document: Path) -> str:
    spec: Schema = json.loads(document.read_text(encoding="utf-8"))
    body = [" ".join(spec["info"]["description"].split("\n\n")[0].split()), ""]
    for path, item in spec["paths"].items():
        for method in (m for m in METHODS if m in item):
            body += _operation(method, path, item[method])
    return page("HTTP API", INTRO, body)


def _operation(method: str, path: str, operation: Schema) -> list[str]:
    lines = [f"## {method.upper()} {code(path)}", "", f"{operation['summary']}.", ""]
    lines += [" ".join(operation["description"].split()), ""]
    lines += [f"Credentials: {_credentials(operation.get('security', []))}.", ""]
    rows = [
        [status, " ".join(answer["description"].split()), _body(answer)]
        for status, answer in operation["responses"].items()
    ]
    return [*lines, *table(("Status", "When", "Body"), rows), ""]


def _credentials(security: list[dict[str, list[str]]]) -> str:
    named = [
        " ".join([code(name), *(f"(scope {code(s)})" for s in scopes)]) if name else "none"
        for need in security
        for name, scopes in (need.items() or [("", [])])
    ]
    return ", or ".join(named) or "none"


def _body(answer: Schema) -> str:
    shown = []
    for media, content in answer.get("content", {}).items():
        schema = content.get("schema", {})
        refs = [schema] if "$ref" in schema else schema.get("oneOf", [])
        names = [r["$ref"].rsplit("/", 1)[-1] for r in refs if "$ref" in r]
        shown.append(" or ".join(code(n) for n in names) or code(media))
    return ", ".join(shown)
