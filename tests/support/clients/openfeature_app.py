"""An app process that evaluates a flag through OpenFeature, driven over stdin/stdout.

    python -m tests.support.clients.openfeature_app BOOTSTRAP FLAG_TOPIC EVENTS_TOPIC FLAG

One JSON command per line on stdin, one JSON answer per line on stdout:

- ``{"cmd": "eval", "version": V, "units": [...]}``: wait until the flag is at
  version V, evaluate every unit twice (the hook exposes each once), answer
  the variants and reasons;
- ``{"cmd": "measure", "units": [...]}``: evaluate each unit and report a
  measured step's outcome, every fifth one an error;
- ``{"cmd": "track", "units": [...], "value": X, "name": N}``: ``client.track`` each
  unit, the event named ``N`` (default ``purchase``; ``"names"``, one per unit, names
  each apart), with the value ``X`` when not null;
- ``{"cmd": "close"}``: flush, answer the emitter's counters and exit.
"""

from __future__ import annotations

import sys
from typing import Any

import orjson
from openfeature import api
from openfeature.client import OpenFeatureClient
from openfeature.evaluation_context import EvaluationContext
from openfeature.track import TrackingEventDetails

from controller.sdk.openfeature import RolloutProvider
from controller.sdk.sync import SyncFlags
from controller.settings import KafkaSettings
from tests.support.waiting import eventually_sync


def _evaluate(
    flags: SyncFlags, client: OpenFeatureClient, flag: str, command: dict[str, Any]
) -> dict[str, Any]:
    def read() -> bool:
        state = flags.state(flag)
        version = state.version if state else None
        assert version == command["version"], f"flag still at {version}"
        return True

    try:
        eventually_sync(read, timeout=30, what=f"version {command['version']} of {flag}")
    except AssertionError as exc:
        return {"error": str(exc)}
    variants: list[str | None] = []
    reasons: set[str] = set()
    for _ in range(2):
        variants = []
        for unit in command["units"]:
            details = client.get_boolean_details(flag, False, EvaluationContext(unit))
            variants.append(details.variant)
            reasons.add(str(details.reason))
    return {"variants": variants, "reasons": sorted(reasons)}


def _measure(client: OpenFeatureClient, flag: str, units: list[str]) -> dict[str, Any]:
    """Evaluate and run a measured step per unit; every fifth step raises."""
    provider = client.provider
    assert isinstance(provider, RolloutProvider)
    failed = 0
    for i, unit in enumerate(units):
        details = client.get_boolean_details(flag, False, EvaluationContext(unit))
        try:
            with provider.measure(details, unit):
                if i % 5 == 0:
                    raise RuntimeError("the step failed")
        except RuntimeError:
            failed += 1
    return {"measured": len(units), "failed": failed}


def main() -> None:
    bootstrap, flag_topic, events_topic, flag = sys.argv[1:5]
    flags = SyncFlags(
        KafkaSettings(bootstrap_servers=bootstrap),
        flag_topic=flag_topic,
        events_topic=events_topic,
        max_buffered=100_000,
    )
    api.set_provider_and_wait(RolloutProvider(flags, ready_timeout=30))
    client = api.get_client()
    print(orjson.dumps({"ready": True}).decode(), flush=True)
    for line in sys.stdin:
        command = orjson.loads(line)
        if command["cmd"] == "eval":
            answer = _evaluate(flags, client, flag, command)
        elif command["cmd"] == "measure":
            answer = _measure(client, flag, command["units"])
        elif command["cmd"] == "track":
            units = command["units"]
            names = command.get("names") or [command.get("name", "purchase")] * len(units)
            for unit, name in zip(units, names, strict=True):
                details = TrackingEventDetails(value=command.get("value"))
                client.track(name, EvaluationContext(unit), details)
            answer = {"tracked": len(command["units"])}
        else:
            flags.close()
            answer = {"sent": flags.sent, "dropped": sum(flags.dropped.values())}
        print(orjson.dumps(answer).decode(), flush=True)
        if command["cmd"] == "close":
            return


if __name__ == "__main__":
    main()
