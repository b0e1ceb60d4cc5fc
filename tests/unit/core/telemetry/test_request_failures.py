"""A failed request named by its status class, method and route: from the attributes real
instrumentations write on their server spans, and through the translator, table by table."""

from __future__ import annotations

from collections.abc import Mapping

import pytest

from controller.core.telemetry import Scalar, Spans, Translated, Translator
from controller.core.telemetry.attribution import node_of, request_failure
from controller.core.wire import RequestIn
from tests.unit.core.telemetry.builders import (
    CHILD,
    ROOT,
    T0_MS,
    evaluation_event,
    lookup,
    rules,
    span,
)

# A server span's attributes as each instrumentation writes them for GET /cart/42 answered
# 500 (the status aside, set by each case).
FLASK_OLD = {  # opentelemetry-instrumentation-flask, the older conventions (its default)
    "http.method": "GET",
    "http.server_name": "0.0.0.0",
    "http.scheme": "http",
    "http.host": "localhost:8080",
    "http.target": "/cart/42",
    "http.flavor": "1.1",
    "http.route": "/cart/<int:cart_id>",
}
FLASK_NEW = {  # the same, OTEL_SEMCONV_STABILITY_OPT_IN=http
    "http.request.method": "GET",
    "url.scheme": "http",
    "url.path": "/cart/42",
    "server.address": "localhost",
    "http.route": "/cart/<int:cart_id>",
}
DJANGO = {"http.method": "POST", "http.target": "/cart/42/", "http.route": "cart/<int:cart_id>/"}
FASTAPI = {"http.request.method": "GET", "url.path": "/cart/42", "http.route": "/cart/{cart_id}"}
EXPRESS = {  # @opentelemetry/instrumentation-http with -express, the older conventions
    "http.url": "http://localhost:8080/cart/42",
    "http.method": "GET",
    "http.target": "/cart/42",
    "http.status_text": "INTERNAL SERVER ERROR",
    "http.route": "/cart/:id",
}
JAVA_AGENT = {  # the Java agent 2.x on Spring MVC
    "http.request.method": "GET",
    "url.path": "/cart/42",
    "url.scheme": "http",
    "error.type": "500",
    "http.route": "/cart/{id}",
}
GO_OTELHTTP = {  # otelhttp on a Go 1.22 ServeMux: the route is the pattern's path
    "http.request.method": "GET",
    "url.path": "/cart/42",
    "http.route": "/cart/{id}",
}
GO_PATTERN = {"http.request.method": "GET", "http.route": "GET /cart/{id}"}
"""A route set by hand from ``r.Pattern``, method and all."""
NO_ROUTE = {"http.request.method": "GET", "url.path": "/cart/42", "http.target": "/cart/42"}
"""A server that gives no route (Go's otelhttp before patterns, a bare WSGI app)."""


def status(attributes: Mapping[str, Scalar], code: int, *, old: bool = False) -> dict[str, Scalar]:
    key = "http.status_code" if old else "http.response.status_code"
    return {**attributes, key: code}


@pytest.mark.parametrize(
    ("attributes", "code", "name"),
    [
        (FLASK_OLD, 500, "5xx GET /cart/<int:cart_id>"),
        (FLASK_NEW, 503, "5xx GET /cart/<int:cart_id>"),
        (DJANGO, 502, "5xx POST cart/<int:cart_id>/"),
        (FASTAPI, 500, "5xx GET /cart/{cart_id}"),
        (EXPRESS, 500, "5xx GET /cart/:id"),
        (JAVA_AGENT, 500, "5xx GET /cart/{id}"),
        (GO_OTELHTTP, 504, "5xx GET /cart/{id}"),
        (GO_PATTERN, 500, "5xx GET /cart/{id}"),
        # a client's error is named too: whether it is a failure is the plan's to say
        (JAVA_AGENT, 404, "4xx GET /cart/{id}"),
        # no route: no name, never the URL path with its ids
        (NO_ROUTE, 500, None),
        ({**JAVA_AGENT, "http.route": ""}, 500, None),
        ({**JAVA_AGENT, "http.route": "\x1b[2J"}, 500, None),
        ({**JAVA_AGENT, "http.route": 7}, 500, None),
        # not a failure's status
        (JAVA_AGENT, 200, None),
        (JAVA_AGENT, 302, None),
        (JAVA_AGENT, 600, None),
        # a method the instrumentation did not know, or none: the route alone
        ({**JAVA_AGENT, "http.request.method": "_OTHER"}, 500, "5xx /cart/{id}"),
        ({"http.route": "/cart/{id}"}, 500, "5xx /cart/{id}"),
        ({**JAVA_AGENT, "http.request.method": 1}, 500, "5xx /cart/{id}"),
        # the stable method before the older one; a lower-case one as the canonical
        ({**JAVA_AGENT, "http.method": "POST"}, 500, "5xx GET /cart/{id}"),
        ({**EXPRESS, "http.method": "get"}, 500, "5xx GET /cart/:id"),
        # a route that holds an id all the same is scrubbed, and one too long is cut
        ({**JAVA_AGENT, "http.route": "/users/4711/cart"}, 500, "5xx GET /users/<n>/cart"),
        ({**JAVA_AGENT, "http.route": "/v2/cart"}, 500, "5xx GET /v2/cart"),
        ({**JAVA_AGENT, "http.route": "/" + "a" * 500}, 500, "5xx GET /" + "a" * 118 + "…"),
        # a first word that is no method stays in the route
        ({**JAVA_AGENT, "http.route": "cart items/{id}"}, 500, "5xx GET cart items/{id}"),
    ],
)
def test_a_failed_request_is_named_from_its_server_span(
    attributes: dict[str, Scalar], code: int, name: str | None
) -> None:
    assert request_failure(attributes, code) == name
    for old in (False, True):  # either convention's status, as the span gives it
        node = node_of(span(attributes=status(attributes, code, old=old)))
        assert node.failure == name
        assert node.http_status == code


def test_only_a_request_is_named() -> None:
    inner = span(CHILD, ROOT, kind=1, attributes=status(JAVA_AGENT, 500))
    assert node_of(inner).failure is None
    assert node_of(inner).http_status is None


def translated(server_status: int, *, least: int = 500, span_status: int = 0) -> RequestIn:
    """The request event of one evaluation on a Java agent's server span."""
    server = span(
        attributes=status(JAVA_AGENT, server_status),
        status=span_status,
        events=(evaluation_event(),),
    )
    out = Translator(lookup(rules(error_status_min=least))).spans(Spans([server]), T0_MS)
    (request,) = requests(out)
    return request


def requests(out: Translated) -> list[RequestIn]:
    return [e for e in out.events if isinstance(e, RequestIn)]


@pytest.mark.parametrize(
    ("code", "least", "span_status", "error", "failure"),
    [
        (500, 500, 2, True, "5xx GET /cart/{id}"),
        (503, 500, 0, True, "5xx GET /cart/{id}"),
        (200, 500, 0, False, None),
        # a client's error, under the plan's default: no failure, so no name
        (404, 500, 0, False, None),
        # the plan counts a 4xx a failure: named as one
        (404, 400, 0, True, "4xx GET /cart/{id}"),
        (429, 400, 0, True, "4xx GET /cart/{id}"),
        # ERROR on a 4xx (an older instrumentation's way): failed, but not by its status
        (404, 500, 2, True, None),
        # ERROR with a success's status: failed, of no name
        (200, 500, 2, True, None),
        # a plan whose least error is a 503 names a 503, not a 500
        (500, 503, 0, False, None),
        (503, 503, 0, True, "5xx GET /cart/{id}"),
    ],
)
def test_the_request_event_is_named_where_its_status_made_it_a_failure(
    code: int, least: int, span_status: int, error: bool, failure: str | None
) -> None:
    request = translated(code, least=least, span_status=span_status)
    assert (request.error, request.failure) == (error, failure)


def test_a_request_joined_later_is_named_too() -> None:
    """The evaluation's span comes first, its server span in a later export."""
    translator = Translator(lookup(rules()))
    inner = span(CHILD, ROOT, kind=1, events=(evaluation_event(),))
    assert requests(translator.spans(Spans([inner]), T0_MS)) == []
    server = span(attributes=status(EXPRESS, 500, old=True))
    (request,) = requests(translator.spans(Spans([server]), T0_MS))
    assert (request.error, request.failure) == (True, "5xx GET /cart/:id")


def test_a_request_without_a_route_is_a_failure_of_no_name() -> None:
    server = span(attributes=status(NO_ROUTE, 500), events=(evaluation_event(),))
    (request,) = requests(Translator(lookup(rules())).spans(Spans([server]), T0_MS))
    assert (request.error, request.failure) == (True, None)
