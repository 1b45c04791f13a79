"""Exercise 04 · n writes, one commit: the starter that lesson 04 ships.

Deliberately wrong or incomplete: tests/test_exercises.py proves that
``check_bulk_save`` fails it, with the hint the lesson promises.
scripts/build_lessons.py puts the code below the imports into the lesson.
"""

from durable_lab import DurableObject
from durable_lab.exercises import check_bulk_save


class Store(DurableObject):
    async def save_all(self, items):
        for key, value in items.items():
            self.ctx.storage.put(key, value)
            await self.ctx.storage.sync()      # "make sure each one is saved"
        return len(items)

    async def load_all(self):
        return dict(await self.ctx.storage.list())


if __name__ == "__main__":
    import asyncio

    print(asyncio.run(check_bulk_save(Store)))
