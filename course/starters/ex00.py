"""Exercise 00 · a counter that remembers: the starter that lesson 00 ships.

Deliberately wrong or incomplete: tests/test_exercises.py proves that
``check_counter`` fails it, with the hint the lesson promises.
scripts/build_lessons.py puts the code below the imports into the lesson.
"""

from durable_lab import DurableObject
from durable_lab.exercises import check_counter


class MyCounter(DurableObject):
    def __init__(self, ctx, env):
        super().__init__(ctx, env)
        self.count = 0                      # <- lives in memory only

    async def increment(self, by=1):
        self.count += by
        return self.count

    async def value(self):
        return self.count


if __name__ == "__main__":
    import asyncio

    print(asyncio.run(check_counter(MyCounter)))
