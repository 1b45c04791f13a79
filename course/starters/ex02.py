"""Exercise 02 · one seat, one payment: the starter that lesson 02 ships.

Deliberately wrong or incomplete: tests/test_exercises.py proves that
``check_seat`` fails it, with the hint the lesson promises.
scripts/build_lessons.py puts the code below the imports into the lesson.
"""

from durable_lab import DurableObject
from durable_lab.exercises import check_seat


class Seat(DurableObject):
    async def claim(self, user):
        owner = await self.ctx.storage.get("owner")
        if owner is not None:
            return False
        # Awaiting another object: the input gate opens.
        await self.env.PAYMENTS.getByName("bank").charge(user, 10)
        self.ctx.storage.put("owner", user)
        return True

    async def owner(self):
        return await self.ctx.storage.get("owner")


if __name__ == "__main__":
    import asyncio

    print(asyncio.run(check_seat(Seat)))
