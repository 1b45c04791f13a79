"""The input gate and the output gate: the two rules that make a Durable Object easy to reason about.

**Input gate** (workerd ``src/workerd/io/io-gate.h``, ``InputGate``). While locked, it keeps every
other event out of the object: new requests, and the continuations of requests that were waiting
for I/O. It is locked for every turn (code running between two awaits of pending things) and
stays locked while a storage read is in flight, so "read, then write" cannot be interleaved.
When its holder releases it, exactly one waiter is admitted (the gate locks again at once):
critical sections first, then everything else in arrival order. That is why queued deliveries
run strictly one at a time, in order.

Here a holder owns an :class:`InputLock`; ``lock.release()`` admits the next waiter. Unlike
workerd's ref-counted locks, a lock has one owner: a storage read simply keeps its delivery's lock
instead of adding a reference. A *critical section* (``blockConcurrencyWhile``) holds its parent
gate for as long as it runs and admits its own work through a child gate of its own; see
``_host.py``.

**Output gate** (workerd ``OutputGate``). Every reply and every outgoing message waits until the
writes made *before* it are durable. ``lock_while(commit)`` registers a pending commit;
``wait()`` gives a future that resolves once every commit registered before the call has
resolved, and fails if one of them failed (then the message is never sent: the caller sees an
error instead of a false acknowledgement). Commits here resolve in the order they were
registered (one flush at a time), so waiting for the newest pending commit is waiting for all.
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .events import InputGateLocked, InputGateUnlocked

if TYPE_CHECKING:
    from .bus import EventBus
    from .scheduler import Scheduler

__all__ = ["InputGate", "InputGateStatistics", "InputLock", "OutputGate", "OutputGateStatistics"]


@dataclass(frozen=True, slots=True)
class InputGateStatistics:
    locked: bool
    holder: str
    waiting: int  # deliveries and continuations queued, critical sections included
    broken: bool


@dataclass(frozen=True, slots=True)
class OutputGateStatistics:
    pending_commits: int
    broken: bool


class _Waiter:
    """One holder queued at a gate: ``kind`` is admit, resume, critical section or constructor."""

    __slots__ = ("future", "holder", "kind", "seq")

    def __init__(self, future: asyncio.Future[InputLock], holder: str, kind: str, seq: int) -> None:
        self.future = future
        self.holder = holder
        self.kind = kind
        self.seq = seq

    def __repr__(self) -> str:
        return f"<waiter {self.holder} ({self.kind})>"


class InputLock:
    """Admission through an :class:`InputGate`. Exactly one exists per gate at a time."""

    __slots__ = ("gate", "holder", "kind", "released")

    def __init__(self, gate: InputGate, holder: str, kind: str = "admit") -> None:
        self.gate = gate
        self.holder = holder
        self.kind = kind
        self.released = False

    def entered(self) -> InputLock:
        """Called when the admitted code actually starts running: a recorded transition.

        (Recorded here and not at the grant, because code runs one loop iteration after its
        grant, and a replay must reproduce the order in which things took effect.)
        """
        scheduler = self.gate._scheduler
        if scheduler is not None and scheduler.recording:
            scheduler.record(self.kind, self.gate.label, self.holder)
        return self

    def release(self) -> None:
        """Give the gate up; the next waiter (if any) is admitted."""
        if self.released:
            raise RuntimeError("can't release an InputLock twice")
        self.released = True
        self.gate._release(self)

    def __repr__(self) -> str:
        state = "released" if self.released else "held"
        return f"<InputLock {state} by {self.holder}>"


class InputGate:
    """A FIFO admission gate with a priority lane for critical sections."""

    def __init__(self, bus: EventBus, label: str, object_id: str, depth: int = 0,
                 *, enabled: bool = True, scheduler: Scheduler | None = None) -> None:
        self._bus = bus
        #: The lab's scheduler: while it is paused, the gate admits nobody on its own; the
        #: learner (``lab.step()``/``lab.choose()``) picks who goes next.
        self._scheduler = scheduler
        if scheduler is not None:
            scheduler.register_gate(self)
        #: False under the "none" concurrency model: everyone is admitted at once, no order.
        self.enabled = enabled
        self._label = label
        self._object_id = object_id
        self.depth = depth
        self._lock: InputLock | None = None
        self._waiters: deque[_Waiter] = deque()
        self._priority: deque[_Waiter] = deque()
        self._arrivals = 0
        self._broken: BaseException | None = None

    @property
    def is_locked(self) -> bool:
        return self._lock is not None

    @property
    def is_broken(self) -> bool:
        return self._broken is not None

    def statistics(self) -> InputGateStatistics:
        return InputGateStatistics(
            locked=self._lock is not None,
            holder=self._lock.holder if self._lock else "",
            waiting=len(self._waiters) + len(self._priority),
            broken=self._broken is not None,
        )

    def __repr__(self) -> str:
        state = f"locked by {self._lock.holder}" if self._lock else "open"
        return f"<InputGate {self._label} {state}, {len(self._waiters) + len(self._priority)} waiting>"

    @property
    def label(self) -> str:
        return self._label

    @property
    def object_id(self) -> str:
        return self._object_id

    def wait(self, holder: str, *, priority: bool = False, front: bool = False,
             kind: str = "admit") -> asyncio.Future[InputLock]:
        """Queue ``holder`` for admission. The returned future resolves with its lock.

        Called synchronously, so arrival order is call order. If the gate is open and nobody
        waits, the future is already resolved. ``priority`` puts the holder in the critical
        section lane; ``front`` (with priority) puts it first in that lane, which is how a
        finished critical section hands the gate back to the code that started it.
        """
        fut: asyncio.Future[InputLock] = asyncio.get_running_loop().create_future()
        if self._broken is not None:
            fut.set_exception(self._broken)
            return fut
        if not self.enabled:
            fut.set_result(InputLock(self, holder, kind))  # no gate: admitted at once, never exclusive
            return fut
        scheduler = self._scheduler
        if scheduler is not None:
            seq = scheduler.next_seq()
        else:
            self._arrivals += 1
            seq = self._arrivals
        waiter = _Waiter(fut, holder, kind, seq)
        if (self._lock is None and not self._waiters and not self._priority
                and (scheduler is None or not scheduler.holds_admission(self, waiter))):
            self._grant(fut, holder, kind)
            return fut
        lane = self._priority if priority else self._waiters
        if front:
            lane.appendleft(waiter)
        else:
            lane.append(waiter)
        return fut

    def _grant(self, fut: asyncio.Future[InputLock], holder: str, kind: str = "admit") -> None:
        lock = InputLock(self, holder, kind)
        self._lock = lock
        fut.set_result(lock)
        if self._bus.active:
            self._bus.emit(
                InputGateLocked, object=self._label, object_id=self._object_id, holder=holder,
                waiting=len(self._waiters) + len(self._priority), depth=self.depth,
            )

    def _release(self, lock: InputLock) -> None:
        if self._lock is not lock:
            # A lock from before the gate broke, released during cleanup: nothing to do.
            return
        self._lock = None
        if self._bus.active:
            self._bus.emit(
                InputGateUnlocked, object=self._label, object_id=self._object_id,
                holder=lock.holder, waiting=len(self._waiters) + len(self._priority),
                depth=self.depth,
            )
        self._admit_next()

    def _admit_next(self) -> None:
        scheduler = self._scheduler
        while self._lock is None and self._broken is None:
            lane = self._priority if self._priority else self._waiters
            if not lane:
                return
            waiter = lane[0]
            if waiter.future.cancelled():  # a waiter whose caller gave up is skipped
                lane.popleft()
                continue
            if scheduler is not None and scheduler.holds_admission(self, waiter):
                return  # paused: the learner chooses who goes next
            lane.popleft()
            self._grant(waiter.future, waiter.holder, waiter.kind)

    def waiting(self) -> list[_Waiter]:
        """Who the gate's rules allow to be admitted now (empty while locked or broken).

        Critical sections (and the code a finished one hands the gate back to) come first,
        one at a time; the constructor comes before any delivery; the other waiters may go in
        any order (that is the choice a paused lab offers the learner).
        """
        if self._lock is not None or self._broken is not None:
            return []
        priority = [w for w in self._priority if not w.future.cancelled()]
        if priority:
            return priority[:1]
        waiters = [w for w in self._waiters if not w.future.cancelled()]
        if waiters and waiters[0].kind == "constructor":
            return waiters[:1]
        return waiters

    def waiting_head(self) -> _Waiter | None:
        """The waiter the gate itself would admit next (None if locked, broken or empty)."""
        if self._lock is not None or self._broken is not None:
            return None
        for lane in (self._priority, self._waiters):
            while lane and lane[0].future.cancelled():
                lane.popleft()
            if lane:
                return lane[0]
        return None

    def admit(self, waiter: _Waiter) -> None:
        """Admit this waiter now (the learner's choice). The gate must be open."""
        if self._lock is not None:
            raise RuntimeError(f"{self._label}'s input gate is locked by {self._lock.holder}")
        for lane in (self._priority, self._waiters):
            if waiter in lane:
                lane.remove(waiter)
                self._grant(waiter.future, waiter.holder, waiter.kind)
                return
        raise RuntimeError(f"{waiter.holder} is not waiting at {self._label}'s input gate")

    def break_(self, error: BaseException) -> None:
        """Break the gate for good: every waiter, now and later, gets ``error``."""
        if self._broken is not None:
            return
        self._broken = error
        self._lock = None
        for lane in (self._priority, self._waiters):
            while lane:
                fut = lane.popleft().future
                if not fut.done():
                    fut.set_exception(error)
                    # Nobody may be awaiting it any more (the delivery was cancelled).
                    fut.exception()


class OutputGate:
    """Holds replies and outgoing messages until the commits registered before them resolve."""

    def __init__(self, *, enabled: bool = True) -> None:
        #: False under the "none" concurrency model: nothing is ever held.
        self.enabled = enabled
        self._newest: asyncio.Future[None] | None = None
        self._pending = 0
        self._broken: BaseException | None = None

    @property
    def is_broken(self) -> bool:
        return self._broken is not None

    @property
    def pending_commits(self) -> int:
        return self._pending

    def statistics(self) -> OutputGateStatistics:
        return OutputGateStatistics(pending_commits=self._pending, broken=self._broken is not None)

    def __repr__(self) -> str:
        state = "broken" if self._broken else f"{self._pending} commits pending"
        return f"<OutputGate {state}>"

    def lock_while(self, commit: asyncio.Future[None]) -> None:
        """Hold every message sent from now on until ``commit`` resolves."""
        if not self.enabled:
            return
        self._newest = commit
        self._pending += 1
        commit.add_done_callback(self._on_commit_done)

    def _on_commit_done(self, commit: asyncio.Future[None]) -> None:
        self._pending -= 1
        if self._newest is commit:
            self._newest = None
        if commit.cancelled():
            return
        exc = commit.exception()
        if exc is not None and self._broken is None:
            self._broken = exc

    def wait(self) -> asyncio.Future[None] | None:
        """A future for "every commit registered so far is durable", or None if there is none.

        The future is the caller's own (cancelling it does not cancel the commit). It fails with
        the commit's error if the gate is or becomes broken.
        """
        if self._broken is not None:
            fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            fut.set_exception(self._broken)
            return fut
        newest = self._newest
        if newest is None:
            return None
        fut = asyncio.get_running_loop().create_future()

        def relay(commit: asyncio.Future[None]) -> None:
            if fut.done():
                return
            if commit.cancelled():
                fut.set_exception(self._broken or asyncio.CancelledError())
            elif commit.exception() is not None:
                fut.set_exception(commit.exception())  # type: ignore[arg-type]
            else:
                fut.set_result(None)

        newest.add_done_callback(relay)
        return fut

    def break_(self, error: BaseException) -> None:
        if self._broken is None:
            self._broken = error
