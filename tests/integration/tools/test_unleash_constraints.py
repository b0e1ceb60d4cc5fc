"""Every translatable audience rule, written by the controller's adapter to a real Unleash,
read back unchanged, and served by the real ``UnleashClient`` as the rule says.

The offline conformance test (``tests/unit/core/rules/test_unleash_vectors.py``) bootstraps the
SDK from a dict; this one goes through ``unleash-server`` itself, which validates
each constraint (it refuses an empty value, a constraint on an undefined context
field) and hands the SDK what it stored.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr
from UnleashClient.clients.unleash_client import UnleashClient

from controller.adapters.unleash.client import UnleashAdmin
from controller.core.common.errors import ConfigError
from controller.core.rules.audience import AudienceRule
from controller.core.rules.unleash_rules import RingStrategy, rule_terms
from controller.core.serving.rings import shape_of
from controller.core.serving.serving import Serving, Target
from controller.dev.unleash import UnleashServer
from controller.settings import UnleashSettings
from tests.support.waiting import eventually
from tests.unit.core.rules.test_unleash_vectors import _readable, held_segments
from tests.vectors import audience_generate

pytestmark = [pytest.mark.integration, pytest.mark.slow]
TARGETING = "[null, []]"
SEGMENTS = held_segments(audience_generate.PATH)
"""The vectors' segments, written inline as the sync writes them."""


def _rules() -> tuple[dict[str, AudienceRule], list[tuple[str, dict[str, Any], bool]]]:
    """Each translatable rule once (by feature name), and the vectors to check against them."""
    data = json.loads(audience_generate.PATH.read_text(encoding="utf-8"))
    suffix = uuid.uuid4().hex[:6]
    features: dict[str, str] = {}
    rules: dict[str, AudienceRule] = {}
    checks: list[tuple[str, dict[str, Any], bool]] = []
    for vector in data["vectors"]:
        rule = AudienceRule.model_validate(vector["rule"])
        try:
            rule_terms(rule, SEGMENTS)
        except ConfigError:
            continue
        key = rule.to_json()
        name = features.setdefault(key, f"rule-{len(features)}-{suffix}")
        rules[name] = rule
        if _readable([rule], vector["context"], SEGMENTS):
            checks.append((name, vector["context"], vector["match"]))
    return rules, checks


async def _write(admin: UnleashAdmin, target: Target, rule: AudienceRule) -> Serving:
    specs = tuple(RingStrategy(0, 100, term) for term in rule_terms(rule, SEGMENTS))
    shape, parts = shape_of(specs, target.stickiness, TARGETING)
    want = Serving(
        enabled=True, version=1, shape=shape, specs=specs, parts=parts, targeting=TARGETING
    )
    await admin.write(target, want, Serving(enabled=False, exists=False), flag="vectors")
    return want


async def test_every_translatable_rule_round_trips_through_unleash_and_serves_alike(
    unleash_server: UnleashServer, tmp_path: Path
) -> None:
    rules, checks = _rules()
    settings = UnleashSettings(
        url=unleash_server.url,
        admin_token=SecretStr(unleash_server.admin_token),
        environment=unleash_server.environment,
    )
    slots = asyncio.Semaphore(8)
    async with UnleashAdmin(settings) as admin:

        async def one(name: str, rule: AudienceRule) -> None:
            target = Target(name, "default", unleash_server.environment, "default", targeted=True)
            async with slots:
                want = await _write(admin, target, rule)
                # Read back as written: the digest the drift check compares is unchanged
                back = await admin.read(target)
            assert back == want, (rule.to_json(), back, want)

        await asyncio.gather(*(one(name, rule) for name, rule in rules.items()))
    fetched: set[str] = set()

    def on_event(event: object) -> None:
        raw = getattr(event, "raw_features", None)
        if isinstance(raw, str):
            fetched.update(f["name"] for f in json.loads(raw)["features"] if f["enabled"])

    client = UnleashClient(
        url=f"{unleash_server.url}/api",
        app_name=f"vectors-{uuid.uuid4().hex[:6]}",
        environment=unleash_server.environment,
        custom_headers={"Authorization": unleash_server.client_token},
        refresh_interval=1,
        disable_metrics=True,
        disable_registration=True,
        cache_directory=str(tmp_path),
        event_callback=on_event,
    )
    client.initialize_client()
    try:
        await eventually(
            lambda: fetched >= set(rules), timeout=30, what="the SDK to fetch every feature, on"
        )
        wrong = [
            f"{rules[name].to_json()} on {context}: expected {match}"
            for name, context, match in checks
            if client.is_enabled(name, dict(context)) is not match
        ]
    finally:
        client.destroy()
    assert not wrong, f"{len(wrong)} of {len(checks)} differ:\n" + "\n".join(wrong[:30])
    assert len(checks) >= 300
