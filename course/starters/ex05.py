"""Exercise 05 · a batcher on an alarm: the starter that lesson 05 ships.

Deliberately wrong or incomplete: tests/test_exercises.py proves that
``check_batcher`` fails it, with the hint the lesson promises.
scripts/build_lessons.py puts the code below the imports into the lesson.
"""

import durable_lab
from durable_lab import DurableObject
from durable_lab.exercises import check_batcher


class Batcher(DurableObject):
    async def add(self, item):
        pending = (await self.ctx.storage.get("pending")) or []
        pending.append(item)
        self.ctx.storage.put("pending", pending)
        self.ctx.storage.setAlarm(durable_lab.now() * 1000 + 10_000)    # 10 s from now
        return len(pending)

    async def alarm(self, alarm_info):
        pending = (await self.ctx.storage.get("pending")) or []
        if not pending:
            return
        self.ctx.storage.delete("pending")
        await self.env.OUTBOX.getByName("outbox").deliver(pending)


if __name__ == "__main__":
    import asyncio

    print(asyncio.run(check_batcher(Batcher)))
