"""Exercise 06a · no head-of-line blocking: the starter that lesson 06 ships.

Deliberately wrong or incomplete: tests/test_exercises.py proves that
``check_profile`` fails it, with the hint the lesson promises.
scripts/build_lessons.py puts the code below the imports into the lesson.
"""

from durable_lab import DurableObject
from durable_lab.exercises import check_profile


class Profile(DurableObject):
    async def update(self, field, value):
        self.ctx.storage.put(f"field:{field}", value)

    async def get(self):
        rows = await self.ctx.storage.list(prefix="field:")
        return {key.removeprefix("field:"): value for key, value in rows.items()}

    async def export(self):
        async def snapshot_and_upload():        # "keep everyone out while we export, to be safe"
            snapshot = await self.get()
            await self.env.EXPORTER.getByName("x").upload(snapshot)
        await self.ctx.blockConcurrencyWhile(snapshot_and_upload)
        return "exported"


if __name__ == "__main__":
    import asyncio

    print(asyncio.run(check_profile(Profile)))
