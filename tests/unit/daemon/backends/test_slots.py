"""Slots for one dependency: bounded calls in flight, the most urgent waiter served first."""

from __future__ import annotations

import asyncio

import pytest

from controller.daemon.backends.slots import PrioritySlots


async def test_waiters_get_a_freed_slot_by_priority_then_in_arrival_order() -> None:
    slots, served = PrioritySlots(1), list[str]()
    held = asyncio.Event()

    async def call(name: str, priority: int) -> None:
        async with slots.slot(priority):
            served.append(name)
            if name == "slow":
                await held.wait()

    slow = asyncio.create_task(call("slow", 1))
    await asyncio.sleep(0)
    waiters = [asyncio.create_task(call(n, p)) for n, p in [("read", 1), ("sweep", 1), ("kill", 0)]]
    await asyncio.sleep(0)
    assert served == ["slow"]  # one slot: everyone else waits
    held.set()
    await asyncio.gather(slow, *waiters)
    assert served == ["slow", "kill", "read", "sweep"]
    assert slots.free == 1


async def test_a_cancelled_waiter_gives_up_its_place_not_a_slot() -> None:
    slots = PrioritySlots(1)
    async with slots.slot(1):
        gone = asyncio.create_task(slots._acquire(0))
        await asyncio.sleep(0)
        gone.cancel()
        with pytest.raises(asyncio.CancelledError):
            await gone
    assert slots.free == 1
    async with slots.slot(1):  # the slot is there for the next caller
        assert slots.free == 0


def test_there_is_at_least_one_slot() -> None:
    with pytest.raises(ValueError, match="at least one slot"):
        PrioritySlots(0)
