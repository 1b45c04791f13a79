"""Durable Object classes the explore tests share (tests/test_explore*.py, the explore panels).

Small counters whose schedules the explorer enumerates: each test module adds the classes only
it needs.
"""

from __future__ import annotations

import durable_lab
from durable_lab import DurableObject


class Counter(DurableObject):
    """Read, write: within one turn, so the input gate keeps every update."""

    async def increment(self):
        n = (await self.ctx.storage.get("n")) or 0
        self.ctx.storage.put("n", n + 1)
        return n + 1


class SlowCounter(DurableObject):
    """Read, a timer, write: the gate opens at the timer, updates can be lost."""

    async def increment(self):
        n = (await self.ctx.storage.get("n")) or 0
        await durable_lab.sleep(1)
        self.ctx.storage.put("n", n + 1)
        return n + 1


class FieldCounter(DurableObject):
    """Keeps the count in a field, writes it through, never reads it back: an eviction
    forgets it. Code steps of one object share the field, so they never commute."""

    def __init__(self, ctx, env):
        super().__init__(ctx, env)
        self.n = 0

    async def increment(self):
        self.n += 1
        self.ctx.storage.put("n", self.n)
        return self.n

    async def peek(self):
        return self.n
