"""Shared objects for the widgets tests: a counter class and recorded runs on a memory lab."""

from __future__ import annotations

import asyncio

import pytest

from durable_lab import DurableObject, Lab


class Counter(DurableObject):
    async def increment(self) -> int:
        n = (await self.ctx.storage.get("n")) or 0
        self.ctx.storage.put("n", n + 1)
        return n + 1

    async def write_many(self, count: int) -> int:
        for i in range(count):
            self.ctx.storage.put(f"item:{i}", i)
        return count

    async def value(self) -> int:
        return (await self.ctx.storage.get("n")) or 0


async def two_increments() -> list:
    """The docs/events.md worked example, recorded."""
    async with Lab(storage="memory", seed=1) as lab:
        stub = lab.bind("COUNTER", Counter).getByName("room-1")
        rec = lab.record()
        await asyncio.gather(stub.increment(), stub.increment())
        rec.close()
        return list(rec.events)


@pytest.fixture
async def lab():
    lab = Lab(storage="memory", seed=1)
    lab.bind("COUNTER", Counter)
    try:
        yield lab
    finally:
        await lab.close()
