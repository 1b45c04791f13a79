"""Exercise 04 · n writes, one commit: a solution (for instructors).

It passes every scenario of ``check_bulk_save`` (tests/test_exercises.py); other
correct answers exist. scripts/build_lessons.py puts it into
course/solutions/04_write_coalescing_solutions.ipynb.
"""

from durable_lab import DurableObject
from durable_lab.exercises import check_bulk_save


class Store(DurableObject):
    async def save_all(self, items):
        for key, value in items.items():
            self.ctx.storage.put(key, value)   # all in one turn: one batch, one commit
        return len(items)                      # the reply waits for that commit

    async def load_all(self):
        return dict(await self.ctx.storage.list())


if __name__ == "__main__":
    import asyncio

    print(asyncio.run(check_bulk_save(Store)))
