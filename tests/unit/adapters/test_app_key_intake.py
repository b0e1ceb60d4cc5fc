"""App-key commands on the commands topic: read apart from flag commands, bounded like them."""

from __future__ import annotations

import orjson

from controller.adapters.memory import MemoryDeadLetters, MemoryOutputs, MemoryStates
from controller.core.trust import signing
from controller.core.wire import JsonValue, sent_object
from controller.ctl.operate.app_keys import command_of
from tests.unit.daemon.rollouts.test_engine import KEY, ControlRecord, intake


def app_key_record(**changes: JsonValue) -> ControlRecord:
    made = command_of("create", "api", actor="ana", key_id="ops-1", secret="s", scopes=["events"])
    command = sent_object(made) | changes
    command["sig"] = signing.sign(command, KEY)
    return ControlRecord(orjson.dumps(command))


async def test_app_key_commands_need_the_key_store_and_break_no_flag_command() -> None:
    states, outputs, letters = MemoryStates(), MemoryOutputs(), MemoryDeadLetters()
    eng = intake(states, outputs, letters)
    await eng.commands.handle(app_key_record())  # an engine built without Redis keeps no keys
    await eng.commands.handle(app_key_record(scopes=["everything"]))
    await eng.commands.handle(app_key_record(flag="f"))  # a field of flag commands
    assert [(letter.reason, letter.detail[:20]) for letter in letters.letters] == [
        ("unsupported", "app keys are not kep"),
        ("schema_violation", letters.letters[1].detail[:20]),
        ("schema_violation", letters.letters[2].detail[:20]),
    ]
    assert "scopes" in letters.letters[1].detail
    assert outputs.sent == []
    assert states.docs == {}
