"""Exercise 03 · no false acknowledgments: the starter that lesson 03 ships.

Deliberately wrong or incomplete: tests/test_exercises.py proves that
``check_ledger`` fails it, with the hint the lesson promises.
scripts/build_lessons.py puts the code below the imports into the lesson.
"""

from durable_lab import DurableObject
from durable_lab.exercises import check_ledger


class Ledger(DurableObject):
    async def deposit(self, amount):
        balance = (await self.ctx.storage.get("balance")) or 0
        # "allowUnconfirmed makes it faster" -- but what does the caller hear if the commit fails?
        self.ctx.storage.put("balance", balance + amount, allowUnconfirmed=True)
        return balance + amount

    async def balance(self):
        return (await self.ctx.storage.get("balance")) or 0


if __name__ == "__main__":
    import asyncio

    print(asyncio.run(check_ledger(Ledger)))
