"""Exercise 07 · a leaderboard in SQL: a solution (for instructors).

It passes every scenario of ``check_leaderboard`` (tests/test_exercises.py); other
correct answers exist. scripts/build_lessons.py puts it into
course/solutions/07_sql_api_solutions.ipynb.
"""

from durable_lab import DurableObject
from durable_lab.exercises import check_leaderboard


class Leaderboard(DurableObject):
    def __init__(self, ctx, env):
        super().__init__(ctx, env)
        self.sql = ctx.storage.sql
        self.sql.exec("CREATE TABLE IF NOT EXISTS scores(player TEXT PRIMARY KEY, total INTEGER)")

    async def add_score(self, player, points):
        self.sql.exec(
            "INSERT INTO scores(player, total) VALUES (?, ?) "
            "ON CONFLICT(player) DO UPDATE SET total = total + excluded.total",
            player, points)
        return self.sql.exec("SELECT total FROM scores WHERE player = ?", player).one().total

    async def top(self, n):
        return self.sql.exec(
            "SELECT player, total FROM scores ORDER BY total DESC, player LIMIT ?", n).toArray()


if __name__ == "__main__":
    import asyncio

    print(asyncio.run(check_leaderboard(Leaderboard)))
