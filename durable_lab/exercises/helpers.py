"""Ready-made objects the exercises bind next to the learner's class (and lessons use too).

They stand for the outside world: a payment service, an outbox, a slow exporter, chat rooms.
Each waits with ``durable_lab.sleep`` (lab time), so a lab on a manual or auto clock controls
how long they take.
"""

from __future__ import annotations

from .._turns import sleep
from ..objects import DurableObject

__all__ = ["Exporter", "Outbox", "Payments", "RoomLog"]


class Payments(DurableObject):
    """A payment service: ``charge(user, amount)`` takes ``DELAY`` seconds of lab time."""

    DELAY = 0.05

    async def charge(self, user: str, amount: int) -> bool:
        await sleep(self.DELAY)
        charges = (await self.ctx.storage.get("charges")) or []
        charges.append([user, amount])
        self.ctx.storage.put("charges", charges)
        return True

    async def charges(self) -> list[list[object]]:
        """Every charge so far, as ``[user, amount]`` pairs, in order."""
        return (await self.ctx.storage.get("charges")) or []


class Outbox(DurableObject):
    """Where a batcher sends its batches: ``deliver(items, batch_id=None)``.

    An idempotent receiver: a batch whose ``batch_id`` was seen before is acknowledged and
    ignored. Delivering takes ``DELAY`` seconds of lab time.
    """

    DELAY = 1.0

    async def deliver(self, items: list[object], batch_id: object = None) -> str:
        await sleep(self.DELAY)
        log = (await self.ctx.storage.get("log")) or []
        seen = {repr(entry[0]) for entry in log if entry[0] is not None}
        if batch_id is not None and repr(batch_id) in seen:
            ignored = (await self.ctx.storage.get("duplicates")) or 0
            self.ctx.storage.put("duplicates", ignored + 1)
            return "duplicate ignored"
        log.append([batch_id, list(items)])
        self.ctx.storage.put("log", log)
        return "ok"

    async def batches(self) -> list[list[object]]:
        """Every batch accepted, as ``[batch_id, items]``, in order."""
        return (await self.ctx.storage.get("log")) or []

    async def duplicates(self) -> int:
        """How many re-sent batches were recognised by their batch_id and ignored."""
        return (await self.ctx.storage.get("duplicates")) or 0


class Exporter(DurableObject):
    """A slow external service: ``upload(snapshot)`` takes ``DELAY`` seconds of lab time."""

    DELAY = 5.0

    async def upload(self, snapshot: dict[str, object]) -> str:
        await sleep(self.DELAY)
        uploads = (await self.ctx.storage.get("uploads")) or []
        uploads.append(snapshot)
        self.ctx.storage.put("uploads", uploads)
        return "uploaded"

    async def uploads(self) -> list[dict[str, object]]:
        return (await self.ctx.storage.get("uploads")) or []


class RoomLog(DurableObject):
    """A chat room's messages: ``post(user, text)`` and ``messages()``."""

    async def post(self, user: str, text: str) -> int:
        count = (await self.ctx.storage.get("count")) or 0
        self.ctx.storage.put(f"msg:{count:06}", [user, text])
        self.ctx.storage.put("count", count + 1)
        return count + 1

    async def messages(self) -> list[list[str]]:
        rows = await self.ctx.storage.list(prefix="msg:")
        return list(rows.values())
