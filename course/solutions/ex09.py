"""Exercise 09 · the rate limiter: a solution (for instructors).

It passes every scenario of ``check_rate_limiter`` (tests/test_exercises.py); other
correct answers exist. scripts/build_lessons.py puts it into
course/solutions/09_capstone_solutions.ipynb.
"""

import durable_lab
from durable_lab import DurableObject
from durable_lab.exercises import check_rate_limiter


class RateLimiter(DurableObject):
    LIMIT = 5
    WINDOW = 60

    async def allow(self):
        now = durable_lab.now()                          # lab time (on Cloudflare: time.time())
        times = (await self.ctx.storage.get("times")) or []
        recent = [t for t in times if t > now - self.WINDOW]   # drop what left the window
        allowed = len(recent) < self.LIMIT
        if allowed:
            recent.append(now)
        if recent != times:
            self.ctx.storage.put("times", recent)        # confirmed: True is durable when sent
        return allowed


if __name__ == "__main__":
    import asyncio

    print(asyncio.run(check_rate_limiter(RateLimiter)))
