"""The OpenAPI 3.1 document: the operations of :mod:`.operations` over components generated
from the models the answers are made of.

The components are the JSON Schemas pydantic makes of those models, every nested model a
component of its own (``#/components/schemas/<Model>``), so a change to a model, the read
API's evidence included, changes the document and ``schemas export --check`` notices.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, TypeAdapter
from pydantic.json_schema import models_json_schema

from controller.contracts.openapi import answers
from controller.contracts.openapi.app_operations import (
    APP_KEYS,
    COMMANDS,
    EVENTS,
    SEGMENTS,
    WEBHOOKS,
)
from controller.contracts.openapi.operations import PROBES, READS, Answer, Operation
from controller.core.common import (
    ENVIRONMENT_PATTERN,
    FLAG_KEY_PATTERN,
    MAX_FLAG_KEY,
    PLAIN_FLAG_KEY_PATTERN,
)
from controller.core.holdouts import MIN_ALPHA, HoldoutReport
from controller.core.reading import (
    MAX_PLAIN_FLAG,
    READ_API_MODELS,
    CommandCheckRequest,
    CommandChecks,
    PipelineRun,
)
from controller.core.rollouts import DEPLOY_VERDICT_MODELS
from controller.core.wire import HOLDOUT_NAME_PATTERN, SegmentName

Schema = dict[str, Any]
"""A JSON Schema, AsyncAPI or OpenAPI document as it is built: nested freely, any JSON inside."""
OPENAPI_FILE = "openapi.json"
OPENAPI_VERSION = "3.1.1"
DIALECT = "https://spec.openapis.org/oas/3.1/dialect/base"
REF = "#/components/schemas/{model}"
OPERATIONS: tuple[Operation, ...] = (
    *PROBES,
    *READS,
    *SEGMENTS,
    *EVENTS,
    *APP_KEYS,
    *COMMANDS,
    *WEBHOOKS,
)
ANSWER_MODELS: tuple[type[BaseModel], ...] = (
    answers.Refusal,
    answers.DependencyDown,
    answers.Health,
    answers.Readiness,
    answers.EventBatch,
    answers.IntakeAccepted,
    answers.IntakeRefusal,
    answers.SegmentList,
    answers.SegmentAnswer,
    answers.AppKeyList,
    PipelineRun,
    HoldoutReport,
    CommandCheckRequest,
    CommandChecks,
    answers.WebhookAnswer,
)
API_PORT = "http://localhost:8000"
HEALTH_PORT = "http://localhost:8001"
OFREP_SPEC = "https://github.com/open-feature/protocol"
OTLP_SPEC = "https://opentelemetry.io/docs/specs/otlp/"


def openapi_document() -> Schema:
    """The OpenAPI 3.1 document of the daemon's HTTP API."""
    return {
        "openapi": OPENAPI_VERSION,
        "jsonSchemaDialect": DIALECT,
        "info": _info(),
        "servers": [{"url": API_PORT, "description": "The API port (`http.port`)."}],
        "tags": _tags(),
        "paths": _paths(),
        "components": _components(),
        "externalDocs": {
            "description": "OpenFeature Remote Evaluation Protocol",
            "url": OFREP_SPEC,
        },
    }


def _info() -> Schema:
    return {
        "title": "rollout-controller HTTP API",
        "version": "1.0.0",
        "license": {"name": "Apache-2.0", "identifier": "Apache-2.0"},
        "description": (
            "The daemon serves two ports. The API port (`http.port`, 8000) serves every "
            "path here. The health port (`http.health_port`, 8001) serves `/healthz`, "
            "`/readyz` and `/metrics` only, for the orchestrator and the scraper; do not "
            "publish it. Past `http.max_connections` the API port answers 503 "
            '`{"error": "too many connections, retry later"}` to any request and closes.\n\n'
            "Also on the API port, described by their own specifications rather than here: "
            "OFREP, the OpenFeature Remote Evaluation Protocol (`/ofrep/v1/*`; see the "
            "`ofrep` tag), and OTLP/HTTP, OpenTelemetry's export protocol (`POST /v1/traces`, "
            "`POST /v1/logs`; see the `otlp` tag). `/ui` is the web console, for people.\n\n"
            "Credentials: the operator token is `http.webhook_token`, sent as "
            "`Authorization: Bearer`; app keys (scopes `evaluate`, `events`, `verdicts`) are "
            "made by signed commands and sent the same way. Every refusal is a JSON object "
            "whose `error` says why. This document describes a daemon with "
            "`http.webhook_token` set, as production runs: without one the operator's routes "
            "take no credentials (`/app-keys` only on a loopback address) and the webhooks "
            "answer 403."
        ),
    }


def _tags() -> list[Schema]:
    named = [
        ("probes", "Liveness, readiness and metrics: on both ports."),
        ("flags", "Flag states for apps."),
        ("rollouts", "Rollouts for operators and deploy gates."),
        ("pipelines", "Release pipelines across environments."),
        ("segments", "Segments for apps that evaluate rules themselves."),
        ("events", "The HTTP event intake."),
        ("app keys", "The apps' keys, for operators."),
        ("commands", "Signed commands checked before they are sent."),
        ("webhooks", "Monitors' alerts."),
    ]
    tags: list[Schema] = [{"name": n, "description": d} for n, d in named]
    tags.append(
        _external("ofrep", "OpenFeature Remote Evaluation Protocol, /ofrep/v1/*.", OFREP_SPEC)
    )
    tags.append(_external("otlp", "OTLP/HTTP: POST /v1/traces and /v1/logs.", OTLP_SPEC))
    return tags


def _external(name: str, description: str, url: str) -> Schema:
    return {"name": name, "description": description, "externalDocs": {"url": url}}


def _paths() -> Schema:
    paths: Schema = {}
    for operation in OPERATIONS:
        item = paths.setdefault(operation.path, {})
        if operation.tag == "probes":
            item["servers"] = _probe_servers()
        item[operation.method] = _operation(operation)
    return paths


def _probe_servers() -> list[Schema]:
    return [
        {"url": HEALTH_PORT, "description": "The health port (`http.health_port`)."},
        {"url": API_PORT, "description": "The API port (`http.port`)."},
    ]


def _operation(operation: Operation) -> Schema:
    shown: Schema = {
        "operationId": operation.operation_id,
        "tags": [operation.tag],
        "summary": operation.summary,
        "description": operation.description,
    }
    if operation.parameters:
        shown["parameters"] = [
            {"$ref": f"#/components/parameters/{p}"} for p in operation.parameters
        ]
    if operation.body is not None:
        shown["requestBody"] = {
            "required": True,
            "content": {"application/json": _schema(operation.body)},
        }
    shown["responses"] = {str(a.status): _answer(a) for a in operation.answers}
    shown["security"] = [
        {name: list(scopes)} if name else {} for name, scopes in operation.security
    ]
    return shown


def _answer(answer: Answer) -> Schema:
    shown: Schema = {"description": answer.description}
    if answer.headers:
        shown["headers"] = {h: {"$ref": f"#/components/headers/{h}"} for h in answer.headers}
    if answer.body is not None:
        shown["content"] = {answer.media: _schema(answer.body)}
    elif answer.media != "application/json":
        shown["content"] = {answer.media: {"schema": {"type": "string"}}}
    return shown


def _schema(body: str | tuple[str, ...]) -> Schema:
    if isinstance(body, str):
        return {"schema": {"$ref": REF.format(model=body)}}
    return {"schema": {"oneOf": [{"$ref": REF.format(model=b)} for b in body]}}


def _components() -> Schema:
    return {
        "schemas": component_schemas(),
        "parameters": _parameters(),
        "headers": _headers(),
        "securitySchemes": _security_schemes(),
    }


def component_schemas() -> Schema:
    """Every model's JSON Schema by its name, nested models by theirs."""
    models = (*READ_API_MODELS.values(), *DEPLOY_VERDICT_MODELS.values(), *ANSWER_MODELS)
    _, top = models_json_schema([(m, "validation") for m in models], ref_template=REF)
    schemas: Schema = dict(sorted(top.get("$defs", {}).items()))
    schemas["MonitorPayload"] = {
        "type": "object",
        "description": "The monitor's own payload (shapes: controller/integrations/monitors).",
    }
    return schemas


def _parameters() -> Schema:
    flag = _text(MAX_FLAG_KEY, FLAG_KEY_PATTERN)
    plain = _text(MAX_PLAIN_FLAG, PLAIN_FLAG_KEY_PATTERN)
    segment = TypeAdapter(SegmentName).json_schema()
    text: Schema = {"type": "string"}
    return {
        "flag": _parameter("flag", "path", "The flag's key (`<flag>@<env>`: one env's).", flag),
        "plainFlag": _parameter("flag", "path", "The flag's own key, with no environment.", plain),
        "segmentName": _parameter("name", "path", "The segment's name.", segment),
        "holdoutName": _parameter(
            "name", "path", "The holdout's name.", _text(64, HOLDOUT_NAME_PATTERN)
        ),
        "environment": _parameter(
            "environment",
            "query",
            "The environment (the default one when absent).",
            _text(32, ENVIRONMENT_PATTERN),
            False,
        ),
        "since": _parameter(
            "since",
            "query",
            "Only the rollouts started at or after this instant (RFC 3339, with an offset).",
            {"type": "string", "format": "date-time"},
            False,
        ),
        "alpha": _parameter(
            "alpha",
            "query",
            "The report's false-regression rate over its tests (0.05).",
            {"type": "number", "minimum": MIN_ALPHA, "exclusiveMaximum": 0.5},
            False,
        ),
        "If-None-Match": _parameter(
            "If-None-Match", "header", "The ETag last read: 304 when it is current.", text, False
        ),
        "Origin": _parameter("Origin", "header", "The page's origin.", text),
        "X-Request-Id": _parameter(
            "X-Request-Id", "header", "The delivery's id; tells a reopen apart.", text, False
        ),
    }


def _text(longest: int, pattern: str) -> Schema:
    return {"type": "string", "minLength": 1, "maxLength": longest, "pattern": pattern}


def _parameter(
    name: str, where: str, description: str, schema: Schema, required: bool = True
) -> Schema:
    return {
        "name": name,
        "in": where,
        "description": description,
        "required": required,
        "schema": schema,
    }


def _headers() -> Schema:
    return {
        "ETag": {"description": "The answer's version.", "schema": {"type": "string"}},
        "Retry-After": {
            "description": "Seconds to wait before trying again.",
            "schema": {"type": "string", "pattern": "^[0-9]+$"},
        },
    }


def _security_schemes() -> Schema:
    return {
        "operatorToken": {
            "type": "http",
            "scheme": "bearer",
            "description": "The operator (webhook) token, `http.webhook_token`.",
        },
        "webhookTokenQuery": {
            "type": "apiKey",
            "in": "query",
            "name": "token",
            "description": "The webhook token in the URL, for monitors that cannot set headers.",
        },
        "appKey": {
            "type": "http",
            "scheme": "bearer",
            "description": (
                "An app key, of scope `evaluate` (OFREP, `/flags`, `/v1/segments*`), `events` "
                "(`POST /v1/events`) or `verdicts` (`/rollouts/{flag}/verdict`)."
            ),
        },
    }
