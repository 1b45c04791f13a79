"""Exercise 01 · a counter without gates: a solution (for instructors).

It passes every scenario of ``check_locked_counter`` (tests/test_exercises.py); other
correct answers exist. scripts/build_lessons.py puts it into
course/solutions/01_ownership_ids_stubs_solutions.ipynb.
"""

import asyncio

from durable_lab import DurableObject
from durable_lab.exercises import check_locked_counter


class LockedCounter(DurableObject):
    def __init__(self, ctx, env):
        super().__init__(ctx, env)
        self.lock = asyncio.Lock()      # one lock per object: every call for this id comes here

    async def increment(self, by=1):
        async with self.lock:           # what the input gate does for you under model="gates"
            n = (await self.ctx.storage.get("n")) or 0
            await self.ctx.storage.put("n", n + by)   # without gates, wait for the write
            return n + by

    async def value(self):
        return (await self.ctx.storage.get("n")) or 0


if __name__ == "__main__":
    import asyncio

    print(asyncio.run(check_locked_counter(LockedCounter)))
