"""Who held each operator key when a command was signed, for ``rolloutctl audit export``.

A command names the key that signed it (``key_id``), not the person holding it.
The keys are settings; each reload publishes an ``operator_keys`` alert whose
details map every key to its holder as of then. The export reads those alerts
from the alerts topic's beginning to the span's end (whatever the types asked
for) and names each command's holder by the last alert before it, else by the
keys of the settings it runs with (today's), saying which.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from controller.core.common import ControllerError
from controller.core.release import read_key_record
from controller.core.trust import KeyHolders, holders_of_alert
from controller.ctl.terminal import warn
from controller.settings import KafkaSettings

START_TIMEOUT_S = 30.0


def current_holders(operator_keys: Mapping[str, str | Mapping[str, Any]]) -> dict[str, str]:
    """Each configured key's holder (the key itself where its record names none); a key
    whose record cannot be read is left out."""
    holders: dict[str, str] = {}
    for key_id, value in operator_keys.items():
        try:
            holders[key_id] = read_key_record(key_id, value).holder_of(key_id)
        except ControllerError:
            continue
    return holders


async def key_holders(
    kafka: KafkaSettings, alerts_topic: str, *, until_ms: int, current: Mapping[str, str]
) -> KeyHolders:
    """The holders ``operator_keys`` alerts before ``until_ms`` name, with today's; only
    today's (told on stderr) when the alerts cannot be read."""
    from controller.adapters.kafka import SpanReader  # noqa: PLC0415 - keep `--help` fast

    history: list[tuple[int, Mapping[str, str]]] = []
    reader = SpanReader(
        kafka, {alerts_topic: "alert"}, since_ms=0, until_ms=until_ms, timeout_s=START_TIMEOUT_S
    )
    try:
        async with reader:
            async for batch in reader.batches():
                history += [h for r in batch if (h := holders_of_alert(r)) is not None]
    except ControllerError as error:
        warn(f"key holders as of each command unknown ({error}); today's keys name them")
    history.sort(key=lambda item: item[0])
    return KeyHolders(current, tuple(history))
