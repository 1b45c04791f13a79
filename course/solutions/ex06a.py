"""Exercise 06a · no head-of-line blocking: a solution (for instructors).

It passes every scenario of ``check_profile`` (tests/test_exercises.py); other
correct answers exist. scripts/build_lessons.py puts it into
course/solutions/06_contention_sharding_solutions.ipynb.
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
        snapshot = await self.get()          # one read: a consistent snapshot, gate closed
        await self.env.EXPORTER.getByName("x").upload(snapshot)   # slow: the gate is open
        return "exported"


if __name__ == "__main__":
    import asyncio

    print(asyncio.run(check_profile(Profile)))
