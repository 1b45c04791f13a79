"""Exercise 00 · a counter that remembers: a solution (for instructors).

It passes every scenario of ``check_counter`` (tests/test_exercises.py); other
correct answers exist. scripts/build_lessons.py puts it into
course/solutions/00_tour_solutions.ipynb.
"""

from durable_lab import DurableObject
from durable_lab.exercises import check_counter


class MyCounter(DurableObject):
    async def increment(self, by=1):
        n = (await self.ctx.storage.get("n")) or 0    # a read: the input gate stays closed
        self.ctx.storage.put("n", n + by)             # no await needed; committed after the turn
        return n + by                                 # the reply waits for that commit

    async def value(self):
        return (await self.ctx.storage.get("n")) or 0


if __name__ == "__main__":
    import asyncio

    print(asyncio.run(check_counter(MyCounter)))
