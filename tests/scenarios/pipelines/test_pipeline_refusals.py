"""Bad pipelines on the real daemon, broker and Redis: each is refused with the field or the
reason, as a decision an operator reads, and starts nothing.

The same cases are table-tested against the pipelines' part alone
(``tests/unit/daemon/rollouts/test_pipelines.py``); here they go the whole way, signed on the
commands topic, to the decisions topic.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from controller.core.trust import signing
from controller.core.wire import sent_object
from controller.ctl.operate.commands import signed_model
from tests.scenarios.harness import KEY_ID, Scenario
from tests.scenarios.pipelines.test_pipelines import PIPELINE, Release

pytestmark = [pytest.mark.integration, pytest.mark.slow]

BAD: dict[str, tuple[dict[str, Any], str]] = {
    # case: (pipeline, the reason contains)
    "an unknown environment": (
        {**PIPELINE, "steps": [{"environment": "dev"}, {"environment": "qa"}]},
        "steps.1.environment: unknown environment 'qa' (this controller serves dev, staging,"
        " production)",
    ),
    "a cycle": (
        {
            **PIPELINE,
            "steps": [{"environment": "dev"}, {"environment": "staging"}, {"environment": "dev"}],
        },
        "steps.2.environment: 'dev' already comes at steps.0; a pipeline visits each"
        " environment once",
    ),
    "an override for a missing environment": (
        {
            **PIPELINE,
            "overrides": {"staging": {"stages": [{"percent": 100}]}},
            "steps": [{"environment": "dev"}],
        },
        "overrides.staging: environment 'staging' is not in the pipeline (dev)",
    ),
}


async def test_bad_pipelines_and_a_late_approval_are_refused_with_the_reason(
    scenario: Scenario,
) -> None:
    # Given a controller serving dev, staging and production, and an approver's key
    approver = Ed25519PrivateKey.generate()
    keys = {
        KEY_ID: signing.public_key_text(scenario.key.public_key()),
        "ana": {"public_key": signing.public_key_text(approver.public_key()), "roles": ["ok"]},
    }
    book = {"roles": [{"name": "ok", "actions": ["approve"], "environments": ["*"]}]}
    release = Release(scenario)
    scenario.configure(
        RC_ENGINE__OPERATOR_KEYS=orjson.dumps(keys).decode(),
        RC_ENGINE__ROLES=orjson.dumps(book).decode(),
    )
    scenario.start_daemon()

    # When each bad pipeline is sent, then each is refused with its field, and starts nothing
    for case, (pipeline, reason) in BAD.items():
        flag = f"pipe-bad-{len(case)}"
        refused = await release.start(flag, pipeline)
        assert (refused["kind"], refused["outcome"]) == ("pipeline", "rejected"), case
        assert reason in refused["reason"], (case, refused["reason"])
        assert await scenario.rollout(f"{flag}@dev") is None, case
        assert await release.no_run(flag), case

    # Given a pipeline whose production step needs an approval, stopped at dev by a kill
    flag = "pipe-late"
    gated = {
        **PIPELINE,
        "steps": [
            {"environment": "dev"},
            {"environment": "production", "approval": {"needs": [{"role": "ok"}]}},
        ],
    }
    started = await release.start(flag, gated)
    assert started["outcome"] == "applied", started
    await scenario.until(
        lambda: scenario.rollout(f"{flag}@dev"), timeout=60, what="dev's rollout started"
    )
    kill = sent_object(
        signed_model(
            "kill", flag, private_key=scenario.key, key_id=KEY_ID, actor="tester", environment="dev"
        )
    )
    await scenario.send(kill, flag=flag)
    await scenario.until(
        lambda: scenario.observed.decision_where(flag=flag, action="pipeline_stop"),
        timeout=60,
        what="the pipeline stopping at dev",
    )
    # When the approver approves production afterwards
    late = sent_object(
        signed_model(
            "approve",
            flag,
            private_key=approver,
            key_id="ana",
            actor="ana",
            environment="production",
        )
    )
    answer = await scenario.decided(late, flag=flag, what="the late approval's decision")
    # Then it is refused with the reason, and production never starts
    assert answer["outcome"] == "rejected"
    assert answer["reason"] == "the pipeline stopped at dev: no step awaits an approval"
    assert await scenario.rollout(flag) is None
