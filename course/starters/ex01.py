"""Exercise 01 · a counter without gates: the starter that lesson 01 ships.

Deliberately wrong or incomplete: tests/test_exercises.py proves that
``check_locked_counter`` fails it, with the hint the lesson promises.
scripts/build_lessons.py puts the code below the imports into the lesson.
"""

from durable_lab import DurableObject
from durable_lab.exercises import check_locked_counter


class LockedCounter(DurableObject):
    async def increment(self, by=1):
        n = (await self.ctx.storage.get("n")) or 0
        await self.ctx.storage.put("n", n + by)
        return n + by

    async def value(self):
        return (await self.ctx.storage.get("n")) or 0


if __name__ == "__main__":
    import asyncio

    print(asyncio.run(check_locked_counter(LockedCounter)))
