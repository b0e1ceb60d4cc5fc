"""Redis's CPU per event, by command: ``INFO commandstats`` and ``INFO cpu`` deltas.

Shared by the ingest benches. A script's own commands are counted twice by
Redis: under the script call (``evalsha`` holds everything the script did)
and under each command it ran. ``script`` is therefore the call less the
commands within it: the Lua interpreter's own work (unpacking the batch,
loops, building replies).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

SCRIPT_CALLS = ("evalsha", "eval", "fcall")


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Per-command ``(calls, usec)`` and the server's own CPU seconds, at one moment."""

    commands: dict[str, tuple[int, int]]
    cpu_seconds: float


async def snapshot(client: Any) -> Snapshot:
    """Read ``INFO commandstats`` and ``INFO cpu`` from ``client`` (a redis.asyncio client)."""
    stats = await client.info("commandstats")
    cpu = await client.info("cpu")
    commands = {
        name.removeprefix("cmdstat_").lower(): (int(v["calls"]), int(v["usec"]))
        for name, v in stats.items()
        if name.startswith("cmdstat_")
    }
    return Snapshot(commands, float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"]))


def per_event(before: Snapshot, after: Snapshot, events: int) -> dict[str, Any]:
    """Microseconds of Redis CPU per event between two snapshots, by command and in all.

    ``by_command`` is each command's usec over ``events`` (commands a script ran
    included; ``script`` is the script calls less those), ``commands_us`` their sum,
    and ``process_us`` the redis-server process's user + system CPU over ``events``.
    """
    delta: dict[str, tuple[int, int]] = {}
    for name, (calls, usec) in after.commands.items():
        was = before.commands.get(name, (0, 0))
        if calls > was[0]:
            delta[name] = (calls - was[0], usec - was[1])
    scripts = sum(usec for name, (_, usec) in delta.items() if name in SCRIPT_CALLS)
    inner = sum(usec for name, (_, usec) in delta.items() if name not in SCRIPT_CALLS)
    by_command = {
        name: round(usec / events, 3)
        for name, (_, usec) in sorted(delta.items(), key=lambda kv: -kv[1][1])
        if name not in SCRIPT_CALLS and usec / events >= 0.001
    }
    by_command["script"] = round(max(scripts - inner, 0) / events, 3)
    return {
        "commands_us": round(sum(by_command.values()), 3),
        "process_us": round((after.cpu_seconds - before.cpu_seconds) * 1e6 / events, 3),
        "by_command": by_command,
        "calls_per_1000_events": {
            name: round(calls * 1000 / events, 2)
            for name, (calls, _) in delta.items()
            if calls * 1000 / events >= 0.01
        },
    }
