"""Turns: running an object's code one turn at a time, through its input gate.

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
        yielded a finished storage call (a cache hit, put())?  -> let the turn's other
                                           runnable code go first, then go on: same turn
        yielded anything pending?  -> release the gate (turn ended), wait for it, come back
                                      in through the gate: in the turn lane if the turn
                                      made it runnable, else behind everything queued

``coro.send(None)`` after the awaited future is done makes the coroutine read the future's result
itself (``Future.__await__`` returns ``result()`` or raises), so exceptions flow exactly as under
asyncio. A bare ``yield`` (``asyncio.sleep(0)``) ends the turn too.

The whole object is gated, not one coroutine. A :class:`Driver` is one *strand* of object code:
a delivery, a critical section, the constructor, or a task the object created. Tasks created
while object code runs (``asyncio.create_task``, ``ensure_future``, ``gather`` of coroutines,
``TaskGroup``, ``ctx.waitUntil``) are adopted by the object: a task factory installed on the
event loop (chained to any factory already there) sees the ``current_driver`` context variable
and wraps the coroutine in a strand of that object. A new task is queued in the gate's turn lane
at once, so it starts before anything else is admitted, as a JavaScript async function runs to
its first ``await`` immediately. Its continuations go through the gate like any other.

Storage reads hold the gate whoever awaits them (``InputGate.hold_for``): awaited directly,
through ``gather``, ``wait_for``, a task or a ``TaskGroup``, no other delivery is admitted
until the read is done and the code it made runnable has run. Runtime-internal tasks (delivery
tasks, reads, flushes, timers) are started with :func:`spawn`, outside any object's context, so
they are never adopted.

An awaited finished storage call is a resolved promise: it does not end the turn, but it lets
the turn's other runnable code (tasks queued in the turn lane) run first, as ``await`` of a
resolved promise runs the other queued microtasks first in JavaScript.

``durable_lab.sleep()`` and ``durable_lab.now()`` live here too: from object code they find
the lab's clock through ``current_driver`` (a lab-clock sleep is I/O: it ends the turn).
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import math
import time
import weakref
from collections.abc import Callable, Coroutine
from functools import partial
from typing import TYPE_CHECKING, Any

from .attribution import IO, REENTRY, RUNNING, STORAGE
from .clock import Sleep
from .events import DeliveryResumed, TurnEnded

if TYPE_CHECKING:
    from ._gates import InputGate, InputLock

# Handed down from the rooms above, named for the reader, not imported:
# ``_host.CriticalSection``, ``_host.Delivery``, ``_host.Instance``.
CriticalSection = Any
Delivery = Any
Instance = Any

__all__ = [
    "YIELD_TO_TURN",
    "Driver",
    "Resolved",
    "after_turn",
    "current_driver",
    "install_task_factory",
    "mark_io",
    "now",
    "resolved",
    "sleep",
    "spawn",
    "uninstall_task_factory",
    "wake",
]

#: The driver whose code is running now (None outside object code). Set once per strand task.
current_driver: contextvars.ContextVar[Driver | None] = contextvars.ContextVar(
    "durable_lab_current_driver", default=None
)


class _YieldToTurn:
    """What an awaited finished storage call yields to its driver: "let the turn's other
    runnable code go first" (a resolved promise's ``await``). Never seen by asyncio itself."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "YIELD_TO_TURN"


YIELD_TO_TURN = _YieldToTurn()

#: The driver stepping its coroutine right now (None between steps). Object code runs only
#: inside a step, so an awaitable that finds a driver here is being awaited by object code.
stepping: Driver | None = None


class Resolved(asyncio.Future):
    """An already-finished storage result (a cache hit, a ``put()``): a resolved promise.

    Awaited by object code it does not end the turn, but lets the turn's other runnable code
    (tasks it started, continuations it made runnable) run first, as ``await`` of a resolved
    promise does in JavaScript. Awaited anywhere else it is an ordinary finished future.
    """

    def __await__(self) -> Any:
        driver = stepping
        if driver is not None and driver.gate.has_turn_waiters:
            # (With nothing else of the turn waiting there is nothing to yield to: go on.)
            yield YIELD_TO_TURN
        return self.result()

    __iter__ = __await__


def resolved(value: Any) -> Resolved:
    """A :class:`Resolved` holding ``value``."""
    fut = Resolved()
    fut.set_result(value)
    return fut


#: Futures known to complete by I/O (``sync()``, calls to other objects, lab-clock sleeps): a
#: strand awaiting one always comes back behind everything queued, even if it completes while
#: the gate is still settling from a turn (it was not made runnable by that turn).
_io_futures: weakref.WeakSet[asyncio.Future[Any]] = weakref.WeakSet()


def wake(waiter: asyncio.Future[None], _: object = None) -> None:
    """Resolve ``waiter`` (a done callback: the future it was added to is done)."""
    if not waiter.done():
        waiter.set_result(None)


def mark_io(fut: asyncio.Future[Any]) -> asyncio.Future[Any]:
    """Mark ``fut`` as I/O (see ``_io_futures``); returns it. Started by object code, it is
    also remembered as that instance's pending I/O until it is done (``_completed_by_io``)."""
    _io_futures.add(fut)
    driver = current_driver.get()
    if driver is not None and not fut.done():
        pending = driver.instance.pending_io
        pending.add(fut)
        fut.add_done_callback(pending.discard)
    return fut


def _completed_by_io(fut: asyncio.Future[Any], pending_io: set[asyncio.Future[Any]]) -> bool:
    """Whether a pending I/O future of the instance will complete ``fut`` through a done
    callback: ``asyncio.wait_for`` (3.11), ``shield`` and ``wait`` hand an I/O result to object
    code through a future of their own (issue #20; see ``_waits_for_io``)."""
    for io in pending_io:
        for callback, _ in list(getattr(io, "_callbacks", None) or ()):
            if fut in _futures_reached_by(callback):
                return True
    return False


def _futures_reached_by(callback: Any) -> list[Any]:
    """What a done callback holds (a ``functools.partial``'s arguments, a closure's cells),
    except for the lab's own strands' callbacks and bound methods (a task's wake-up: a task's
    completion is its code's)."""
    if isinstance(callback, partial):
        return [] if callback.func is wake else list(callback.args)
    code = getattr(callback, "__code__", None)
    if code is None or code.co_qualname.startswith("Driver."):
        return []
    return [cell.cell_contents for cell in callback.__closure__ or () if _cell_full(cell)]


def _cell_full(cell: Any) -> bool:
    try:
        cell.cell_contents  # noqa: B018
    except ValueError:  # an empty cell
        return False
    return True


def _waits_for_io(fut: asyncio.Future[Any]) -> bool:
    """Whether ``fut`` cannot finish before some I/O does: it is I/O, or a ``gather`` with an
    I/O child (at any depth). Issue #20: on workerd, ``Promise.all([storage.get(k),
    peer.ping()])`` resumes its awaiter through the input gate *behind* what queued meanwhile
    (the reply is an event like any other), so another delivery can start and read the old
    value; the lab's calls to other objects answer within a few loop passes, and without this
    the gather's completion would be taken for the turn's own work (the turn lane)."""
    if fut in _io_futures:
        return True
    # asyncio's gathering future keeps its children in ``_children`` (3.11 to 3.13).
    children: list[asyncio.Future[Any]] = getattr(fut, "_children", None) or []
    return any(_waits_for_io(child) for child in children)


_SLEEP_CODE = asyncio.sleep.__code__


def _awaits_timer(coro: Any) -> bool:
    """Whether the object code is suspended in ``asyncio.sleep`` (walks the ``await`` chain)."""
    awaited = getattr(coro, "cr_await", None)
    while awaited is not None:
        if getattr(awaited, "cr_code", None) is _SLEEP_CODE:
            return True
        awaited = getattr(awaited, "cr_await", None)
    return False


def spawn(coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
    """Start a runtime-internal task: outside any object's context, so it is never adopted by
    an object (and neither is anything it starts). Built directly, not through the loop's task
    factory: the runtime's own tasks need no factory, and this is on every call's path."""
    loop = asyncio.get_running_loop()
    if current_driver.get() is None:
        return asyncio.Task(coro, loop=loop)
    context = contextvars.copy_context()
    context.run(current_driver.set, None)
    return asyncio.Task(coro, loop=loop, context=context)


def after_turn(callback: Callable[[], Any]) -> None:
    """Run ``callback`` when the current turn of object code is over (microtasks included);
    outside object code, on the next pass of the event loop."""
    driver = current_driver.get()
    if (driver is not None and driver.instance.broken is None and driver.gate.enabled
            and driver.instance.adopts_tasks):
        driver.gate.on_quiet(callback)
    else:
        # Outside object code, and under Lab(model="serial"), whose deliveries keep the gate
        # across every await (a commit waiting for the gate to be quiet would wait for the
        # delivery, and a delivery awaiting sync() for the commit): the next loop pass.
        asyncio.get_running_loop().call_soon(callback)


class Driver:
    """Runs one strand of an object's code (a delivery, a critical section, the constructor,
    a task the object created) through one input gate."""

    __slots__ = ("call", "delivery", "gate", "holder", "instance", "lock", "tasks_started")

    def __init__(self, instance: Instance, gate: InputGate, delivery: int, holder: str,
                 call: Delivery | None = None) -> None:
        self.instance = instance
        self.gate = gate
        self.delivery = delivery
        self.holder = holder
        self.lock: InputLock | None = None
        self.tasks_started = 0
        #: The delivery whose time this strand's waits are (attribution.py): the delivery's
        #: own strand and a critical section it awaits; None for the constructor and tasks
        #: (they run beside the call; the call's strand counts its wait for them as I/O).
        self.call = call

    def _enter(self, phase: int) -> None:
        """The call this strand runs for moves to ``phase`` now (lab clock)."""
        call = self.call
        if call is not None:
            call.enter(phase, self.instance.now())

    def release(self) -> None:
        lock, self.lock = self.lock, None
        if lock is not None and not lock.released:
            lock.release()

    async def drive(self, coro: Coroutine[Any, Any, Any]) -> Any:
        """Run ``coro`` to completion, turn by turn. ``self.lock`` must be held on entry."""
        global stepping
        instance = self.instance
        bus = instance.bus
        gate = self.gate
        # The "serial" model: one delivery at a time from start to finish, like an actor with a
        # lock: the gate is kept across every await, not only storage reads.
        serial = instance.services.model == "serial"
        error: BaseException | None = None
        try:
            while True:
                stepping = self
                try:
                    if error is None:
                        yielded = coro.send(None)
                    else:
                        yielded, error = coro.throw(error), None
                except StopIteration as stop:
                    return stop.value
                finally:
                    stepping = None

                if yielded is YIELD_TO_TURN:
                    # A resolved promise: the turn goes on, after the turn's other runnable
                    # code (tasks it started, continuations it made runnable).
                    if gate.has_turn_waiters and not serial:
                        self.release()
                        error = await self._reenter_quietly(gate.wait(
                            self.holder, kind="resume", micro=True))
                    continue

                if yielded is None:  # bare yield: asyncio.sleep(0)
                    self._end_turn("yield")
                    self._enter(REENTRY)
                    try:
                        await asyncio.sleep(0)
                    except asyncio.CancelledError:
                        if instance.broken is not None:
                            raise
                        error = asyncio.CancelledError()
                    cancel = await self._reenter()
                    error = error or cancel
                    continue

                if not getattr(yielded, "_asyncio_future_blocking", False):
                    error = RuntimeError(
                        f"object code yielded {yielded!r}, which is not an asyncio future: "
                        "only asyncio-compatible awaitables can be awaited in object code"
                    )
                    continue
                yielded._asyncio_future_blocking = False
                fut: asyncio.Future[Any] = yielded

                if serial:
                    # Under "serial" the strand keeps the gate across every await.
                    is_read = fut in instance.gate_holding_reads
                    self._turn_ended("storage" if is_read else "io")
                    if bus.active:
                        bus.emit(TurnEnded, instance.label, instance.object_id, self.delivery,
                                 "storage" if is_read else "io", True)
                    call = self.call
                    if call is not None:
                        self._note_wait(fut, is_read)
                        self._enter(STORAGE if is_read else IO)
                    await self._wait_keeping_lock(fut)
                    if call is not None:
                        if type(fut) is Sleep:
                            call.note("timer_wait", instance.now() - call.since)
                        self._enter(RUNNING)
                    continue

                section = instance.critical_sections.get(fut)
                if section is not None:
                    await self._await_critical_section(section, fut)
                    continue

                if fut in instance.gate_holding_reads:
                    # A storage read: the turn is over, but the read holds the gate until the
                    # code after the await has run (workerd awaitIoWithInputLock).
                    if self.call is not None:
                        self.call.note("reads")
                    if not gate.has_turn_waiters and gate.reads_in_flight <= 1:
                        # Nothing else of the turn waits to run and no earlier read is in
                        # flight (its continuation must run first: reads complete in issue
                        # order, issue #20): keep the lock itself across the read (the same
                        # admissions, one step less when stepping).
                        self._turn_ended("storage")
                        if bus.active:
                            bus.emit(TurnEnded, instance.label, instance.object_id, self.delivery,
                                     "storage", True)
                        self._enter(STORAGE)
                        error = await self._wait_keeping_lock_cancellable(fut)
                        self._enter(RUNNING)
                        continue
                    internal = True
                else:
                    # asyncio.sleep() is a timer: I/O, never the turn's own work, even if it
                    # fires while the gate settles.
                    internal = (not _waits_for_io(fut) and not _awaits_timer(coro)
                                and not (instance.pending_io
                                         and _completed_by_io(fut, instance.pending_io)))
                if internal:
                    # Counted before the turn ends: the gate must settle at this release.
                    gate.internal_waits += 1
                is_read = fut in instance.gate_holding_reads
                if is_read:
                    self._end_turn("storage", gate_held=True)
                    self._enter(STORAGE)
                else:
                    self._end_turn("io")
                    if self.call is not None:
                        self._note_wait(fut, False)
                        self._enter(IO)
                error = await self._wait_and_reenter(fut, internal, is_read)
        except BaseException:
            # Cancelled (the object was reset) or the code raised: the coroutine is finished
            # either way; close it so its finally blocks run now and not at garbage collection.
            coro.close()
            raise
        finally:
            self.release()

    def _turn_ended(self, awaiting: str) -> None:
        """Keep ``Instance.running``/``awaits`` as a ``TurnEnded`` event makes a reader of the
        stream fold them (snapshot.py), whether or not the event is emitted."""
        instance = self.instance
        delivery = self.delivery
        instance.awaits[delivery] = awaiting
        if instance.running == delivery:
            instance.running = None

    def _end_turn(self, awaiting: str, gate_held: bool = False) -> None:
        self.release()
        self._turn_ended(awaiting)
        bus = self.instance.bus
        if bus.active:
            bus.emit(TurnEnded, self.instance.label, self.instance.object_id, self.delivery,
                     awaiting, gate_held)

    def _note_wait(self, fut: asyncio.Future[Any], is_read: bool) -> None:
        """Remember what the call waits for, for the verdict (a read, a timer)."""
        call = self.call
        assert call is not None
        if is_read:
            call.note("reads")
        elif type(fut) is Sleep:
            call.note("timers")

    async def _admitted(self, admission: asyncio.Future[InputLock]
                        ) -> tuple[InputLock | None, BaseException | None]:
        """Await ``admission``: (the lock, None), or (None or the lock, a CancelledError) if
        this strand was cancelled meanwhile (not by a reset, which raises). A lock granted
        just before the cancellation arrived is kept: dropping it would leave the gate
        locked by nobody."""
        try:
            return await admission, None
        except asyncio.CancelledError:
            if self.instance.broken is not None:
                raise
            if (admission.done() and not admission.cancelled()
                    and admission.exception() is None):
                return admission.result(), asyncio.CancelledError()
            return None, asyncio.CancelledError()

    async def _reenter(self, admission: asyncio.Future[InputLock] | None = None,
                       micro: bool = False, event: bool = True) -> BaseException | None:
        """Come back in through the gate (behind everything queued, or in the turn lane if
        ``micro``). Returns a CancelledError to throw into the object's code if this strand
        was cancelled meanwhile (not by a reset): asyncio delivers a cancellation by
        throwing it into the code, so the code must be back in first."""
        cancelled: BaseException | None = None
        while True:
            if admission is None:
                admission = self.gate.wait(self.holder, kind="resume", micro=micro)
            lock, cancel = await self._admitted(admission)
            cancelled = cancelled or cancel
            if lock is not None:
                self.lock = lock.entered()
                break
            admission = None  # cancelled while queued: queue again, then deliver it
        call = self.call
        if event and call is not None:
            # Back in through the gate: a new turn of its own code.
            call.enter(RUNNING, self.instance.now())
            call.turns = getattr(call, "turns", 1) + 1
        bus = self.instance.bus
        if event:
            instance = self.instance
            if instance.awaits:
                instance.awaits.pop(self.delivery, None)
            instance.running = self.delivery
            if bus.active:
                bus.emit(DeliveryResumed, instance.label, instance.object_id, self.delivery)
        return cancelled

    async def _reenter_quietly(self, admission: asyncio.Future[InputLock]) -> BaseException | None:
        """Back in after letting the turn's other code run (no event: the turn goes on)."""
        return await self._reenter(admission, micro=True, event=False)

    async def _wait_and_reenter(self, fut: asyncio.Future[Any], internal: bool,
                                is_read: bool = False) -> BaseException | None:
        """Wait for ``fut`` without taking its outcome (the coroutine reads it), then come back
        in through the gate: in the turn lane if the wake-up belongs to a turn of this object
        (the gate is still settling from it), else behind everything queued."""
        loop = asyncio.get_running_loop()
        gate = self.gate
        holder = self.holder
        # Our own waiter, so that a reset never cancels the awaited future (another strand may
        # be awaiting the same one).
        waiter: asyncio.Future[asyncio.Future[InputLock]] = loop.create_future()

        # ``internal``: the future may be completed by the object's own code (already counted
        # in gate.internal_waits by the caller, until the wake-up).
        counted = [internal]

        def uncount() -> None:
            if counted[0]:
                counted[0] = False
                gate.internal_waits -= 1
        call = self.call
        timer = type(fut) is Sleep

        def wake(_: Any) -> None:
            uncount()
            if not waiter.done():
                # Queued now, while we know whether the gate is settling from a turn.
                micro = internal and gate.chain_active
                # A read's own continuation comes first: workerd hands it the read's lock.
                waiter.set_result(gate.wait(holder, kind="resume", micro=micro,
                                            front=micro and is_read))
                if call is not None:
                    # Done waiting: from now on it waits to come back in (re-entry).
                    now = self.instance.now()
                    if timer:
                        call.note("timer_wait", now - call.since)
                    call.enter(REENTRY, now)

        if type(fut) is Sleep and not fut.done():
            # A lab-clock sleep: while the lab is paused, queue the continuation the moment
            # the timer fires (inside lab.clock.advance()), not a loop pass later, so that
            # lab.choices() in the same cell lists what lab.step() would take.
            instance = self.instance

            def on_wake() -> None:
                if (instance.services.scheduler.paused and instance.broken is None
                        and not waiter.done()):
                    waiter.set_result(gate.wait(holder, kind="resume"))  # a timer: I/O
                    if call is not None:
                        now = instance.now()
                        call.note("timer_wait", now - call.since)
                        call.enter(REENTRY, now)

            fut.on_wake = on_wake
        fut.add_done_callback(wake)
        try:
            admission = await waiter
        except asyncio.CancelledError:
            fut.remove_done_callback(wake)
            uncount()
            if self.instance.broken is not None:
                raise
            # Cancelled by object code or a timeout, as asyncio.Task.cancel() does: cancel what
            # is awaited, come back in, and throw CancelledError into the code.
            if waiter.done() and not waiter.cancelled():
                pending: asyncio.Future[InputLock] | None = waiter.result()  # already queued
            else:
                pending = None
                fut.cancel()
            await self._reenter(pending, micro=gate.chain_active)
            return asyncio.CancelledError()
        return await self._reenter(admission)

    async def _wait_keeping_lock_cancellable(self, fut: asyncio.Future[Any]
                                             ) -> BaseException | None:
        """Wait for ``fut`` holding the lock; a cancellation of the strand (not a reset) is
        returned to be thrown into its code, after cancelling ``fut`` as asyncio would."""
        try:
            await self._wait_keeping_lock(fut)
        except asyncio.CancelledError:
            if self.instance.broken is not None:
                raise
            fut.cancel()
            return asyncio.CancelledError()
        return None

    async def _wait_keeping_lock(self, fut: asyncio.Future[Any]) -> None:
        if fut.done():
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        fut.add_done_callback(partial(wake, waiter))
        await waiter

    async def _await_critical_section(self, section: CriticalSection,
                                      fut: asyncio.Future[Any]) -> None:
        """The code awaits the ``blockConcurrencyWhile`` it started.

        Its turn ends (so the critical section, first in the priority lane, starts), and when the
        section succeeds it hands the gate straight back to this code, ahead of every queued
        event (workerd ``CriticalSection::succeeded``).
        """
        section.awaited_by = self
        self._end_turn("blockConcurrencyWhile")
        # The call stays "running": the section is its own code, the gate held for it (the
        # section's driver moves the call through its own waits, see CriticalSection.run).
        call = self.call
        started = self.instance.now() if call is not None else 0.0
        await self._wait_keeping_lock(fut)
        handback = section.handback
        await self._reenter(handback)
        if call is not None:
            call.note("section", self.instance.now() - started)

    # -- tasks the object's code creates -------------------------------------------------

    def adopt(self, coro: Coroutine[Any, Any, Any]) -> Coroutine[Any, Any, Any]:
        """Make ``coro`` (about to become a task) a strand of this object: queued in the turn
        lane now, so it starts before anything else is admitted."""
        instance = self.instance
        self.tasks_started += 1
        instance.tasks_started += 1
        gate = self.gate
        # Named after the delivery whose code started it (the constructor's: "constructor").
        base = f"delivery {self.delivery}" if self.delivery else self.holder.split(" task ")[0]
        holder = f"{base} task {instance.tasks_started}"
        strand = Driver(instance, gate, self.delivery, holder)
        admission = gate.wait(holder, kind="task",
                              micro=self.lock is not None or gate.chain_active)
        return strand._run_task(coro, admission)

    async def _run_task(self, coro: Coroutine[Any, Any, Any],
                        admission: asyncio.Future[InputLock]) -> Any:
        current_driver.set(self)
        try:
            lock, cancelled = await self._admitted(admission)
        except BaseException:
            coro.close()  # the object was reset before the task ever ran
            raise
        if cancelled is not None:
            # Cancelled before it ever ran: like an asyncio task cancelled before its first
            # step, the coroutine never runs.
            coro.close()
            if lock is not None:
                lock.release()
            raise cancelled
        self.lock = lock.entered()  # type: ignore[union-attr]
        return await self.drive(coro)


class _ObjectTaskFactory:
    """The event loop's task factory while a lab is open: adopts tasks created by object code.

    Chains to the factory that was installed before (or builds a plain ``asyncio.Task``), so
    other libraries' factories keep working. Outside object code it only passes through.
    """

    __slots__ = ("labs", "previous")

    def __init__(self, previous: Any) -> None:
        self.previous = previous
        self.labs: weakref.WeakSet[Any] = weakref.WeakSet()

    def __call__(self, loop: asyncio.AbstractEventLoop, coro: Any, **kwargs: Any) -> Any:
        context = kwargs.get("context")
        parent = (current_driver.get() if context is None else context.get(current_driver))
        adopted = (parent is not None and inspect.iscoroutine(coro)
                   and parent.instance.adopts_tasks and parent.instance.broken is None)
        if adopted:
            instance = parent.instance  # type: ignore[union-attr]
            if instance.object_tasks >= instance.services.max_tasks:
                coro.close()
                raise instance.too_many_tasks()
            inner = coro
            coro = parent.adopt(coro)  # type: ignore[union-attr]
        previous = self.previous
        if previous is None:
            task = asyncio.Task(coro, loop=loop, **kwargs)
        else:
            task = previous(loop, coro, **kwargs)
        if adopted:
            # The object owns it: a reset cancels it, and the object is not idle until it ends.
            instance.track(task)
            instance.object_tasks += 1
            task.add_done_callback(partial(instance.object_task_done, inner))
        return task


def install_task_factory(loop: asyncio.AbstractEventLoop, services: Any) -> None:
    """Make the loop adopt tasks created by object code (idempotent; remembered per lab)."""
    factory = loop.get_task_factory()
    if not isinstance(factory, _ObjectTaskFactory):
        factory = _ObjectTaskFactory(factory)
        loop.set_task_factory(factory)
    factory.labs.add(services)


def uninstall_task_factory(services: Any) -> None:
    """``lab`` closed: once no open lab uses the loop, put the previous task factory back."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return
    factory = loop.get_task_factory()
    if isinstance(factory, _ObjectTaskFactory):
        factory.labs.discard(services)
        if not factory.labs:
            loop.set_task_factory(factory.previous)


# -- the lab clock, from object code (durable_lab.sleep, durable_lab.now) ---------------------


def sleep(seconds: float) -> asyncio.Future[None]:
    """Sleep on the lab's clock when called from object code (else real time).

    Inside an object, ``await durable_lab.sleep(5)`` waits five seconds of *lab* time: on a manual
    clock until ``lab.clock.advance(5)``, on an auto clock not at all in real time. It is
    non-storage I/O, so it ends the turn and opens the input gate, exactly like
    ``asyncio.sleep`` on Cloudflare.
    """
    if not isinstance(seconds, (int, float)) or not 0 <= seconds < math.inf:
        raise ValueError(f"sleep() takes a finite number of seconds >= 0, got {seconds!r}")
    driver = current_driver.get()
    if driver is None:
        fut: asyncio.Future[None] = spawn(asyncio.sleep(seconds))
        return fut
    return mark_io(driver.instance.services.clock.sleep(seconds))


def now() -> float:
    """The lab clock's time (epoch seconds) when called from object code, else wall time.

    ``setAlarm(now() * 1000 + 60_000)`` sets an alarm a minute from now in *lab* time, which is
    what a manual or auto clock needs. On Cloudflare write ``time.time()`` (or JS ``Date.now()``).
    """
    driver = current_driver.get()
    if driver is None:
        return time.time()
    return driver.instance.services.clock.now()
