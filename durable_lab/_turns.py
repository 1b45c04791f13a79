"""Turns: running an object's coroutine one turn at a time, through its input gate.

In workerd, object code runs in *turns*: a turn starts when the input gate admits an event and
lasts until the code awaits something that is still pending. Awaiting something already finished
(a cache hit, a ``put()``) does not end the turn. Every continuation after a pending await must
come back in through the input gate, behind whatever queued meanwhile.

asyncio does not work that way by itself: a coroutine suspended on a timer is resumed by the
event loop whenever the timer fires, gate or no gate. So the runtime does not hand object
coroutines to asyncio. It *drives* them itself, the way ``asyncio.Task`` does internally, with one
difference: between two steps it goes back through the gate.

    lock = admitted by the gate
    loop:
        yielded = coro.send(None)          # one turn of object code
        finished?  -> release the gate, return the result
        yielded a storage read that holds the gate?  -> keep the lock, wait for it, go on
        yielded anything else pending?  -> release the gate (turn ended), wait for it,
                                           queue at the gate again, continue when admitted

``coro.send(None)`` after the awaited future is done makes the coroutine read the future's result
itself (``Future.__await__`` returns ``result()`` or raises), so exceptions flow exactly as under
asyncio. A bare ``yield`` (``asyncio.sleep(0)``) ends the turn too.

Limitation (documented in docs/semantics.md): tasks that object code creates itself
(``asyncio.create_task``, ``asyncio.gather`` of coroutines) run outside the driver, so their
continuations are not gated. Awaiting futures (storage reads, stub calls) inside ``gather`` is
fine: only coroutines are turned into tasks.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

from .clock import Sleep
from .events import DeliveryResumed, TurnEnded

if TYPE_CHECKING:
    from ._gates import InputGate, InputLock
    from ._host import CriticalSection, Instance

__all__ = ["Driver", "current_driver"]

#: The driver whose code is running now (None outside object code). Set once per delivery task.
current_driver: contextvars.ContextVar[Driver | None] = contextvars.ContextVar(
    "durable_lab_current_driver", default=None
)


class Driver:
    """Runs one delivery's (or one critical section's) code through one input gate."""

    __slots__ = ("delivery", "gate", "holder", "instance", "lock", "woken")

    def __init__(self, instance: Instance, gate: InputGate, delivery: int, holder: str) -> None:
        self.instance = instance
        self.gate = gate
        self.delivery = delivery
        self.holder = holder
        self.lock: InputLock | None = None
        #: The gate admission queued by a lab-clock sleep's wake-up (see _queue_on_wake).
        self.woken: asyncio.Future[InputLock] | None = None

    def release(self) -> None:
        lock, self.lock = self.lock, None
        if lock is not None and not lock.released:
            lock.release()

    async def drive(self, coro: Coroutine[Any, Any, Any]) -> Any:
        """Run ``coro`` to completion, turn by turn. ``self.lock`` must be held on entry."""
        instance = self.instance
        bus = instance.bus
        # The "serial" model: one delivery at a time from start to finish, like an actor with a
        # lock: the gate is kept across every await, not only storage reads.
        serial = instance.lab.model == "serial"
        error: BaseException | None = None
        try:
            while True:
                try:
                    if error is None:
                        yielded = coro.send(None)
                    else:
                        yielded, error = coro.throw(error), None
                except StopIteration as stop:
                    return stop.value

                if yielded is None:  # bare yield: asyncio.sleep(0)
                    self._end_turn("yield")
                    await asyncio.sleep(0)
                    await self._reenter()
                    continue

                if not getattr(yielded, "_asyncio_future_blocking", False):
                    error = RuntimeError(
                        f"object code yielded {yielded!r}, which is not an asyncio future: "
                        "only asyncio-compatible awaitables can be awaited in object code"
                    )
                    continue
                yielded._asyncio_future_blocking = False
                fut: asyncio.Future[Any] = yielded

                if serial or fut in instance.gate_holding_reads:
                    # A storage read: the turn is over but the gate stays locked until the
                    # code after the await has run (workerd awaitIoWithInputLock).
                    if bus.active:
                        bus.emit(TurnEnded, object=instance.label, object_id=instance.object_id,
                                 delivery=self.delivery,
                                 awaiting="storage" if fut in instance.gate_holding_reads
                                 else "io", gate_held=True)
                    await self._wait(fut)
                    continue

                section = instance.critical_sections.get(fut)
                if section is not None:
                    await self._await_critical_section(section, fut)
                    continue

                self._end_turn("io")
                if type(fut) is Sleep and not fut.done():
                    fut.on_wake = self._queue_on_wake
                await self._wait(fut)
                woken, self.woken = self.woken, None
                await self._reenter(woken)
        except BaseException:
            # Cancelled (the object was reset) or the code raised: the coroutine is finished
            # either way; close it so its finally blocks run now and not at garbage collection.
            if self.woken is not None and not self.woken.done():
                self.woken.cancel()  # the gate skips a cancelled waiter
            coro.close()
            raise
        finally:
            self.release()

    def _queue_on_wake(self) -> None:
        """The lab-clock sleep this code awaits just fired (inside ``lab.clock.advance()``).

        While the lab is paused, queue the continuation at the gate now rather than one loop
        pass later, so ``lab.choices()`` lists what ``lab.step()`` would take. Running freely,
        nothing changes: the continuation queues when the task wakes, as for any other I/O.
        """
        if self.instance.lab.scheduler.paused and self.instance.broken is None:
            self.woken = self.gate.wait(self.holder, kind="resume")

    def _end_turn(self, awaiting: str) -> None:
        self.release()
        bus = self.instance.bus
        if bus.active:
            bus.emit(TurnEnded, object=self.instance.label, object_id=self.instance.object_id,
                     delivery=self.delivery, awaiting=awaiting, gate_held=False)

    async def _reenter(self, admission: asyncio.Future[InputLock] | None = None) -> None:
        self.lock = (await (admission or self.gate.wait(self.holder, kind="resume"))).entered()
        bus = self.instance.bus
        if bus.active:
            bus.emit(DeliveryResumed, object=self.instance.label,
                     object_id=self.instance.object_id, delivery=self.delivery)

    async def _wait(self, fut: asyncio.Future[Any]) -> None:
        """Wait until ``fut`` is done without taking its outcome (the coroutine reads it)."""
        if fut.done():
            return
        # Our own waiter, so that cancelling this delivery never cancels the awaited future
        # (another delivery may be awaiting the same one).
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        fut.add_done_callback(lambda _: waiter.done() or waiter.set_result(None))
        await waiter

    async def _await_critical_section(self, section: CriticalSection, fut: asyncio.Future[Any]) -> None:
        """The code awaits the ``blockConcurrencyWhile`` it started.

        Its turn ends (so the critical section, first in the priority lane, starts), and when the
        section succeeds it hands the gate straight back to this code, ahead of every queued
        event (workerd ``CriticalSection::succeeded``).
        """
        section.awaited_by = self
        self._end_turn("blockConcurrencyWhile")
        await self._wait(fut)
        handback = section.handback
        await self._reenter(handback)
