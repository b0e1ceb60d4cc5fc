"""OFREP on the daemon's HTTP server, evaluated by OpenFeature's own providers for Python and Node.

The server runs over real Redis; the providers are the published ones
(``openfeature-provider-ofrep`` from PyPI, ``@openfeature/ofrep-provider``
from npm, installed by ``make ofrep-node``). For 10,000 units they must get
exactly the arm the SDK's evaluation gives for the same states, which is the
bucketing the vectors pin; every answer is checked against OFREP's OpenAPI
document.
"""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from openfeature import api
from openfeature.contrib.provider.ofrep import OFREPProvider
from openfeature.evaluation_context import EvaluationContext
from openfeature.exception import ErrorCode
from openfeature.flag_evaluation import Reason

from controller.adapters.ofrep.context import MAX_CONTEXT_DEPTH
from controller.adapters.ofrep.routes import MAX_BODY_BYTES
from controller.adapters.redis.client import connect
from controller.adapters.redis.rollouts import RolloutStore
from controller.core.reading.views import FlagStateView
from controller.core.rollouts.rollout import Phase
from controller.core.rules.text import parse as parse_rule
from controller.core.wire.arm_values import ArmValues
from controller.core.wire.bucketing import assign
from controller.core.wire.messages import FlagState
from controller.ports import StateWrite
from controller.sdk.flags import FlagBook
from controller.settings import RedisSettings
from tests.conftest import _service_unavailable
from tests.integration.http.test_http import wait_status
from tests.integration.rig import Rig
from tests.support.backing.services import ServiceUnavailable, free_port
from tests.support.clients.ofrep import (
    CONFIGURATION_SCHEMA,
    NODE_SCRIPT,
    ROOT,
    flag_rollout,
    node_home,
    ofrep_server,
    schema,
    store,
)
from tests.support.clients.sse import sse
from tests.support.waiting import eventually

pytestmark = [pytest.mark.integration]

UNITS = 10_000
SPLIT, OFF, DONE = "ofrep.split", "ofrep.killed", "ofrep.done"
TYPED = "ofrep.typed"


@pytest.fixture
async def served(redis_url: str, redis_namespace: str) -> AsyncIterator[tuple[str, RolloutStore]]:
    """An OFREP server over three flags: split at 37.5%, killed, completed."""
    async with connect(RedisSettings(url=redis_url)) as client:
        states = await store(
            client,
            redis_namespace,
            [
                flag_rollout(SPLIT, 37.5),
                flag_rollout(OFF, 50.0, phase=Phase.KILLED),
                flag_rollout(DONE, 100.0, phase=Phase.COMPLETED, version=9),
            ],
        )
        async with ofrep_server(states, max_age=0.2) as base:
            yield base, states


async def sdk_book(base: str) -> FlagBook:
    """The SDK's book of the states ``GET /flags`` serves: what the SDK evaluates from."""
    async with httpx.AsyncClient() as client:
        answer = await client.get(f"{base}/flags")
    views = [FlagStateView.model_validate(s) for s in answer.json()]
    book = FlagBook()
    for view in views:
        book.apply(view_state(view))
    return book


def view_state(view: FlagStateView) -> FlagState:
    return FlagState.model_validate(
        {"v": 1, "type": "flag_state", "id": f"s-{view.flag}", "ts": 1, **view.served()}
    )


def check(name: str, answer: Any) -> None:
    errors = [e.message[:200] for e in schema(name).iter_errors(answer)]
    assert not errors, (name, answer, errors)


async def test_the_python_provider_gets_the_sdks_arms_for_10_000_units(
    served: tuple[str, RolloutStore],
) -> None:
    base, _ = served
    book = await sdk_book(base)
    split = book.state(SPLIT)
    assert split is not None
    assert split.percent == 37.5

    def resolve() -> dict[str, list[Any]]:
        api.set_provider(OFREPProvider(base), "ofrep-test")
        client = api.get_client("ofrep-test")
        out: dict[str, list[Any]] = {}
        for flag in (SPLIT, OFF, DONE):
            units = range(UNITS if flag == SPLIT else 200)
            out[flag] = [
                client.get_boolean_details(flag, False, EvaluationContext(f"unit-{i}"))
                for i in units
            ]
        out["missing"] = [
            client.get_boolean_details(SPLIT, False, EvaluationContext()),
            client.get_boolean_details("ofrep.nope", False, EvaluationContext("u")),
        ]
        # Without a targeting key: only the flag that buckets units needs one.
        out["keyless"] = [
            client.get_boolean_details(flag, True, EvaluationContext())
            for flag in (OFF, DONE, "ofrep.nope")
        ]
        return out

    try:
        got = await asyncio.to_thread(resolve)
    finally:
        api.clear_providers()
    for i, details in enumerate(got[SPLIT]):
        unit = f"unit-{i}"
        arm, version = book.arm(SPLIT, unit)
        assert arm == assign(SPLIT, split.salt, unit, 37.5)
        assert (details.variant, details.value, details.reason) == (
            arm.value,
            arm.value == "treatment",
            Reason.SPLIT,
        ), unit
        assert details.flag_metadata == {
            "flag_version": version,
            "rollout_id": f"r-{SPLIT}",
            "stage": 0,
            "version": str(version),
        }
    treated = sum(d.value for d in got[SPLIT])
    assert 3500 < treated < 4000, treated
    assert {(d.variant, d.reason, d.flag_metadata["flag_version"]) for d in got[OFF]} == {
        ("control", Reason.DISABLED, 0)
    }
    assert {(d.variant, d.reason, d.flag_metadata["flag_version"]) for d in got[DONE]} == {
        ("treatment", Reason.STATIC, 9)
    }
    no_key, unknown = got["missing"]
    assert (no_key.error_code, no_key.value) == (ErrorCode.TARGETING_KEY_MISSING, False)
    assert (unknown.error_code, unknown.value) == (ErrorCode.FLAG_NOT_FOUND, False)
    assert [(d.value, d.reason, d.error_code) for d in got["keyless"]] == [
        (False, Reason.DISABLED, None),
        (True, Reason.STATIC, None),
        (True, Reason.ERROR, ErrorCode.FLAG_NOT_FOUND),
    ]
    assert got["keyless"][1].flag_metadata["version"] == "9"


@pytest.fixture
def ofrep_node(node: str, pytestconfig: pytest.Config) -> Path:
    """Where the Node OFREP provider is installed; SERVICE MISSING when it is not."""
    try:
        return node_home()
    except ServiceUnavailable as exc:
        _service_unavailable(pytestconfig, exc)


async def test_the_node_provider_gets_the_sdks_arms_for_10_000_units(
    served: tuple[str, RolloutStore], node: str, ofrep_node: Path
) -> None:
    home = ofrep_node
    base, _ = served
    book = await sdk_book(base)
    done = await asyncio.to_thread(
        subprocess.run,
        [node, str(NODE_SCRIPT), base, str(UNITS), SPLIT, OFF],
        capture_output=True,
        text=True,
        timeout=300,
        env={
            "OFREP_NODE_HOME": str(home),
            "PATH": str(Path(node).parent),
            "OFREP_KEYLESS_FLAGS": f"{OFF},{DONE}",
        },
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    got = json.loads(done.stdout.strip().splitlines()[-1])
    expected = [book.arm(SPLIT, f"unit-{i}")[0].value for i in range(UNITS)]
    assert got[SPLIT]["variants"] == expected
    assert (got[SPLIT]["reasons"], got[SPLIT]["errors"]) == (["SPLIT"], [])
    assert got[SPLIT]["metadata"] == {
        "flag_version": book.arm(SPLIT, "unit-0")[1],
        "rollout_id": f"r-{SPLIT}",
        "stage": 0,
        "version": str(book.arm(SPLIT, "unit-0")[1]),
    }
    assert set(got[OFF]["variants"]) == {"control"}
    assert got[OFF]["reasons"] == ["DISABLED"]
    assert got["<no targeting key>"] == {"errors": ["TARGETING_KEY_MISSING"], "value": False}
    assert got["<no targeting key, each flag>"] == {
        OFF: {"reason": "DISABLED", "error": None, "value": False},
        DONE: {"reason": "STATIC", "error": None, "value": True},
    }


async def test_every_answer_has_ofreps_shape(served: tuple[str, RolloutStore]) -> None:
    base, _ = served
    url = f"{base}/ofrep/v1/evaluate/flags"
    context = {"context": {"targetingKey": "u-1", "plan": "pro", "tags": ["a", {"b": 1}]}}
    async with httpx.AsyncClient() as client:
        one = await client.post(f"{url}/{SPLIT}", json=context)
        assert one.status_code == 200
        assert one.headers["Content-Type"].startswith("application/json")
        check("serverEvaluationSuccess", one.json())
        assert one.json()["key"] == SPLIT

        unknown = await client.post(f"{url}/ofrep.nope", json=context)
        assert unknown.status_code == 404
        check("flagNotFound", unknown.json())
        assert unknown.json()["errorCode"] == "FLAG_NOT_FOUND"

        missing = await client.post(f"{url}/{SPLIT}", json={"context": {"plan": "pro"}})
        assert missing.status_code == 400
        check("evaluationFailure", missing.json())
        assert missing.json()["errorCode"] == "TARGETING_KEY_MISSING"

        bulk = await client.post(url, json=context)
        assert bulk.status_code == 200
        check("bulkEvaluationSuccess", bulk.json())
        flags = {f["key"]: f for f in bulk.json()["flags"]}
        assert set(flags) == {SPLIT, OFF, DONE}
        assert flags[SPLIT] == one.json()
        etag = bulk.headers["ETag"]

        again = await client.post(url, json=context, headers={"If-None-Match": etag})
        assert (again.status_code, again.headers["ETag"], again.content) == (304, etag, b"")
        star = await client.post(url, json=context, headers={"If-None-Match": "*"})
        assert (star.status_code, star.headers["ETag"], star.json()) == (200, etag, bulk.json())
        other = await client.post(
            url, json={"context": {"targetingKey": "u-2"}}, headers={"If-None-Match": etag}
        )
        assert other.status_code == 200
        assert other.headers["ETag"] != etag

        keyless = await client.post(url, json={"context": {"plan": "pro"}})
        assert keyless.status_code == 200, keyless.text
        check("bulkEvaluationSuccess", keyless.json())
        by_key = {f["key"]: f for f in keyless.json()["flags"]}
        assert by_key[SPLIT]["errorCode"] == "TARGETING_KEY_MISSING"
        assert (by_key[OFF]["reason"], by_key[OFF]["value"]) == ("DISABLED", False)
        assert (by_key[DONE]["reason"], by_key[DONE]["value"]) == ("STATIC", True)
        assert by_key[DONE]["metadata"] == {
            "flag_version": 9,
            "rollout_id": f"r-{DONE}",
            "stage": 0,
            "version": "9",
        }

        bad_bulk = await client.post(url, json={"context": {"targetingKey": 7}})
        assert bad_bulk.status_code == 400
        check("bulkEvaluationFailure", bad_bulk.json())
        assert bad_bulk.json()["errorCode"] == "INVALID_CONTEXT"

        configuration = await client.get(f"{base}/ofrep/v1/configuration")
        assert configuration.status_code == 200
        errors = list(
            schema("key").evolve(schema=CONFIGURATION_SCHEMA).iter_errors(configuration.json())
        )
        assert not errors, errors
        assert configuration.json()["capabilities"]["flagEvaluation"]["supportedTypes"] == [
            "boolean",
            "string",
            "int",
            "float",
            "object",
        ]


async def test_a_changed_state_changes_the_etag_and_the_answer(
    served: tuple[str, RolloutStore],
) -> None:
    base, states = served
    url = f"{base}/ofrep/v1/evaluate/flags"
    body = {"context": {"targetingKey": "unit-1"}}
    async with httpx.AsyncClient() as client:
        first = await client.post(url, json=body)
        etag = first.headers["ETag"]
        loaded = await states.load(SPLIT)
        assert loaded.rollout is not None
        killed = loaded.rollout.model_copy(update={"phase": Phase.KILLED, "flag_version": 4})
        await states.save(SPLIT, StateWrite(rev=loaded.rev, rollout=killed))

        async def changed() -> dict[str, Any]:
            answer = await client.post(url, json=body, headers={"If-None-Match": etag})
            assert answer.status_code == 200, answer.status_code
            return {f["key"]: f for f in answer.json()["flags"]}

        flags = await eventually(changed, timeout=10, what="the kill to reach OFREP")
    assert (flags[SPLIT]["reason"], flags[SPLIT]["variant"]) == ("DISABLED", "control")


async def test_a_flag_with_string_values_resolves_them_and_refuses_a_boolean(
    served: tuple[str, RolloutStore],
) -> None:
    base, states = served
    typed = flag_rollout(TYPED, 40.0)
    rankers = {"type": "string", "control": "v1-ranker", "treatment": "v2-ranker"}
    plan = typed.plan.model_copy(update={"values": ArmValues.model_validate(rankers)})
    await states.save(TYPED, StateWrite(rev=0, rollout=typed.model_copy(update={"plan": plan})))
    book = await sdk_book(base)
    assert book.state(TYPED) is not None

    def resolve() -> list[Any]:
        api.set_provider(OFREPProvider(base), "ofrep-typed")
        client = api.get_client("ofrep-typed")
        got: list[Any] = [
            client.get_string_details(TYPED, "none", EvaluationContext(f"unit-{i}"))
            for i in range(300)
        ]
        got.append(client.get_boolean_details(TYPED, True, EvaluationContext("unit-1")))
        return got

    try:
        *strings, boolean = await asyncio.to_thread(resolve)
    finally:
        api.clear_providers()
    for i, details in enumerate(strings):
        arm = assign(TYPED, f"salt-{TYPED}", f"unit-{i}", 40.0)
        want = rankers[arm.value]
        assert (details.value, details.variant, details.error_code) == (want, arm.value, None)
        assert book.value(TYPED, f"unit-{i}", "none") == want
    assert {d.value for d in strings} == {"v1-ranker", "v2-ranker"}
    assert (boolean.value, boolean.error_code) == (True, ErrorCode.TYPE_MISMATCH)

    # The bulk answer carries the value, and a change of the values alone changes its ETag
    url = f"{base}/ofrep/v1/evaluate/flags"
    body = {"context": {"targetingKey": "unit-1"}}
    async with httpx.AsyncClient() as client:
        first = await client.post(url, json=body)
        check("bulkEvaluationSuccess", first.json())
        flag = next(f for f in first.json()["flags"] if f["key"] == TYPED)
        assert flag["value"] == rankers[flag["variant"]]
        loaded = await states.load(TYPED)
        assert loaded.rollout is not None
        other = ArmValues.model_validate({**rankers, "treatment": "v3-ranker"})
        changed = loaded.rollout.plan.model_copy(update={"values": other})
        update = loaded.rollout.model_copy(update={"plan": changed})
        await states.save(TYPED, StateWrite(rev=loaded.rev, rollout=update))
        etag = first.headers["ETag"]

        async def moved() -> httpx.Response:
            answer = await client.post(url, json=body, headers={"If-None-Match": etag})
            assert answer.status_code == 200, answer.status_code
            return answer

        second = await eventually(moved, timeout=10, what="the new values to reach OFREP")
    assert second.headers["ETag"] != etag


@pytest.mark.parametrize(
    ("body", "status", "code", "reason"),
    [
        (b"{not json", 400, "PARSE_ERROR", "not JSON"),
        (b"[1, 2]", 400, "PARSE_ERROR", "JSON object"),
        (b'{"context": "u-1"}', 400, "INVALID_CONTEXT", "must be an object"),
        (b'{"context": {}}', 400, "TARGETING_KEY_MISSING", "no targeting key"),
        (b"{}", 400, "TARGETING_KEY_MISSING", "no targeting key"),
        (b'{"context": {"targetingKey": ""}}', 400, "TARGETING_KEY_MISSING", "no targeting"),
        (b'{"context": {"targetingKey": ["u"]}}', 400, "INVALID_CONTEXT", "must be a string"),
        (b'{"context": {"targetingKey": "\\ud800"}}', 400, "INVALID_CONTEXT", "not valid Unicode"),
        (b'{"context": {"targetingKey": "u", "n": "\\udfff"}}', 400, "INVALID_CONTEXT", "Unicode"),
        (b'{"context": {"targetingKey": "u", "n": 1e400}}', 400, "INVALID_CONTEXT", "double"),
        (b'{"context": {"targetingKey": "u", "n": [-1e309]}}', 400, "INVALID_CONTEXT", "double"),
        (
            b'{"context": {"targetingKey": "u", "n": 1' + b"0" * 400 + b"}}",
            400,
            "INVALID_CONTEXT",
            "double",
        ),
        (b'{"context": {"targetingKey": "u", "n": NaN}}', 400, "PARSE_ERROR", "not JSON"),
        (
            b'{"context": {"targetingKey": "u", "a": ' + b'{"b": ' * 20 + b"1" + b"}" * 21 + b"}",
            400,
            "INVALID_CONTEXT",
            f"deeper than {MAX_CONTEXT_DEPTH}",
        ),
        (
            b'{"context": {"targetingKey": "u", "a": ' + b"[" * 3000 + b"]" * 3000 + b"}}",
            400,
            "PARSE_ERROR",
            "not JSON",
        ),
        (
            b'{"context": {"targetingKey": "u", "a": [' + b"1," * 2000 + b"1]}}",
            400,
            "INVALID_CONTEXT",
            "more than 1000 values",
        ),
        (
            b'{"context": {"targetingKey": "u", "pad": "' + b"x" * MAX_BODY_BYTES + b'"}}',
            413,
            "GENERAL",
            f"over {MAX_BODY_BYTES} bytes",
        ),
    ],
)
async def test_hostile_input_is_refused_with_a_reason_and_the_server_goes_on(
    served: tuple[str, RolloutStore], body: bytes, status: int, code: str, reason: str
) -> None:
    base, _ = served
    url = f"{base}/ofrep/v1/evaluate/flags/{SPLIT}"
    headers = {"Content-Type": "application/json"}
    async with httpx.AsyncClient() as client:
        answer = await client.post(url, content=body, headers=headers)
        assert answer.status_code == status, answer.text
        assert answer.json()["errorCode"] == code
        assert reason in answer.json()["errorDetails"], answer.json()
        if status == 400:
            check("evaluationFailure", answer.json())
        # The same body, streamed without a length, is bounded the same way.
        streamed = await client.post(url, content=_chunks(body), headers=headers)
        assert streamed.status_code == status, streamed.text
        fine = await client.post(url, json={"context": {"targetingKey": "u"}})
        assert fine.status_code == 200


async def _chunks(body: bytes) -> AsyncIterator[bytes]:
    for start in range(0, len(body), 4096):
        yield body[start : start + 4096]


async def test_the_daemon_serves_ofrep(rig: Rig, tmp_path: Path) -> None:
    port = free_port()
    rig.env["RC_HTTP__PORT"] = str(port)
    rig.env["RC_HTTP__REQUIRE_APP_KEYS"] = (
        "false"  # keys: tests/scenarios/operators/test_app_keys.py
    )
    base = f"http://127.0.0.1:{port}"
    with rig.daemon(tmp_path):
        await wait_status(f"{base}/healthz", 200)
        configuration = await wait_status(f"{base}/ofrep/v1/configuration", 200)
        assert configuration.json()["name"] == "rollout-controller"
        async with httpx.AsyncClient() as client:
            unknown = await client.post(
                f"{base}/ofrep/v1/evaluate/flags/nope", json={"context": {"targetingKey": "u"}}
            )
            bulk = await client.post(
                f"{base}/ofrep/v1/evaluate/flags", json={"context": {"targetingKey": "u"}}
            )
            [announced] = bulk.json()["eventStreams"]
            async with sse(client, base + announced["endpoint"]["requestUri"]) as stream:
                assert stream.response.status_code == 200
                assert (await stream.next()).kind == "retry"
    assert (unknown.status_code, unknown.json()["errorCode"]) == (404, "FLAG_NOT_FOUND")
    assert (bulk.status_code, bulk.json()["flags"]) == (200, [])


@pytest.mark.parametrize(
    ("phase", "version", "reason"),
    [
        pytest.param(Phase.PENDING, 0, None, id="scheduled-never-served"),
        pytest.param(Phase.PENDING, 4, "DISABLED", id="scheduled-after-a-kill"),
        pytest.param(Phase.ABORTED, 1, "DISABLED", id="scheduled-then-cancelled"),
        pytest.param(Phase.RUNNING, 3, "SPLIT", id="running"),
    ],
)
async def test_flags_and_ofrep_agree_on_a_scheduled_flag(
    redis_url: str, redis_namespace: str, phase: Phase, version: int, reason: str | None
) -> None:
    """A flag with no published state yet is unknown to both; one served before serves control."""
    flag = "ofrep.scheduled"
    async with connect(RedisSettings(url=redis_url)) as redis:
        states = await store(
            redis, redis_namespace, [flag_rollout(flag, 20.0, phase=phase, version=version)]
        )
        async with ofrep_server(states) as base, httpx.AsyncClient() as client:
            listed = {s["flag"]: s for s in (await client.get(f"{base}/flags")).json()}
            body = {"context": {"targetingKey": "u-1"}}
            url = f"{base}/ofrep/v1/evaluate/flags"
            one = await client.post(f"{url}/{flag}", json=body)
            bulk = {f["key"]: f for f in (await client.post(url, json=body)).json()["flags"]}
    if reason is None:
        assert (flag in listed, one.status_code, flag in bulk) == (False, 404, False)
        assert one.json()["errorCode"] == "FLAG_NOT_FOUND"
        return
    assert (listed[flag]["version"], one.status_code) == (version, 200)
    assert one.json()["reason"] == bulk[flag]["reason"] == reason


@pytest.mark.parametrize(
    ("unit", "variant", "reason"),
    [
        ("vip-1", "treatment", Reason.TARGETING_MATCH),
        ("vip-22", "treatment", Reason.TARGETING_MATCH),
        ("someone", "control", Reason.TARGETING_MATCH),
        ("VIP-1", "control", Reason.TARGETING_MATCH),
    ],
)
async def test_a_rule_on_the_targeting_key_matches_through_the_ofrep_provider(
    redis_url: str, redis_namespace: str, unit: str, variant: str, reason: Reason
) -> None:
    flag = "ofrep.vip"
    rule = parse_rule('targetingKey starts_with "vip-"')
    targeted = flag_rollout(flag, 100.0)
    stages = [
        targeted.plan.stages[0].model_copy(update={"audience": rule}),
        *targeted.plan.stages[1:],
    ]
    plan = targeted.plan.model_copy(update={"stages": stages})
    assert plan.targeted
    async with connect(RedisSettings(url=redis_url)) as redis:
        states = await store(redis, redis_namespace, [targeted.model_copy(update={"plan": plan})])
        async with ofrep_server(states) as base:

            def resolve() -> Any:
                api.set_provider(OFREPProvider(base), "ofrep-vip")
                client = api.get_client("ofrep-vip")
                return client.get_boolean_details(flag, False, EvaluationContext(unit))

            try:
                details = await asyncio.to_thread(resolve)
            finally:
                api.clear_providers()
    assert details.error_code is None, details.error_message
    assert (details.variant, details.reason) == (variant, reason)


DEADLINE_DOCS = ROOT / "docs" / "clients.md"
DEADLINE_SCRIPT = """\
import { createRequire } from "node:module";
const require = createRequire(process.env.OFREP_NODE_HOME + "/package.json");
const { OpenFeature } = require("@openfeature/server-sdk");
const { OFREPProvider } = require("@openfeature/ofrep-provider");
const provider = %s
await OpenFeature.setProviderAndWait(provider);
const started = Date.now();
const got = await OpenFeature.getClient().getBooleanDetails("any", false, { targetingKey: "u" });
console.log(JSON.stringify({ ms: Date.now() - started, value: got.value, reason: got.reason }));
process.exit(0);
"""


def documented_deadline() -> str:
    """The Node provider as docs/clients.md makes it, with a deadline on each evaluation."""
    text = DEADLINE_DOCS.read_text()
    after = text.index("**Give each evaluation a deadline.**")
    start = text.index("```js\n", after) + len("```js\n")
    return text[start : text.index("```", start)].strip()


async def test_the_documented_deadline_ends_an_evaluation_a_silent_controller_holds(
    node: str, ofrep_node: Path, tmp_path: Path
) -> None:
    # Given a controller that takes connections and never answers (frozen, or its loop held)
    held: list[asyncio.StreamWriter] = []

    async def silent(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    provider = documented_deadline().replace("http://controller:8000", f"http://127.0.0.1:{port}")
    given = re.search(r"AbortSignal\.timeout\((\d+)\)", provider)
    assert given is not None, provider
    deadline_ms = int(given[1])
    script = tmp_path / "deadline.mjs"
    script.write_text(DEADLINE_SCRIPT % provider)
    try:
        # When an app with the provider docs/clients.md gives evaluates a flag
        done = await asyncio.to_thread(
            subprocess.run,
            [node, str(script)],
            capture_output=True,
            text=True,
            timeout=120,
            env={"OFREP_NODE_HOME": str(ofrep_node), "PATH": str(Path(node).parent)},
            check=False,
        )
    finally:
        server.close()
        for writer in held:
            writer.close()
    # Then its deadline ended the wait: the default value, reason ERROR, once the deadline
    # passed (Node's own fetch would wait 300 s for the answer's headers)
    assert done.returncode == 0, done.stderr[-2000:]
    got = json.loads(done.stdout.strip().splitlines()[-1])
    assert (got["value"], got["reason"]) == (False, "ERROR"), got
    assert deadline_ms * 0.9 <= got["ms"] < deadline_ms + 60_000, (got, deadline_ms)
    assert held, "the provider never reached the silent controller"
