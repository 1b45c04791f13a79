"""Exercise 03 · no false acknowledgments: a solution (for instructors).

It passes every scenario of ``check_ledger`` (tests/test_exercises.py); other
correct answers exist. scripts/build_lessons.py puts it into
course/solutions/03_output_gate_solutions.ipynb.
"""

from durable_lab import DurableObject
from durable_lab.exercises import check_ledger


class Ledger(DurableObject):
    async def deposit(self, amount):
        balance = (await self.ctx.storage.get("balance")) or 0
        self.ctx.storage.put("balance", balance + amount)   # confirmed: the reply waits for it
        return balance + amount

    async def balance(self):
        return (await self.ctx.storage.get("balance")) or 0


if __name__ == "__main__":
    import asyncio

    print(asyncio.run(check_ledger(Ledger)))
