"""A failure's fingerprint: one bug one name, whatever its particulars, no personal data."""

from __future__ import annotations

import pytest

from controller.core.telemetry.fingerprints import (
    MAX_EXAMPLE_CHARS,
    Fingerprint,
    exception_fingerprint,
    http_fingerprint,
    scrub,
    sdk_fingerprint,
    top_frame,
)

PYTHON = (
    "Traceback (most recent call last):\n"
    '  File "/srv/app/checkout/views.py", line 88, in checkout\n'
    "    total = price(cart)\n"
    '  File "/srv/app/checkout/cart.py", line 12, in price\n'
    '    return cart["cart_id"]\n'
    "KeyError: 'cart_id'\n"
)
JAVA = (
    'java.lang.NullPointerException: Cannot invoke "Cart.total()" because "cart" is null\n'
    "\tat com.shop.checkout.CartService.price(CartService.java:42)\n"
    "\tat com.shop.checkout.CheckoutController.checkout(CheckoutController.java:17)\n"
    "\tat java.base/jdk.internal.reflect.DirectMethodHandleAccessor.invoke(Unknown Source)\n"
)
NODE = (
    "TypeError: Cannot read properties of undefined (reading 'x')\n"
    "    at price (/app/checkout/cart.js:1:37)\n"
    "    at async checkout (/app/checkout/routes.js:9:3)\n"
    "    at runScriptInThisContext (node:internal/vm:209:10)\n"
)
DOTNET = (
    "System.InvalidOperationException: Sequence contains no elements\n"
    "   at Shop.Checkout.Cart.Price(Int32 id) in /src/Checkout/Cart.cs:line 42\n"
    "   at Shop.Checkout.Controller.Post() in /src/Checkout/Controller.cs:line 17\n"
)
GO = (
    "goroutine 7 [running]:\n"
    "go.opentelemetry.io/otel/sdk/trace.recordStackTrace()\n"
    "\t/go/pkg/mod/go.opentelemetry.io/otel/sdk@v1.38.0/trace/span.go:560 +0x65\n"
    "go.opentelemetry.io/otel/sdk/trace.(*recordingSpan).RecordError(0xc0001a2000, ...)\n"
    "\t/go/pkg/mod/go.opentelemetry.io/otel/sdk@v1.38.0/trace/span.go:537 +0x2c5\n"
    "main.(*Cart).Price(0xc000012345)\n"
    "\t/app/checkout/cart.go:42 +0x1d\n"
    "main.main()\n"
    "\t/app/main.go:10 +0x25\n"
)
GO_HANDLER = (  # span.RecordError(err, trace.WithStackTrace(true)) in otelhttp's handler
    "goroutine 5 [running]:\n"
    "go.opentelemetry.io/otel/sdk/trace.recordStackTrace(...)\n"
    "\tgo.opentelemetry.io/otel/sdk@v1.47.0/trace/span.go:527\n"
    "go.opentelemetry.io/otel/sdk/trace.(*recordingSpan).RecordError(0x1adef99245a0, "
    "{0xce42a0, 0x1adef999f2e0}, {0x1adef999f2f0, 0x1, 0x1})\n"
    "\tgo.opentelemetry.io/otel/sdk@v1.47.0/trace/span.go:509 +0x4de\n"
    "main.handler.func1({0xcf0fd0, 0x1adef98b2180}, 0x1adef9928140)\n"
    "\tcheckout/checkout.go:80 +0x7b4\n"
    "net/http.HandlerFunc.ServeHTTP(0x1adef99d4180?, {0xcf0fd0?, 0x1adef98b2180?}, "
    "0x1adef9a11640?)\n"
    "\tnet/http/server.go:2286 +0x29\n"
    "net/http.(*ServeMux).ServeHTTP(0xcf2038?, {0xcf0fd0, 0x1adef98b2180}, 0x1adef9928140)\n"
    "\tnet/http/server.go:2828 +0x1c7\n"
)
NODE_MODULE = (  # span.recordException(err) in an ES module
    "PriceMissingError: no price for cart-17\n"
    "    at price (file:///work/main/tests/otel/node_app.mjs:96:32)\n"
    "    at file:///work/main/tests/otel/node_app.mjs:115:7\n"
)
JAVA_AGENT = (  # Span.current().recordException(e) under the OpenTelemetry Java agent
    "checkout.PriceMissingException: no price for cart-17\n"
    "\tat checkout.Checkout.price(Checkout.java:151)\n"
    "\tat checkout.Checkout.serve(Checkout.java:134)\n"
    "\tat jdk.httpserver/com.sun.net.httpserver.Filter$Chain.doFilter(Filter.java:95)\n"
    "\tat io.opentelemetry.javaagent.instrumentation.javahttpserver."
    "ResponseCustomizingFilter.doFilter(ResponseCustomizingFilter.java:23)\n"
)


@pytest.mark.parametrize(
    ("trace", "frame"),
    [
        (PYTHON, "checkout/cart.py:price"),  # Python lists the innermost frame last
        (JAVA, "checkout/CartService.java:price"),
        (NODE, "checkout/cart.js:price"),
        (DOTNET, "Checkout/Cart.cs:Price"),
        (GO, "checkout/cart.go:Price"),  # below the runtime's and OpenTelemetry's frames
        # a closure is named with the function it is written in: each one's first is func1
        (GO_HANDLER, "checkout/checkout.go:handler.func1"),
        (
            GO.replace("main.(*Cart).Price", "main.outer.func2.gowrap1"),
            "checkout/cart.go:outer.func2.gowrap1",
        ),
        (
            GO.replace("main.(*Cart).Price", "gopkg.in/yaml.v3.glob..func1"),
            "checkout/cart.go:glob..func1",
        ),
        (NODE_MODULE, "otel/node_app.mjs:price"),  # a file:// URL is read as its path
        (JAVA_AGENT, "checkout/Checkout.java:price"),
        ("no frame here at all", ""),
        ("", ""),
    ],
)
def test_the_top_frame_of_each_languages_stack_trace(trace: str, frame: str) -> None:
    assert top_frame(trace) == frame


@pytest.mark.parametrize(
    ("text", "scrubbed"),
    [
        ("KeyError: 'user-4711'", "KeyError: 'user-<n>'"),
        ("no cart 3f2504e0-4f89-11d3-9a0c-0305e82c3301", "no cart <uuid>"),
        ("mail to jane.doe+x@example.co.uk failed", "mail to <email> failed"),
        ("object at 0x7f3a2c1b9d60", "object at <hex>"),
        ("digest 9f86d081884c7d65 mismatch", "digest <hex> mismatch"),
        ("took 1,234.5 ms on line 42", "took <n> ms on line <n>"),
        ("\x1b[31mred\x1b[0m\u202e evil\n\n  text", "red evil text"),
        # a string sequence, to its BEL or ST: a terminal's title, a link
        ("\x1b]0;pwned\x07FAILED", "FAILED"),
        ("\x1b]8;;https://evil.example/\x1b\\click\x1b]8;;\x1b\\ here", "click here"),
        ("\x1b]0;unended\nrest", "rest"),
    ],
)
def test_numbers_ids_and_addresses_are_scrubbed(text: str, scrubbed: str) -> None:
    assert scrub(text) == scrubbed


@pytest.mark.parametrize(
    ("name", "scrubbed"),
    [
        ("Http2Error at line 7", "Http2Error at line <n>"),
        ("Rare10Error in r.py:f", "Rare10Error in r.py:f"),
        ("E1024Error", "E1024Error"),
        ("12xx at 7", "12xx at <n>"),
        ("io_500 5xx GET /items/404", "io_500 5xx GET /items/<n>"),
        # a title's digits set by an escape are no part of the name beside it
        ("\x1b[31mFAILED\x1b[0m\x1b]0;pwned\x07 in a.py:f", "FAILED in a.py:f"),
    ],
)
def test_names_keep_their_own_digits(name: str, scrubbed: str) -> None:
    assert scrub(name, names=True) == scrubbed


def test_one_bug_is_one_fingerprint_whatever_its_particulars() -> None:
    first = exception_fingerprint(
        {"exception.type": "KeyError", "exception.message": "'u-1'", "exception.stacktrace": PYTHON}
    )
    second = exception_fingerprint(
        {
            "exception.type": "KeyError",
            "exception.message": "'u-99'",
            "exception.stacktrace": PYTHON,
        }
    )
    assert first is not None
    assert second is not None
    assert first.key == second.key
    assert first.title == "KeyError in checkout/cart.py:price"
    assert first.example == "KeyError: 'u-<n>'"
    other = exception_fingerprint({"exception.type": "KeyError", "exception.stacktrace": NODE})
    assert other is not None
    assert other.key != first.key


def test_without_a_stack_trace_the_code_attributes_place_it() -> None:
    found = exception_fingerprint(
        {"exception.type": "ValueError", "code.filepath": "/a/b/c.py", "code.function": "f"}
    )
    assert found == Fingerprint("exception", "ValueError", "b/c.py:f", "ValueError")
    newer = exception_fingerprint({"code.file.path": "x/y.go", "code.function.name": "pkg.Do"})
    assert newer == Fingerprint("exception", "exception", "x/y.go:Do", "")


def test_an_exception_with_nothing_to_name_it_has_no_fingerprint() -> None:
    assert exception_fingerprint({}) is None
    assert exception_fingerprint({"exception.type": 42}) is None


def test_a_megabyte_message_is_cut() -> None:
    found = exception_fingerprint({"exception.type": "E", "exception.message": "x" * 1_000_000})
    assert found is not None
    assert len(found.example) == MAX_EXAMPLE_CHARS
    assert found.example.endswith("…")


@pytest.mark.parametrize(
    ("status", "route", "method", "title"),
    [
        (503, "/cart/{id}", "get", "5xx GET /cart/{id}"),
        (404, "/users/4711", "", "4xx /users/<n>"),
        (200, "/cart", "GET", None),
        (999, "/cart", "GET", None),
    ],
)
def test_a_failed_request_is_named_by_its_status_class_and_route(
    status: int, route: str, method: str, title: str | None
) -> None:
    found = http_fingerprint(status, route, method)
    assert (found.title if found else None) == title


def test_an_sdk_error_is_named_by_its_kind() -> None:
    assert sdk_fingerprint("TIMEOUT", "after 500 ms").title == "TIMEOUT"
    assert sdk_fingerprint("TIMEOUT", "after 500 ms").example == "after <n> ms"
