"""OpenFeature's own Gherkin suites, through the published Python OFREP provider, on the daemon.

The scenarios are OpenFeature's, unchanged (``tests/vectors/openfeature/``);
the steps are ours: each evaluation goes through ``openfeature-sdk`` and
``openfeature-provider-ofrep`` over a socket to the daemon of
:func:`conftest.conformance_daemon`, which serves the suite's flag set
translated into our flags (:mod:`.flagset`). The scenarios that do not pass
as written are listed, with why, in :mod:`.differences`.
"""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import inspect
import json
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import pytest
import requests
from openfeature import api
from openfeature.client import OpenFeatureClient
from openfeature.contrib.provider.ofrep import OFREPProvider
from openfeature.evaluation_context import EvaluationContext, set_evaluation_context
from openfeature.flag_evaluation import FlagEvaluationDetails, FlagEvaluationOptions
from openfeature.hook import Hook, HookContext, HookHints, clear_hooks
from openfeature.transaction_context import (
    ContextVarsTransactionContextPropagator,
    clear_transaction_context_propagator,
    set_transaction_context,
    set_transaction_context_propagator,
)
from pytest_bdd import given, parsers, scenarios, then, when

from tests.integration.conformance.flagset import VECTORS

pytestmark = [pytest.mark.integration]

scenarios(
    *(str(VECTORS / name) for name in ("evaluation_v2.feature", "metadata.feature")),
    str(VECTORS / "contextMerging.feature"),
)

DOMAIN = "conformance"
TYPED: dict[str, Callable[[str], Any]] = {
    "Boolean": lambda text: {"true": True, "false": False}[text],
    "String": str,
    "Integer": int,
    "Float": float,
    "Object": lambda text: json.loads(text.replace('\\"', '"')),
}
"""How a value written in the suite is read, by the type the suite names."""


class Recorder(Hook):
    """A hook that notes each stage it is called at, and gives ``before`` a context."""

    def __init__(self, name: str, calls: list[str], adds: EvaluationContext | None = None):
        self.name, self.calls, self.adds = name, calls, adds

    def before(self, hook_context: HookContext, hints: HookHints) -> EvaluationContext | None:
        self.calls.append(f"{self.name}.before")
        return self.adds

    def after(self, hook_context: HookContext, details: Any, hints: HookHints) -> None:
        self.calls.append(f"{self.name}.after")

    def finally_after(self, hook_context: HookContext, details: Any, hints: HookHints) -> None:
        self.calls.append(f"{self.name}.finally")


@dataclass
class World:
    """One scenario's state: the client, the flag asked for, and what came back."""

    base: str
    client: OpenFeatureClient | None = None
    kind: str = "Boolean"
    key: str = ""
    fallback: Any = None
    attributes: dict[str, Any] = field(default_factory=dict)
    details: FlagEvaluationDetails[Any] | None = None
    options: FlagEvaluationOptions | None = None
    calls: list[str] = field(default_factory=list)
    sent: list[dict[str, Any]] = field(default_factory=list)
    levels: dict[str, EvaluationContext] = field(default_factory=dict)
    given_context: EvaluationContext | None = None
    snapshot: EvaluationContext | None = None
    order: list[str] = field(default_factory=list)
    asynchronously: bool = False

    def evaluate(self, context: EvaluationContext | None = None) -> FlagEvaluationDetails[Any]:
        assert self.client is not None, "no provider was set up"
        method = getattr(self.client, f"get_{self.kind.lower()}_details")
        if context is None:
            context = EvaluationContext(attributes=self.attributes)
        self.details = method(self.key, self.fallback, context, self.options)
        return self.details

    @property
    def got(self) -> FlagEvaluationDetails[Any]:
        assert self.details is not None, "nothing was evaluated"
        return self.details


@pytest.fixture
def world(conformance_daemon: str) -> Iterator[World]:
    """A scenario's world; the OpenFeature API's globals are reset after it."""
    yield World(conformance_daemon)
    api.clear_providers()
    clear_hooks()
    set_evaluation_context(EvaluationContext())
    clear_transaction_context_propagator()


def _provider(world: World) -> OFREPProvider:
    provider = OFREPProvider(world.base, timeout=30)

    def record(response: requests.Response, *args: Any, **kwargs: Any) -> None:
        body = response.request.body
        assert isinstance(body, bytes | str), body
        world.sent.append({"status": response.status_code, **json.loads(body)})

    provider.session.hooks["response"].append(record)
    return provider


@given("a stable provider")
@given("a stable provider with retrievable context is registered")
def stable_provider(world: World) -> None:
    api.set_provider_and_wait(_provider(world), DOMAIN)
    world.client = api.get_client(DOMAIN)


@given(
    parsers.re(
        r'a (?P<kind>\w+)-flag with key "(?P<key>[^"]*)" and a fallback value "(?P<fallback>.*)"'
    )
)
def a_flag(world: World, kind: str, key: str, fallback: str) -> None:
    world.kind, world.key, world.fallback = kind, key, TYPED[kind](fallback)


@given(
    parsers.parse(
        'a context containing a key "{name}", with type "{kind}" and with value "{value}"'
    )
)
def context_value(world: World, name: str, kind: str, value: str) -> None:
    world.attributes[name] = TYPED[kind](value)


@given(parsers.parse('a context containing a key "{name}" with null value'))
def context_null(world: World, name: str) -> None:
    world.attributes[name] = None


@given("evaluation options containing specific hooks")
def options_with_hooks(world: World) -> None:
    hooks: list[Hook] = [Recorder(name, world.calls) for name in ("first", "second")]
    world.options = FlagEvaluationOptions(hooks=hooks)


@given("an evaluation context with modifiable data")
def modifiable_context(world: World) -> None:
    world.attributes = {"tags": ["a", "b"], "nested": {"plan": "pro"}}
    world.given_context = EvaluationContext("unit-1", world.attributes)


@when("the flag was evaluated with details")
@when("the flag was evaluated with details using the evaluation options")
def evaluated(world: World) -> None:
    world.snapshot = copy.deepcopy(world.given_context)
    world.evaluate(world.given_context)


@when("the flag was evaluated with details asynchronously")
def evaluated_async(world: World) -> None:
    assert world.client is not None
    method = getattr(world.client, f"get_{world.kind.lower()}_details_async")
    pending = method(world.key, world.fallback, EvaluationContext(attributes=world.attributes))
    world.asynchronously = inspect.iscoroutine(pending)
    with ThreadPoolExecutor(1) as pool:  # a loop of its own, not the test session's
        world.details = pool.submit(asyncio.run, pending).result()


@then(parsers.re(r'the resolved details value should be "(?P<value>.*)"'))
def resolved_value(world: World, value: str) -> None:
    want = TYPED[world.kind](value)
    got = world.got
    assert (got.value, type(got.value)) == (want, type(want)), got


@then(parsers.parse('the reason should be "{reason}"'))
def reason_is(world: World, reason: str) -> None:
    assert str(getattr(world.got.reason, "value", world.got.reason)) == reason, world.got


@then(parsers.parse('the error-code should be "{code}"'))
def error_code_is(world: World, code: str) -> None:
    assert world.got.error_code is not None, world.got
    assert world.got.error_code.value == code, world.got


@then(parsers.parse('the flag key should be "{key}"'))
def flag_key_is(world: World, key: str) -> None:
    assert world.got.flag_key == key, world.got


@then(parsers.parse('the variant should be "{variant}"'))
def variant_is(world: World, variant: str) -> None:
    assert world.got.variant == variant, world.got


@then("the resolved metadata should contain")
def metadata_contains(world: World, datatable: list[list[str]]) -> None:
    header, *rows = datatable
    assert header == ["key", "metadata_type", "value"], header
    want = {key: TYPED[kind](value) for key, kind, value in rows}
    got = {key: world.got.flag_metadata.get(key) for key in want}
    assert got == want, world.got


@then("the resolved metadata is empty")
def metadata_empty(world: World) -> None:
    assert not world.got.flag_metadata, world.got


@then(parsers.parse('the provider status should be "{status}"'))
def provider_status(world: World, status: str) -> None:
    assert world.client is not None
    assert world.client.get_provider_status().value == status


@then("the specified hooks should execute during evaluation")
def hooks_ran(world: World) -> None:
    assert world.got.error_code is None, world.got
    assert {call.split(".")[1] for call in world.calls} == {"before", "after", "finally"}


@then("the hook order should be maintained")
def hook_order(world: World) -> None:
    # Before hooks run in the order given, after and finally hooks in reverse (spec 4.4.2).
    assert world.calls == [
        "first.before",
        "second.before",
        "second.after",
        "first.after",
        "second.finally",
        "first.finally",
    ], world.calls


@then("the original evaluation context should remain unmodified")
def context_unmodified(world: World) -> None:
    assert world.given_context is not None
    assert world.given_context == world.snapshot, world.given_context


@then("the evaluation details should be immutable")
def details_immutable(world: World) -> None:
    details = world.got
    try:
        details.value = not details.value
    except (dataclasses.FrozenInstanceError, AttributeError):
        return
    raise AssertionError(f"the evaluation details could be changed: {details}")


@then("the evaluation should complete without blocking")
def completed_async(world: World) -> None:
    assert world.asynchronously, "the client's async method returned no coroutine"
    assert world.got.error_code is None, world.got


# Context merging: each level's context reaches the daemon in the request's body.


def _add(world: World, level: str, key: str, value: str) -> None:
    context = world.levels.get(level, EvaluationContext())
    world.levels[level] = context.merge(EvaluationContext(attributes={key: value}))


@given(
    parsers.parse(
        'A context entry with key "{key}" and value "{value}" is added to the "{level}" level'
    )
)
def context_entry(world: World, key: str, value: str, level: str) -> None:
    _add(world, level, key, value)


@given("A table with levels of increasing precedence")
def levels_table(world: World, datatable: list[list[str]]) -> None:
    world.order = [row[0] for row in datatable]


@given(
    parsers.parse(
        'Context entries for each level from API level down to the "{level}" level, '
        'with key "{key}" and value "{value}"'
    )
)
def entries_down_to(world: World, level: str, key: str, value: str) -> None:
    for each in world.order[: world.order.index(level) + 1]:
        _add(world, each, key, each)
    assert value == level


@when("Some flag was evaluated")
def some_flag(world: World) -> None:
    assert world.client is not None
    levels = world.levels
    set_evaluation_context(levels.get("API", EvaluationContext()))
    if "Transaction" in levels:
        set_transaction_context_propagator(ContextVarsTransactionContextPropagator())
        set_transaction_context(levels["Transaction"])
    world.client.context = levels.get("Client", EvaluationContext())
    adds = levels.get("Before Hooks")
    if adds is not None:
        world.options = FlagEvaluationOptions(hooks=[Recorder("merge", world.calls, adds)])
    world.kind, world.key, world.fallback = "Boolean", "boolean-flag", False
    world.evaluate(levels.get("Invocation", EvaluationContext()))


@then(parsers.parse('The merged context contains an entry with key "{key}" and value "{value}"'))
def merged_entry(world: World, key: str, value: str) -> None:
    *_, last = world.sent
    assert (last["status"], last["context"].get(key)) == (200, value), last
    assert world.got.error_code is None, world.got
