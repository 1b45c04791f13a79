"""Exercise 02 · one seat, one payment: a solution (for instructors).

It passes every scenario of ``check_seat`` (tests/test_exercises.py); other
correct answers exist. scripts/build_lessons.py puts it into
course/solutions/02_input_gate_solutions.ipynb.
"""

from durable_lab import DurableObject
from durable_lab.exercises import check_seat


class Seat(DurableObject):
    async def claim(self, user):
        if await self.ctx.storage.get("owner") is not None:
            return False
        self.ctx.storage.put("owner", user)          # reserve first: read and write in one turn
        try:
            await self.env.PAYMENTS.getByName("bank").charge(user, 10)
        except Exception:
            self.ctx.storage.delete("owner")         # the payment failed: free the seat again
            raise
        return True

    async def owner(self):
        return await self.ctx.storage.get("owner")


if __name__ == "__main__":
    import asyncio

    print(asyncio.run(check_seat(Seat)))
