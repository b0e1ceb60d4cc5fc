"""The demo's segments, put as an operator puts them: signed segment commands.

``staff`` is an id list and ``beta`` a rule (:data:`controller.demo.scenario.SEGMENTS`).
Each is sent as ``rolloutctl segment put`` sends it
(:func:`controller.ctl.operate.segments.commands_for`, signed: one command, or one per
part of a list, under the key ``segment:<name>``); the demo then waits until
its apps' client holds both, followed from the segments topic, before any
rollout starts, so the first ring has its members from the first request.
"""

from __future__ import annotations

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from controller.core.rules import SegmentLookup
from controller.core.trust import signing
from controller.ctl.operate import commands_for, send
from controller.demo.scenario import ACTOR, KEY_ID, SEGMENTS
from controller.sdk.segments import SegmentBook
from controller.settings import KafkaSettings

SEND_TIMEOUT_SECONDS = 30.0


async def put_segments(key: Ed25519PrivateKey, *, kafka: KafkaSettings, topic: str) -> None:
    """Send the signed commands that put every segment of the demo, in order."""
    for name, content in SEGMENTS.items():
        rule, ids = (content, None) if isinstance(content, str) else (None, list(content))
        unsigned = commands_for(
            name,
            action="put",
            actor=ACTOR,
            key_id=KEY_ID,
            reason="rollout-controller demo: a ring's audience",
            rule=rule,
            ids=ids,
        )
        commands = [signing.sign_command(command, key) for command in unsigned]
        await send(commands, kafka=kafka, topic=topic, timeout_s=SEND_TIMEOUT_SECONDS)


def missing(segments: SegmentLookup) -> list[str]:
    """The demo's segments that ``segments`` does not hold yet."""
    held = segments.version if isinstance(segments, SegmentBook) else lambda _name: None
    return [name for name in SEGMENTS if held(name) is None]
