"""Exercise 09 · the rate limiter: the starter that lesson 09 ships.

Deliberately wrong or incomplete: tests/test_exercises.py proves that
``check_rate_limiter`` fails it, with the hint the lesson promises.
scripts/build_lessons.py puts the code below the imports into the lesson.
"""

from durable_lab import DurableObject
from durable_lab.exercises import check_rate_limiter


class RateLimiter(DurableObject):
    LIMIT = 5          # calls ...
    WINDOW = 60        # ... per sliding 60 seconds

    def __init__(self, ctx, env):
        super().__init__(ctx, env)
        self.calls = 0

    async def allow(self):
        self.calls += 1
        return self.calls <= self.LIMIT


if __name__ == "__main__":
    import asyncio

    print(asyncio.run(check_rate_limiter(RateLimiter)))
