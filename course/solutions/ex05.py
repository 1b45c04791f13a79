"""Exercise 05 · a batcher on an alarm: a solution (for instructors).

It passes every scenario of ``check_batcher`` (tests/test_exercises.py); other
correct answers exist. scripts/build_lessons.py puts it into
course/solutions/05_alarms_lifecycle_solutions.ipynb.
"""

import durable_lab
from durable_lab import DurableObject
from durable_lab.exercises import check_batcher


class Batcher(DurableObject):
    async def add(self, item):
        seq = (await self.ctx.storage.get("seq")) or 0
        self.ctx.storage.put("seq", seq + 1)
        self.ctx.storage.put(f"item:{seq:06}", item)           # one key per item
        if await self.ctx.storage.getAlarm() is None:          # ONE alarm: set it only once
            self.ctx.storage.setAlarm(durable_lab.now() * 1000 + 10_000)
        return seq + 1

    async def alarm(self, alarm_info):
        inflight = await self.ctx.storage.get("inflight")
        if inflight is None:                                   # a new batch (not a retry)
            items = await self.ctx.storage.list(prefix="item:", limit=100)
            if not items:
                return
            batch = (await self.ctx.storage.get("batch")) or 1
            inflight = {"id": batch, "keys": list(items), "items": list(items.values())}
            self.ctx.storage.put("inflight", inflight)         # stored before the send
            self.ctx.storage.put("batch", batch + 1)
        # The same batch_id on a retry: the outbox drops the duplicate (idempotent send).
        await self.env.OUTBOX.getByName("outbox").deliver(inflight["items"],
                                                          batch_id=inflight["id"])
        self.ctx.storage.delete(inflight["keys"])              # only what was sent
        self.ctx.storage.delete("inflight")
        rest = await self.ctx.storage.list(prefix="item:", limit=1)
        if rest and await self.ctx.storage.getAlarm() is None:  # items added during the send
            self.ctx.storage.setAlarm(durable_lab.now() * 1000 + 10_000)


if __name__ == "__main__":
    import asyncio

    print(asyncio.run(check_batcher(Batcher)))
