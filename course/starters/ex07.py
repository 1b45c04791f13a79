"""Exercise 07 · a leaderboard in SQL: the starter that lesson 07 ships.

Deliberately wrong or incomplete: tests/test_exercises.py proves that
``check_leaderboard`` fails it, with the hint the lesson promises.
scripts/build_lessons.py puts the code below the imports into the lesson.
"""

from durable_lab import DurableObject
from durable_lab.exercises import check_leaderboard


class Leaderboard(DurableObject):
    def __init__(self, ctx, env):
        super().__init__(ctx, env)
        self.sql = ctx.storage.sql
        self.sql.exec("CREATE TABLE IF NOT EXISTS scores(player TEXT PRIMARY KEY, total INTEGER)")

    async def add_score(self, player, points):
        rows = self.sql.exec(f"SELECT total FROM scores WHERE player = '{player}'").toArray()
        total = (rows[0]["total"] if rows else 0) + points
        self.sql.exec(f"INSERT OR REPLACE INTO scores VALUES ('{player}', {total})")
        return total

    async def top(self, n):
        rows = self.sql.exec("SELECT player, total FROM scores").toArray()
        return rows[:n]


if __name__ == "__main__":
    import asyncio

    print(asyncio.run(check_leaderboard(Leaderboard)))
