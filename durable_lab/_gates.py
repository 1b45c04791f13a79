"""The input gate and the output gate: the two rules that make a Durable Object easy to reason
about.

**Input gate** (workerd ``src/workerd/io/io-gate.h``, ``InputGate``). While locked, it keeps every
other event out of the object: new requests, and the continuations of requests that were waiting
for I/O. It is locked for every turn (code running between two awaits of pending things) and
stays locked while a storage read is in flight, so "read, then write" cannot be interleaved.
When its holder releases it, exactly one waiter is admitted (the gate locks again at once):
critical sections first, then everything else in arrival order. That is why queued deliveries
run strictly one at a time, in order.

What counts as *the object's code* is wider than one coroutine. A turn in workerd is a
delivery into JavaScript *plus the microtasks it queues*: an async function it calls runs at
once, and a promise it resolves runs its continuations before the turn is over. The asyncio
counterparts are tasks the object creates (``create_task``, ``gather`` of coroutines,
``TaskGroup``, ``waitUntil``) and futures its code completes. So the gate has a third lane, the
*turn lane* (``micro``), ahead of everything: tasks started by the running code, and code made
runnable by the turn that just ended (a finished task's awaiter, a ``gather`` whose children
are done) or by a storage read that just completed. Storage reads in flight hold it back too,
except the start of a task the running turn created (in JavaScript it would already have run):
no continuation runs while a read is in flight, so even one wrongly taken for part of the turn
(see below) can never slip between a read and the write that depends on it; when the read
completes, its own continuation comes first (it gets the read's lock, in workerd's terms).

Storage reads hold the gate (workerd ``awaitIoWithInputLock``) however they are awaited:
``hold_for(read)`` counts the read as a holder from the moment it is issued until it completes,
so no delivery and no I/O continuation is admitted meanwhile. When a turn ends (or a read
completes) the gate *settles*: it stays closed for a few loop passes, the time asyncio needs to
propagate a completion through ``gather``, ``TaskGroup`` or ``wait_for`` to the code awaiting
it. Code that becomes runnable while the gate settles is code the turn made runnable: it goes
into the turn lane. Only when nothing of the object is runnable is the gate *quiet*: the
callbacks waiting for the end of the turn run (the storage engines start their commit there,
workerd's "after the turn"), then the next queued delivery or continuation is admitted.
(``SETTLE_PASSES`` loop passes cover the chains asyncio builds; a timer that fires within those
few passes would be taken for the turn's own work, the approximation this model makes.)

Here a holder owns an :class:`InputLock`; ``lock.release()`` admits the next waiter. Unlike
workerd's ref-counted locks, a lock has one owner (the strand whose turn is running); storage
reads are counted separately (``hold_for``), which is what workerd's extra references do. A
*critical section* (``blockConcurrencyWhile``) holds its parent gate for as long as it runs and
admits its own work through a child gate of its own; see ``_host.py``.

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
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .events import InputGateLocked, InputGateUnlocked

if TYPE_CHECKING:
    from .bus import EventBus
    from .scheduler import Scheduler

__all__ = ["InputGate", "InputGateStatistics", "InputLock", "OutputGate", "OutputGateStatistics"]

#: Loop passes a gate waits, after a turn ends or a storage read completes, for the code that
#: turn made runnable (the awaiter of a finished task, of a ``gather``, of a ``TaskGroup``...).
#: asyncio needs one pass per link: a task's completion reaches ``gather``'s callback, then the
#: gathering future's awaiter, then that awaiter's task: four passes cover nested gathers.
SETTLE_PASSES = 4

#: The workerd limit on an output-gate lock (a commit), in lab seconds (``worker.c++``).
OUTPUT_GATE_TIMEOUT = 30.0
OUTPUT_GATE_TIMEOUT_MESSAGE = (
    "Durable Object storage operation exceeded timeout which caused object to be reset."
)


@dataclass(frozen=True, slots=True)
class InputGateStatistics:
    locked: bool
    holder: str
    waiting: int  # deliveries and continuations queued, critical sections included
    broken: bool
    reads: int = 0  # storage reads in flight holding the gate


@dataclass(frozen=True, slots=True)
class OutputGateStatistics:
    pending_commits: int
    broken: bool


class _Waiter:
    """One holder queued at a gate: ``kind`` is admit, resume, critical section or constructor."""

    __slots__ = ("front", "future", "holder", "kind", "micro", "seq")

    def __init__(self, future: asyncio.Future[InputLock], holder: str, kind: str, seq: int,
                 micro: bool = False, front: bool = False) -> None:
        self.future = future
        self.holder = holder
        self.kind = kind
        self.seq = seq
        self.micro = micro
        #: The continuation of a completed storage read (queued at the front of the turn lane).
        self.front = front

    def __repr__(self) -> str:
        return f"<waiter {self.holder} ({self.kind})>"


class InputLock:
    """Admission through an :class:`InputGate`. Exactly one exists per gate at a time."""

    __slots__ = ("gate", "holder", "kind", "micro", "released")

    def __init__(self, gate: InputGate, holder: str, kind: str = "admit",
                 micro: bool = False) -> None:
        self.gate = gate
        self.holder = holder
        self.kind = kind
        #: Admitted through the turn lane: part of the turn that made it runnable.
        self.micro = micro
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
    """A FIFO admission gate with a priority lane for critical sections and a turn lane."""

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
        #: The turn lane: object code the current turn started or made runnable.
        self._micro: deque[_Waiter] = deque()
        #: Storage reads (and other holds) in flight: the gate stays closed to the other lanes.
        self._reads = 0
        #: Loop passes left before the gate is quiet (0: not settling).
        self._settling = 0
        #: Strands of this gate suspended on a future the object's own code may complete (a
        #: task, a gather, a read awaited indirectly...): only then can a turn's end make code
        #: runnable a few loop passes later, so only then does the gate settle for long.
        self.internal_waits = 0
        #: Called once the gate is next quiet (the end of the turn, microtasks included).
        self._on_quiet: list[Callable[[], Any]] = []
        self._arrivals = 0
        self._broken: BaseException | None = None

    @property
    def is_locked(self) -> bool:
        return self._lock is not None

    @property
    def is_broken(self) -> bool:
        return self._broken is not None

    @property
    def chain_active(self) -> bool:
        """True while the current turn, or what it made runnable, is still running: code that
        becomes runnable now belongs to that turn (it is admitted through the turn lane)."""
        if self._settling or self._micro:
            return True
        lock = self._lock
        return lock is not None and lock.micro

    @property
    def turn_in_progress(self) -> bool:
        """The current turn goes on in code it started or made runnable (the turn lane is not
        empty or holds the gate, or the gate settles while strands wait on the object's own
        futures): what the end of the turn must wait for."""
        lock = self._lock
        return (bool(self._micro) or (lock is not None and lock.micro)
                or (self._settling > 0 and self.internal_waits > 0))

    @property
    def reads_in_flight(self) -> int:
        """Storage reads holding the gate now (``hold_for``)."""
        return self._reads

    @property
    def has_turn_waiters(self) -> bool:
        """Other code of the current turn is waiting to run (the turn lane is not empty)."""
        return bool(self._micro)

    @property
    def holder(self) -> str:
        """Who holds the gate's lock now ("" if nobody: storage reads may still hold it)."""
        lock = self._lock
        return lock.holder if lock is not None else ""

    @property
    def holder_kind(self) -> str:
        """How the holder was admitted: admit, resume, critical section, constructor, task
        ("" if nobody holds the lock)."""
        lock = self._lock
        return lock.kind if lock is not None else ""

    def queued(self) -> list[tuple[str, str]]:
        """(holder, kind) of everyone waiting at the gate, lane by lane (the turn lane,
        critical sections, then arrival order), callers that gave up left out."""
        return [(waiter.holder, waiter.kind)
                for lane in (self._micro, self._priority, self._waiters) for waiter in lane
                if not waiter.future.cancelled()]

    def statistics(self) -> InputGateStatistics:
        return InputGateStatistics(
            locked=self._lock is not None or self._reads > 0,
            holder=self._lock.holder if self._lock else ("storage" if self._reads else ""),
            waiting=len(self._waiters) + len(self._priority) + len(self._micro),
            broken=self._broken is not None,
            reads=self._reads,
        )

    def __repr__(self) -> str:
        state = f"locked by {self._lock.holder}" if self._lock else (
            f"held by {self._reads} reads" if self._reads else "open")
        waiting = len(self._waiters) + len(self._priority) + len(self._micro)
        return f"<InputGate {self._label} {state}, {waiting} waiting>"

    @property
    def label(self) -> str:
        return self._label

    @property
    def object_id(self) -> str:
        return self._object_id

    def _closed_to_lanes(self) -> bool:
        """Whether deliveries, continuations and critical sections must wait now."""
        return (self._lock is not None or self._reads > 0 or self._settling > 0
                or bool(self._micro))

    def wait(self, holder: str, *, priority: bool = False, front: bool = False,
             kind: str = "admit", micro: bool = False) -> asyncio.Future[InputLock]:
        """Queue ``holder`` for admission. The returned future resolves with its lock.

        Called synchronously, so arrival order is call order. If the gate is open and nobody
        waits, the future is already resolved. ``priority`` puts the holder in the critical
        section lane; ``front`` (with priority) puts it first in that lane, which is how a
        finished critical section hands the gate back to the code that started it. ``micro``
        puts it in the turn lane (code of the current turn: admitted ahead of everything once
        no storage read is in flight).
        """
        fut: asyncio.Future[InputLock] = asyncio.get_running_loop().create_future()
        if self._broken is not None:
            fut.set_exception(self._broken)
            return fut
        if not self.enabled:
            # No gate: admitted at once, never exclusive.
            fut.set_result(InputLock(self, holder, kind))
            return fut
        scheduler = self._scheduler
        if scheduler is not None:
            seq = scheduler.next_seq()
        else:
            self._arrivals += 1
            seq = self._arrivals
        waiter = _Waiter(fut, holder, kind, seq, micro, front and micro)
        if micro:
            if (self._lock is None and not self._micro
                    and (not self._reads or kind == "task")
                    and (scheduler is None or not scheduler.holds_admission(self, waiter))):
                self._grant(fut, holder, kind, True)
                return fut
            if front:  # the continuation of a read that just completed: its lock, in workerd
                # Behind the continuations of reads that completed before it (reads complete
                # in issue order, and so do their continuations: issue #20).
                lane = self._micro
                at = 0
                while at < len(lane) and lane[at].front:
                    at += 1
                lane.insert(at, waiter)
            else:
                self._micro.append(waiter)
            if kind == "task" and self._lock is None and self._reads:
                self._admit_next()  # a task start may pass the reads (and the resumes behind them)
            return fut
        if (not self._closed_to_lanes() and not self._waiters and not self._priority
                and (scheduler is None or not scheduler.holds_admission(self, waiter))):
            self._grant(fut, holder, kind)
            return fut
        lane = self._priority if priority else self._waiters
        if front:
            lane.appendleft(waiter)
        else:
            lane.append(waiter)
        return fut

    def _grant(self, fut: asyncio.Future[InputLock], holder: str, kind: str = "admit",
               micro: bool = False) -> None:
        lock = InputLock(self, holder, kind, micro)
        self._lock = lock
        fut.set_result(lock)
        if self._bus.active:
            self._bus.emit(InputGateLocked, self._label, self._object_id, holder,
                           len(self._waiters) + len(self._priority) + len(self._micro), self.depth)

    def _release(self, lock: InputLock) -> None:
        if self._lock is not lock:
            # A lock from before the gate broke, released during cleanup: nothing to do.
            return
        self._lock = None
        if self._bus.active:
            self._bus.emit(InputGateUnlocked, self._label, self._object_id, lock.holder,
                           len(self._waiters) + len(self._priority) + len(self._micro), self.depth)
        self._after_turn()

    def _after_turn(self) -> None:
        """Nothing holds the turn: let its other code run, or settle, or admit the next."""
        if self._micro:
            self._admit_next()
        elif self.internal_waits:
            # Code this turn made runnable may still be on its way (through gather, a task's
            # done callbacks...): settle before anyone else gets in.
            self._settle(SETTLE_PASSES)
        elif self._on_quiet:
            self._settle(1)  # the end of the turn: the commit starts, then the next one enters
        else:
            self._admit_next()

    # -- holds, settling, quiet ---------------------------------------------------------

    def hold_for(self, fut: asyncio.Future[Any]) -> None:
        """Keep the gate closed to deliveries and continuations until ``fut`` is done and the
        code its completion makes runnable has run (a storage read without allowConcurrency).

        Call it before anyone else adds a done callback to ``fut``: the release must run
        first, so that the awaiter's wake-up finds the gate settling (its turn lane).
        """
        if not self.enabled or self._broken is not None:
            return
        self._reads += 1
        fut.add_done_callback(self._hold_done)

    def _hold_done(self, _: asyncio.Future[Any]) -> None:
        self._reads -= 1
        if self._broken is None and self._lock is None:
            # Not at once: the read's own awaiter queues (first in the turn lane) in this same
            # loop pass, in a done callback that runs after this one.
            self._settle(SETTLE_PASSES if self.internal_waits else 1)

    @property
    def between_turns(self) -> bool:
        """No turn runs and none of its code waits in the turn lane: only the settling that
        ends the turn (its commit, ``on_quiet``) may be left."""
        return self._lock is None and not self._micro

    def on_quiet(self, callback: Callable[[], Any]) -> None:
        """Run ``callback`` at the end of the current turn, once the code it made runnable has
        run, before anything else is admitted (workerd: after the JavaScript turn)."""
        self._on_quiet.append(callback)
        if self._lock is None and not self._micro and not self._settling:
            self._settle(SETTLE_PASSES if self.internal_waits else 1)

    def _settle(self, passes: int) -> None:
        if self._settling:
            # More work of the turn: wait the passes again.
            self._settling = max(self._settling, passes)
            return
        self._settling = passes
        asyncio.get_running_loop().call_soon(self._settle_pass)

    def _settle_pass(self) -> None:
        if self._broken is not None:
            self._settling = 0
            return
        if self._lock is not None or self._micro:
            # The turn goes on (code it made runnable was admitted); its end settles again.
            self._settling = 0
            if self._lock is None:
                self._admit_next()
            return
        self._settling -= 1
        if self._settling > 0:
            asyncio.get_running_loop().call_soon(self._settle_pass)
            return
        # Quiet: the turn is over, microtasks included.
        while self._on_quiet and self._lock is None and not self._micro:
            callbacks, self._on_quiet = self._on_quiet, []
            for callback in callbacks:
                callback()
        if self._broken is None:
            self._admit_next()

    def _admit_next(self) -> None:
        scheduler = self._scheduler
        while self._lock is None and self._broken is None:
            if self._reads:
                # A storage read in flight holds the gate against everyone but the tasks the
                # running turn started (in JavaScript they would have run already, before
                # the read was even issued... or right after, inside the same turn).
                waiter = self._first_task_start()
                if waiter is None:
                    return
                if scheduler is not None and scheduler.holds_admission(self, waiter):
                    return
                self._micro.remove(waiter)
                self._grant(waiter.future, waiter.holder, waiter.kind, waiter.micro)
                return
            if self._micro:
                lane = self._micro
            elif self._settling:
                return
            else:
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
            self._grant(waiter.future, waiter.holder, waiter.kind, waiter.micro)

    def _first_task_start(self) -> _Waiter | None:
        for waiter in self._micro:
            if waiter.kind == "task" and not waiter.future.cancelled():
                return waiter
        return None

    def waiting(self) -> list[_Waiter]:
        """Who the gate's rules allow to be admitted now (empty while locked or broken).

        The turn lane comes first, in order; then critical sections (and the code a finished
        one hands the gate back to), one at a time; the constructor comes before any delivery;
        the other waiters may go in any order (that is the choice a paused lab offers).
        """
        if self._lock is not None or self._broken is not None:
            return []
        if self._reads:
            start = self._first_task_start()
            return [] if start is None else [start]
        micro = [w for w in self._micro if not w.future.cancelled()]
        if micro:
            return micro[:1]
        if self._reads or self._settling:
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
        if self._reads:
            return self._first_task_start()
        for lane in (self._micro, self._priority, self._waiters):
            if lane is not self._micro and (self._reads or self._settling):
                return None
            while lane and lane[0].future.cancelled():
                lane.popleft()
            if lane:
                return lane[0]
        return None

    def admit(self, waiter: _Waiter) -> None:
        """Admit this waiter now (the learner's choice). The gate must be open."""
        if self._lock is not None:
            raise RuntimeError(f"{self._label}'s input gate is CLOSED (held by "
                               f"{self._lock.holder})")
        for lane in (self._micro, self._priority, self._waiters):
            if waiter in lane:
                lane.remove(waiter)
                self._grant(waiter.future, waiter.holder, waiter.kind, waiter.micro)
                return
        raise RuntimeError(f"{waiter.holder} is not waiting at {self._label}'s input gate")

    def break_(self, error: BaseException) -> None:
        """Break the gate for good: every waiter, now and later, gets ``error``."""
        if self._broken is not None:
            return
        self._broken = error
        self._lock = None
        self._settling = 0
        self._on_quiet = []
        for lane in (self._micro, self._priority, self._waiters):
            while lane:
                fut = lane.popleft().future
                if not fut.done():
                    fut.set_exception(error)
                    # Nobody may be awaiting it any more (the delivery was cancelled).
                    fut.exception()


class OutputGate:
    """Holds replies and outgoing messages until the commits registered before them resolve."""

    def __init__(self, *, enabled: bool = True, clock: Any = None,
                 on_timeout: Callable[[], Any] | None = None) -> None:
        #: False under the "none" concurrency model: nothing is ever held.
        self.enabled = enabled
        self._newest: asyncio.Future[None] | None = None
        self._pending = 0
        self._broken: BaseException | None = None
        #: The lab clock, and what to do when a lock is still held OUTPUT_GATE_TIMEOUT lab
        #: seconds after it was taken (workerd ``HooksImpl::makeTimeoutPromise``: the object
        #: is reset with OUTPUT_GATE_TIMEOUT_MESSAGE, ``overloaded``).
        self._clock = clock
        self._on_timeout = on_timeout

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
        clock = self._clock
        if clock is not None and self._on_timeout is not None:
            on_timeout = self._on_timeout
            timers: list[Any] = []

            def fire() -> None:
                # ``on_timeout()`` returning True means "not yet": the commit has not reached
                # storage (it waits for one of the lab's connections): count again from now.
                if not commit.done() and on_timeout() is True:
                    timers[0] = clock.call_at(clock.now() + OUTPUT_GATE_TIMEOUT, fire)

            timers.append(clock.call_at(clock.now() + OUTPUT_GATE_TIMEOUT, fire))
            commit.add_done_callback(lambda _: timers[0].cancel())

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
