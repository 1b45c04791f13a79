"""Hosting one Durable Object: its instance, its mailbox of deliveries, its resets.

An :class:`ObjectHost` exists per id the lab has seen. It owns at most one live
:class:`Instance` at a time (the object constructed in memory, with its gates and its cache).
When an instance is reset, the host drops it; the next delivery through a *new* stub constructs
a fresh one, which sees exactly what was committed. Stubs taken before a failure stay broken
(workerd ``ActorContainer::requireNotBroken``): the host remembers which *generation* each stub was
taken in and which generations broke.

A delivery (one RPC call or ``fetch``) is queued at the instance's input gate the moment the call
is made (so calls are delivered in the order they were made), and runs in its own asyncio task
through a :class:`~durable_lab._turns.Driver`. When its code finishes, the reply is held by the
output gate until the writes made before it are committed, then handed to the caller as a copy.

Resets (each with what the callers see, from the spec):

======================  =====================================================  ==============
cause                   error message                                          stubs broken
======================  =====================================================  ==============
blockConcurrencyWhile   the callback's own message                             yes
callback raised
commit failed           "Internal error in Durable Object storage write        yes
                        caused object to be reset."
``ctx.abort(reason)``   ``reason``                                             yes
constructor raised      the constructor's message (``remote``)                 yes
code updated (rebind)   "Durable Object reset because its code was updated."   no
critical section ran    "A call to blockConcurrencyWhile() in a Durable        yes
30 s (lab clock)        Object waited for too long. ..." (``overloaded``)
commit held the output  "Durable Object storage operation exceeded timeout     yes
gate 30 s               which caused object to be reset." (``overloaded``)
======================  =====================================================  ==============

A handler's error reaches an RPC caller at once (it is not held by the output gate, as recorded
on workerd); a value, and a ``fetch`` handler's error, wait for the commits before them.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import copy
import inspect
import threading
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from . import values
from . import websockets as _websockets
from ._cache import StorageCache
from ._futures import relay_outcome as _relay_outcome
from ._gates import OUTPUT_GATE_TIMEOUT_MESSAGE, InputGate, OutputGate
from ._naive import NaiveStorage
from ._sql_engine import SqliteEngine
from ._turns import Driver, current_driver, install_task_factory, spawn
from .alarms import ALARM_KEY, call_alarm_handler
from .attribution import NETWORK, OUTPUT_GATE, QUEUED, RUNNING
from .clock import fast_now
from .errors import (
    DurableObjectError,
    DurableObjectResetError,
    LabClosedError,
    OverloadedError,
    mark_remote,
)
from .events import (
    CriticalSectionEnded,
    CriticalSectionStarted,
    DeliveryFinished,
    DeliveryQueued,
    DeliveryRefused,
    DeliveryStarted,
    InstanceConstructed,
    InstanceEvicted,
    InstanceReset,
    ReplyHeld,
    ReplyReleased,
)
from .http import Response
from .objects import DurableObjectState, _Aborted
from .storage import DurableObjectStorage, SqlDurableObjectStorage

if TYPE_CHECKING:
    from .ids import DurableObjectId
    from .services import LabServices

# Handed down from the rooms above, named for the reader, not imported:
# ``namespace.DurableObjectNamespace``.
DurableObjectNamespace = Any

__all__ = ["CriticalSection", "Delivery", "Instance", "ObjectHost", "Origin"]

#: How a call reached ``deliver`` when it did not start there (attribution.py): the lab time
#: the caller made it (None: now), seconds the caller's output gate held it, and a callback
#: told the delivery once it exists.
Origin = tuple[float | None, float, Callable[["Delivery"], Any] | None]

COMMIT_FAILED_MESSAGE = "Internal error in Durable Object storage write caused object to be reset."
#: workerd ``io-context.h`` (``blockConcurrencyWhileImpl``): a critical section still running
#: BLOCK_CONCURRENCY_WHILE_TIMEOUT lab seconds after it started resets the object, overloaded.
BLOCK_CONCURRENCY_WHILE_TIMEOUT = 30.0
BLOCK_CONCURRENCY_WHILE_TIMEOUT_MESSAGE = (
    "A call to blockConcurrencyWhile() in a Durable Object waited for too long. The call was "
    "canceled and the Durable Object was reset."
)
CODE_UPDATED_MESSAGE = "Durable Object reset because its code was updated."
STORAGE_GONE_MESSAGE = "Durable Object storage is no longer accessible."


class _DeliveryTask(asyncio.Task):
    """The task a delivery runs in. It remembers whether a ``cancel()`` came from the
    object's own code (``current_task().cancel()``, a watchdog task of the object: a driver
    is current then) or from outside (a reset, ``asyncio.run()`` shutting down)."""

    by_code = False

    def cancel(self, msg: Any = None) -> bool:
        if current_driver.get() is not None:
            self.by_code = True
        return super().cancel(msg)


def _spawn_delivery(coro: Any) -> asyncio.Task[Any]:
    """``_turns.spawn`` for a delivery: outside any object's context, as a _DeliveryTask."""
    loop = asyncio.get_running_loop()
    if current_driver.get() is None:
        return _DeliveryTask(coro, loop=loop)
    context = contextvars.copy_context()
    context.run(current_driver.set, None)
    return _DeliveryTask(coro, loop=loop, context=context)


def _cancelled_by_object() -> bool:
    """Whether the current task is a delivery's that the object's own code cancelled."""
    return getattr(asyncio.current_task(), "by_code", False)


def _cancelled_by_code(delivery: Delivery) -> BaseException:
    """The error a call's caller gets when the object's own code cancelled the task the call
    runs in. The cancellation is consumed (``uncancel``), so the runtime can still answer.

    JavaScript has no way to cancel a running call; an asyncio task can be cancelled by the
    code it runs. Propagating the CancelledError would leave the caller waiting forever, so it
    ends the call as an exception raised by the object would (``remote``).
    """
    task = asyncio.current_task()
    if task is not None:
        task.uncancel()
    if isinstance(task, _DeliveryTask):
        task.by_code = False  # consumed: a later cancel is judged afresh
    error = mark_remote(RuntimeError(
        f"{delivery.method}() was cancelled by the object's own code (the task running the "
        "call was cancelled: asyncio.current_task().cancel(), a watchdog or a task it "
        "started): the call ends with this error instead of a result. A Durable Object "
        "cannot cancel a call it is running; to stop work, return or raise instead."
    ))
    error.cancelled_by_code = True  # type: ignore[attr-defined]  # (read by _reply)
    return error


def _fresh(error: BaseException) -> BaseException:
    """A copy of a shared error, so that each caller raises its own (tracebacks differ)."""
    try:
        return copy.copy(error)
    except Exception:
        return error


class Delivery:
    """One call into an object: what to run, the future its caller waits on, and where its
    time goes (``attribution.py``: a current phase, the lab time it entered it, and one bucket
    per phase, moved along by the host and the driver at the transitions they already make)."""

    __slots__ = ("args", "end", "held_at", "host", "id", "info", "kind", "kwargs", "method",
                 "phase", "queue_ahead", "reply", "since", "spent", "start", "started", "task",
                 "turns", "waiting_for")
    # Set only when they mean something (see below): read them with getattr and a default.
    end: float
    turns: int
    queue_ahead: int
    info: dict[str, Any]

    def __init__(self, delivery_id: int, kind: str, method: str, args: tuple[Any, ...],
                 kwargs: dict[str, Any], reply: asyncio.Future[Any], host: ObjectHost | None = None,
                 now: float = 0.0) -> None:
        self.id = delivery_id
        self.kind = kind
        self.method = method
        self.args = args
        self.kwargs = kwargs
        self.reply = reply
        self.task: asyncio.Future[Any] | None = None
        #: True once its code started (``DeliveryStarted``): it has left the mailbox.
        self.started = False
        #: Once its reply is held: (commits it waited for then, ``host.commits`` then), so
        #: that a snapshot can say how many it still waits for (snapshot.py).
        self.held_at: tuple[int, int] | None = None
        #: Once its code is done: the output-gate wait its reply is held by (see reset()).
        self.waiting_for: asyncio.Future[None] | None = None
        # Attribution (see attribution.py). Always on, so kept to five plain stores: the phase
        # it is in, since when (lab clock), seconds per phase, the start of the whole call as
        # its caller sees it. The other attribution slots are set only when they mean
        # something (read them with getattr and a default): ``end`` (lab time the reply
        # reached the caller), ``turns`` (admissions; 1 if never re-admitted),
        # ``queue_ahead`` (deliveries waiting when it arrived) and ``info`` (the verdict's
        # rarer context: reads, timers, calls made, route...).
        self.host = host
        self.start = self.since = now
        self.phase = QUEUED
        self.spent = [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]

    def enter(self, phase: int, now: float) -> None:
        """Leave the current phase at lab time ``now`` (its bucket gets the time spent in it)."""
        self.spent[self.phase] += now - self.since
        self.phase = phase
        self.since = now

    def note(self, key: str, amount: Any = 1) -> None:
        """Add ``amount`` to the verdict context ``key`` (a count or seconds)."""
        info: dict[str, Any] | None = getattr(self, "info", None)
        if info is None:
            info = self.info = {}
        info[key] = info.get(key, 0) + amount

    def add_call(self, callee: Delivery) -> None:
        """``callee`` is a call this delivery's code made to another object (it arrived)."""
        info = getattr(self, "info", None)
        if info is None:
            info = self.info = {}
        info.setdefault("calls", []).append(callee)

    def waited(self, now: float) -> None:
        """A wait of the current phase ended at ``now`` (unless the call already ended)."""
        if getattr(self, "end", None) is None:
            self.spent[self.phase] += now - self.since
            self.since = now

    def finish(self, now: float) -> None:
        """The reply reached the caller at ``now`` (or the call was answered by a reset)."""
        if getattr(self, "end", None) is None:
            self.enter(self.phase, now)
            self.end = now

    @property
    def holder(self) -> str:
        return f"delivery {self.id}"

    def invoke(self, obj: Any) -> Any:
        if self.kind == "alarm":
            return call_alarm_handler(obj, self.args[0])
        if self.kind == "websocket":  # webSocketMessage/Close/Error (websockets.py)
            return _websockets.call_handler(obj, self.method, self.args)
        return getattr(obj, self.method)(*self.args, **self.kwargs)

    def copy_result(self, result: Any) -> Any:
        if self.kind == "alarm" or self.kind == "websocket":
            return None
        if self.kind == "fetch":
            if not isinstance(result, Response):
                raise TypeError(
                    "Incorrect type for Promise: the Promise did not resolve to 'Response'. "
                    f"fetch() returned {type(result).__name__}; return a durable_lab.Response"
                )
            return result._copy()
        return values.clone(result, what=f"the result of {self.method}()")


class ObjectHost:
    """Everything the lab keeps about one id, across instances."""

    def __init__(self, services: LabServices, namespace: DurableObjectNamespace,
                 object_id: DurableObjectId) -> None:
        self.services = services
        self.namespace = namespace
        self.id = object_id
        self.object_id = object_id.toString()
        name = object_id.name
        self.label = f"{namespace.name}:{name if name is not None else object_id.toString()[:8]}"
        self.storage_key = (namespace.name, self.object_id)
        self.instance: Instance | None = None
        self.incarnations = 0
        #: Stubs taken in generation g fail with broken[g] once g broke.
        self.generation = 0
        self.broken: dict[int, BaseException] = {}
        #: How the last instance ended: "", "evicted", or a reset reason.
        self.last_end = ""
        #: The commit of a reset instance that may still be landing; the next instance waits.
        self._landing: asyncio.Future[None] | None = None
        #: Accepted hibernatable WebSockets (websockets.HostSockets), kept across hibernation.
        self.websockets: _websockets.HostSockets | None = None
        #: The last critical sections: (start, end, delivery) on the lab clock, so that a
        #: call's breakdown can say a blockConcurrencyWhile kept it waiting (attribution.py).
        self.sections: deque[tuple[float, float, int]] = deque(maxlen=64)
        #: Its last finished calls, kept only while someone asked (lab.keep_recent_calls).
        keep = services.recent_calls
        self.recent: deque[Delivery] | None = deque(maxlen=keep) if keep else None
        # What the event stream said about this object so far, kept whether or not anyone
        # listens, so that a panel opened late starts from it (snapshot.py): counters and the
        # last outcomes, each updated where the runtime emits the event it mirrors.
        #: Deliveries whose code finished (``DeliveryFinished``), commits landed
        #: (``CommitDone``), resets (``InstanceReset`` other than ``labClosed``).
        self.finished = 0
        self.commits = 0
        self.resets = 0
        #: The incarnation last constructed (``InstanceConstructed``; 0: none yet).
        self.constructed = 0
        #: (batch, keys, ok) of the last batch to land or fail; the last reset as
        #: "reason: n uncommitted write(s) lost" and the event seq it happened at.
        self.last_batch: tuple[int, int, bool] | None = None
        self.last_reset = ""
        self.reset_seq = 0
        #: The last replies released by the output gate: (delivery, ok).
        self.released: deque[tuple[int, bool]] = deque(maxlen=6)
        #: The last fault armed for it (``FaultInjected``), as "kind (detail)".
        self.last_fault = ""
        #: The cache of the instance before this one: a batch of it may still be landing.
        self.previous_cache: Any = None

    def ensure_instance(self) -> Instance:
        inst = self.instance
        if inst is None:
            self.incarnations += 1
            inst = Instance(self, self.incarnations, self._landing)
            self.instance = inst
        return inst

    def deliver(self, kind: str, method: str, args: tuple[Any, ...], kwargs: dict[str, Any],
                generation: int, stub: Any = None, origin: Origin | None = None
                ) -> asyncio.Future[Any]:
        """Queue a delivery now; the returned future gets the reply (or the error).

        Attribution (attribution.py): ``stub`` remembers the delivery as its most recent
        call. ``origin`` is ``(sent, held, link)``: ``sent`` the lab time the caller made the
        call if that was earlier than now (the time since counts as network, except ``held``
        seconds the caller's output gate held it), ``link(delivery)`` a callback told the
        delivery once it exists (a history entry, or the calling object's delivery).
        """
        loop = asyncio.get_running_loop()
        reply: asyncio.Future[Any] = loop.create_future()
        broken = self.broken.get(generation)
        if broken is not None:
            reply.set_exception(_fresh(broken))
            return reply
        if self.services.closed:
            try:
                self.services.check_open()  # the lab's own reason (closed, or a fork's child)
                raise LabClosedError()
            except LabClosedError as exc:
                reply.set_exception(exc)
            return reply
        services = self.services
        faults = services.faults
        lost = faults.take_call_failure(self)
        if lost is not None:
            reply.set_exception(lost)
            return reply
        delay = faults.call_delay(self)
        if delay:
            if origin is None or origin[0] is None:
                # The injected delay counts as network.
                origin = (services.clock.now(), 0.0, None if origin is None else origin[2])

            async def later() -> None:
                await services.clock.sleep(delay)
                inner = self._deliver_now(kind, method, args, kwargs, generation, loop,
                                          None, stub, origin)
                inner.add_done_callback(lambda f: _relay_outcome(f, reply))
            services.track(spawn(later()))
            return reply
        return self._deliver_now(kind, method, args, kwargs, generation, loop, reply, stub,
                                 origin)

    def _deliver_now(self, kind: str, method: str, args: tuple[Any, ...],
                     kwargs: dict[str, Any], generation: int, loop: asyncio.AbstractEventLoop,
                     reply: asyncio.Future[Any] | None = None, stub: Any = None,
                     origin: Origin | None = None) -> asyncio.Future[Any]:
        """Queue the delivery at the instance's gate (faults already applied)."""
        services = self.services
        if reply is None:
            reply = loop.create_future()
        broken = self.broken.get(generation)
        if broken is not None:
            reply.set_exception(_fresh(broken))
            return reply
        inst = self.ensure_instance()
        delivery = Delivery(services.next_delivery_id(), kind, method, args, kwargs, reply, self,
                            inst.now())
        # Two bounds: deliveries waiting for their first admission (max_queue), and all the
        # deliveries of the object, admitted ones included (max_in_flight): a call that awaits
        # a timer or another object has left the queue but still holds its memory.
        if inst.queued >= services.max_queue or len(inst.deliveries) >= services.max_in_flight:
            if services.bus.active:
                services.bus.emit(DeliveryRefused, self.label, self.object_id, delivery.id, method,
                             "overloaded")
            reply.set_exception(
                OverloadedError() if inst.queued >= services.max_queue else OverloadedError(
                    f"Durable Object is overloaded. Too many requests in flight: "
                    f"{len(inst.deliveries)} calls are queued or running at {self.label} "
                    f"(the limit is Lab(max_in_flight={services.max_in_flight}))."))
            return reply
        if origin is not None:
            sent, held, link = origin
            if sent is not None:
                # It was on its way before it arrived: network (and the caller's output gate).
                delivery.start = sent
                delivery.spent[NETWORK] = delivery.since - sent - held
                if held:
                    delivery.spent[OUTPUT_GATE] = held
                    delivery.note("caller_held", held)
            if link is not None:
                link(delivery)
        if stub is not None:
            stub._last = delivery
        inst.queued += 1
        if services.bus.active:
            services.bus.emit(DeliveryQueued, self.label, self.object_id, delivery.id, kind, method,
                         inst.queued)
        admission = inst.gate.wait(delivery.holder)
        if admission.done():
            # Admitted at once (the gate was open, nobody waiting): it never queued. (The
            # loop pass before its task runs is then "running"; one clock read saved.)
            delivery.phase = RUNNING
        else:
            # It queues: remember behind what, for the verdict.
            delivery.queue_ahead = inst.queued - 1
            if inst.critical_sections:
                delivery.note("behind_section")
            if inst.obj is None and inst.broken is None:
                delivery.note("behind_constructor")  # a new instance: its constructor first
        inst.deliveries.add(delivery)
        delivery.task = _spawn_delivery(inst.run_delivery(delivery, admission))
        inst.track(delivery.task)
        return reply

    def on_reset(self, inst: Instance, error: BaseException | None, stubs_broken: bool,
                 reason: str = "") -> None:
        if self.instance is inst:
            self.instance = None
        self.last_end = reason
        if stubs_broken:
            assert error is not None  # (an eviction breaks no stub)
            self.broken[self.generation] = error
            self.generation += 1
        self._landing = inst.cache.in_flight
        self.previous_cache = inst.cache


class CriticalSection:
    """One ``blockConcurrencyWhile`` call: holds the parent gate, admits its own work inside."""

    __slots__ = ("awaited_by", "delivery", "handback", "inner_gate", "instance", "parent_gate",
                 "result")

    def __init__(self, instance: Instance, parent: Driver) -> None:
        self.instance = instance
        self.parent_gate = parent.gate
        self.delivery = parent.delivery
        self.inner_gate = InputGate(instance.bus, instance.label, instance.object_id,
                                    depth=parent.gate.depth + 1,
                                    enabled=instance.services.model != "none",
                                    scheduler=instance.services.scheduler)
        self.result: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.awaited_by: Driver | None = None
        self.handback: asyncio.Future[Any] | None = None

    async def run(self, admission: asyncio.Future[Any], callback: Callable[[], Any]) -> None:
        inst = self.instance
        bus = inst.bus
        depth = self.inner_gate.depth
        outer_lock = (await admission).entered()
        if bus.active:
            bus.emit(CriticalSectionStarted, inst.label, inst.object_id, self.delivery, depth)
        # Awaited by the delivery that started it (it usually is: the awaiting ended the turn
        # that let the section in): the section's turns and waits are that call's time.
        parent = self.awaited_by
        driver = Driver(inst, self.inner_gate, self.delivery, "critical section",
                        parent.call if parent is not None else None)
        current_driver.set(driver)
        clock = inst.services.clock
        # The 30-second limit, on the lab clock: a section still running then resets the
        # object (the reset cancels this task, so the callback never sees it succeed).
        started = clock.now()
        timer = clock.call_at(started + BLOCK_CONCURRENCY_WHILE_TIMEOUT, self._timed_out)
        try:
            driver.lock = await self.inner_gate.wait(driver.holder)
            outcome = callback()
            if inspect.isawaitable(outcome):
                outcome = await driver.drive(_as_coroutine(outcome))
            else:
                driver.release()
        except _Aborted:
            return
        except asyncio.CancelledError:
            if inst.broken is not None:
                return
            raise
        except Exception as exc:
            if inst.broken is not None:  # reset by something else meanwhile
                return
            if bus.active:
                bus.emit(CriticalSectionEnded, inst.label, inst.object_id, self.delivery, depth,
                         False, f"{type(exc).__name__}: {exc}")
            # workerd: the input gate breaks and the object resets; callers see the message.
            inst.reset(DurableObjectResetError(str(exc), reason="inputGateBroken"),
                       reason="inputGateBroken")
            return
        finally:
            timer.cancel()
            driver.release()
            driver.call = None  # (no cycle through the task's context, as in run_delivery)
            # When it held the gate, so a call that queued meanwhile can say why.
            inst.host.sections.append((started, clock.now(), self.delivery))
        if bus.active:
            bus.emit(CriticalSectionEnded, inst.label, inst.object_id, self.delivery, depth, True,
                     "")
        if self.awaited_by is not None:
            # Hand the gate straight back to the code that called blockConcurrencyWhile.
            self.handback = self.parent_gate.wait(self.awaited_by.holder, priority=True,
                                                  front=True, kind="resume")
        inst.critical_sections.pop(self.result, None)
        self.result.set_result(outcome)
        outer_lock.release()

    def _timed_out(self) -> None:
        inst = self.instance
        if self.result.done() or inst.broken is not None:
            return
        if inst.bus.active:
            inst.bus.emit(CriticalSectionEnded, inst.label, inst.object_id, self.delivery,
                          self.inner_gate.depth, False, BLOCK_CONCURRENCY_WHILE_TIMEOUT_MESSAGE)
        inst.reset(DurableObjectResetError(BLOCK_CONCURRENCY_WHILE_TIMEOUT_MESSAGE,
                                           reason="inputGateBroken", overloaded=True),
                   reason="inputGateBroken")


class _NoLock:
    """Stands in for a parent-gate lock the section does not need (serial model)."""

    released = False

    def release(self) -> None:
        self.released = True

    def entered(self) -> _NoLock:
        return self


async def _as_coroutine(awaitable: Any) -> Any:
    if inspect.iscoroutine(awaitable):
        return await awaitable
    return await awaitable


def open_storage(instance: Instance, services: LabServices,
                 landing: asyncio.Future[None] | None) -> tuple[Any, Any]:
    """The storage engine and the ``ctx.storage`` of a new instance, as its class was bound.

    A SQLite-backed class (``lab.bind(..., sql=True)``, workerd ActorSqlite) gets the SQLite
    engine and the storage API with ``sql``; a KV-backed class (ActorCache) the write-coalescing
    cache and the KV storage API, or under ``Lab(model="none")`` the naive storage that writes
    through. Both engines offer the host, the lab and the alarms the same interface (``close``,
    ``pending_commits``, ``in_flight``, the metadata seam: see ``_cache.py``). ``landing`` is the
    commit of the instance before, which the new engine's first read waits for.
    """
    if instance.host.namespace.sql:
        engine: Any = SqliteEngine(instance, services.backend, landing)
        return engine, SqlDurableObjectStorage(instance, engine)
    cache = StorageCache(instance, services.backend, landing)
    if services.model == "none":
        return cache, NaiveStorage(instance)
    return cache, DurableObjectStorage(instance, cache)


class Instance:
    """One incarnation of an object in memory: the user's object, its gates, its cache."""

    def __init__(self, host: ObjectHost, incarnation: int,
                 landing: asyncio.Future[None] | None) -> None:
        services = host.services
        self.host = host
        self.services = services
        self.bus = services.bus
        self.label = host.label
        self.object_id = host.object_id
        self.storage_key = host.storage_key
        self.incarnation = incarnation
        self.cls = host.namespace.cls
        #: The lab clock's now(), bound once: read at every call's transitions.
        self.now = fast_now(services.clock)
        gates_on = services.model != "none"
        self.gate = InputGate(self.bus, self.label, self.object_id, enabled=gates_on,
                              scheduler=services.scheduler)
        self.output_gate = OutputGate(enabled=gates_on, clock=services.clock,
                                      on_timeout=self._output_gate_timed_out)
        #: Tasks created by this object's code are strands of it (the "gates" model only).
        self.adopts_tasks = services.model == "gates"
        self.tasks_started = 0
        if self.adopts_tasks:
            install_task_factory(asyncio.get_running_loop(), services)
        self.cache, self.storage = open_storage(self, services, landing)
        self.ctx = DurableObjectState(self, self.storage)
        self.gate_holding_reads: set[asyncio.Future[Any]] = set()
        self.critical_sections: dict[asyncio.Future[Any], CriticalSection] = {}
        self.tasks: set[asyncio.Future[Any]] = set()
        self.queued = 0
        #: The delivery whose turn runs now and what each delivery awaits ("storage", "io",
        #: ...), as the event stream tells it (DeliveryStarted/Resumed set ``running``,
        #: TurnEnded sets ``awaits``): kept where those events are emitted, listened to or
        #: not, for snapshots (snapshot.py).
        self.running: int | None = None
        self.awaits: dict[int, str] = {}
        #: Calls to other objects held by this object's output gate (OutgoingCallHeld).
        self.outgoing_held = 0
        #: Deliveries not yet answered; a reset answers them all with its error.
        self.deliveries: set[Delivery] = set()
        #: Replies waiting for the end of the turn (``_turn_over``): a reset wakes them.
        self.turn_waiters: set[asyncio.Future[None]] = set()
        self.broken: BaseException | None = None
        self.evicted = False
        #: The event loop's thread: storage is refused from any other (check_usable).
        self.thread = threading.get_ident()
        self.obj: Any = None
        #: Alarm handler state: getAlarm() is None inside the handler unless it set a new one.
        self.in_alarm_handler = False
        self.alarm_set_in_handler = False
        self.cache.on_commit.append(lambda metadata: services.alarms.committed(host, metadata))
        self._idle_timer: Any = None
        # The constructor is the first thing through the gate.
        admission = self.gate.wait("constructor", kind="constructor")
        self.track(spawn(self._construct(admission)))

    # -- bookkeeping ---------------------------------------------------------------------

    def track(self, task: asyncio.Future[Any]) -> None:
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        self.services.track(task)

    def check_usable(self) -> None:
        if self.broken is not None or self.evicted:
            raise DurableObjectResetError(STORAGE_GONE_MESSAGE, reason="ignored", retryable=True)
        if threading.get_ident() != self.thread:
            # Storage from asyncio.to_thread() or an executor: the cache, the gates and the
            # SQLite connection belong to the loop's thread (a connection opened in another
            # thread would brick the object). Refused before anything changed.
            raise RuntimeError(
                f"{self.label}: ctx.storage was used from another thread (asyncio.to_thread, "
                "run_in_executor...). An object's storage belongs to the thread of its event "
                "loop, as everything of a Durable Object does (Workers have no threads): call "
                "storage from the object's own code and hand the thread only plain values. "
                "Nothing was changed.")

    def _output_gate_timed_out(self) -> None:
        """A commit held the output gate for 30 lab seconds (workerd resets the object)."""
        if self.broken is None:
            self.reset(DurableObjectResetError(OUTPUT_GATE_TIMEOUT_MESSAGE,
                                               reason="outputGateBroken", overloaded=True),
                       reason="outputGateBroken")

    def commit_failure_error(self, cause: BaseException) -> DurableObjectResetError:
        error = DurableObjectResetError(COMMIT_FAILED_MESSAGE, reason="outputGateBroken")
        error.__cause__ = cause
        return error

    # -- construction --------------------------------------------------------------------

    async def _construct(self, admission: asyncio.Future[Any]) -> None:
        driver = Driver(self, self.gate, 0, "constructor")
        current_driver.set(driver)
        driver.lock = (await admission).entered()
        try:
            obj = self.cls.__new__(self.cls)
            # Set before __init__, so a constructor that forgets super().__init__ still works.
            obj.ctx = self.ctx
            obj.env = self.services.env
            obj.__init__(self.ctx, self.services.env)
            self.obj = obj
            self.host.constructed = self.incarnation
            if self.bus.active:
                self.bus.emit(InstanceConstructed, self.label, self.object_id,
                              self.cls.__qualname__, self.incarnation)
        except _Aborted:
            return
        except Exception as exc:
            error = DurableObjectResetError(f"{type(exc).__name__}: {exc}",
                                            reason="constructorFailed", remote=True)
            error.__cause__ = exc
            self.reset(error, reason="constructorFailed")
            return
        finally:
            driver.release()

    # -- deliveries ----------------------------------------------------------------------

    async def run_delivery(self, delivery: Delivery, admission: asyncio.Future[Any]) -> None:
        bus = self.bus
        driver = Driver(self, self.gate, delivery.id, delivery.holder, delivery)
        current_driver.set(driver)
        value: Any = None
        error: BaseException | None = None
        try:
            try:
                driver.lock = (await admission).entered()
            finally:
                self.queued -= 1
            if delivery.phase == QUEUED:
                # Admitted after waiting: queued -> running (written out: a hot path).
                now = self.now()
                delivery.spent[QUEUED] += now - delivery.since
                delivery.phase = RUNNING
                delivery.since = now
            delivery.started = True
            self.running = delivery.id
            if bus.active:
                bus.emit(DeliveryStarted, self.label, self.object_id, delivery.id, delivery.method)
            is_alarm = delivery.kind == "alarm"
            if is_alarm:
                self.in_alarm_handler = True
                self.alarm_set_in_handler = False
            try:
                if is_alarm:
                    injected = self.services.faults.take_alarm_failure(self.host)
                    if injected is not None:
                        raise injected
                result = delivery.invoke(self.obj)
                if inspect.iscoroutine(result):
                    result = await driver.drive(result)
                else:
                    driver.release()
            finally:
                if is_alarm:
                    self.in_alarm_handler = False
            if is_alarm and not self.alarm_set_in_handler and self.broken is None:
                # The alarm is deleted once its handler succeeds, with the handler's writes.
                self.cache.set_metadata(ALARM_KEY, None, confirmed=True)
            value = delivery.copy_result(result)
        except _Aborted:
            error = self.broken
        except asyncio.CancelledError:
            # Only a reset cancels a delivery's task; anything else that did is the object's
            # own code (current_task().cancel(), a watchdog, a child task): the call fails
            # as if that code had raised, rather than leaving its caller waiting forever.
            if self.broken is not None:
                error = self.broken
            elif _cancelled_by_object():
                error = _cancelled_by_code(delivery)
            else:
                raise  # (asyncio.run() shutting down, say: not the object's doing)
        except DurableObjectError as exc:
            # A reset (ours, or a call to another object that failed): pass it on as it is.
            error = self.broken if self.broken is not None else exc
        except Exception as exc:
            error = self.broken if self.broken is not None else mark_remote(exc)
        finally:
            driver.release()
            # The task's context holds the driver, and the delivery holds the task: let go of
            # the delivery, or every call would leave a reference cycle for the collector.
            driver.call = None
        if (error is None and _cancelled_by_object()
                and getattr(asyncio.current_task(), "_must_cancel", False)):
            # The code cancelled its own task and returned before the cancellation landed:
            # take it here (the task would otherwise end cancelled at its next await) and
            # fail the call as if it had landed in the code. (``_must_cancel``: asyncio's
            # "cancel pending" flag, on both the C and the Python Task.)
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.sleep(0)
            if self.broken is None:
                error = _cancelled_by_code(delivery)
        # Its code is done: from here until the reply is sent, the output gate holds it.
        now = self.now()
        delivery.spent[delivery.phase] += now - delivery.since
        delivery.phase = OUTPUT_GATE
        delivery.since = now
        # (mirrors the event, for snapshots: see Instance.running)
        if self.awaits:
            self.awaits.pop(delivery.id, None)
        if self.running == delivery.id:
            self.running = None
        self.host.finished += 1
        if bus.active:
            bus.emit(DeliveryFinished, self.label, self.object_id, delivery.id, error is None,
                     "" if error is None else f"{type(error).__name__}: {error}")
        await self._reply(delivery, value, error)

    async def _reply(self, delivery: Delivery, value: Any, error: BaseException | None) -> None:
        """Hand the outcome to the caller once the writes before it are durable.

        A handler's error is not held: it reaches an RPC caller at once, as recorded on
        workerd (the write it made is still committed or, if that fails, the object resets
        and the caller's stub breaks). A ``fetch`` handler's error waits, as workerd's
        ``worker-entrypoint.c++`` makes it ("do not allow the exception to escape the isolate
        without waiting for the output gate to open").
        """
        bus = self.bus
        held = False
        gate_error: BaseException | None = None
        # A call cancelled by its own code (or by asyncio.run() shutting down) waits for
        # nothing more: it is answered with an error now (a wait could outlive the loop).
        gave_up = getattr(error, "cancelled_by_code", False)
        if self.broken is None and (error is None or delivery.kind == "fetch") and not gave_up:
            if self.adopts_tasks and self.gate.turn_in_progress:
                # Tasks the handler started have not run their first step yet. In JavaScript
                # an async function runs at once up to its first await, so a put() there is
                # issued before the handler returns, and workerd's reply waits for it: wait
                # for the end of the turn (its tasks' first steps included) before taking
                # the output gate's wait, or the reply would not cover those writes.
                try:
                    await self._turn_over()
                except asyncio.CancelledError:
                    if self.broken is None:  # (else a reset: it answered the caller)
                        if not _cancelled_by_object():
                            raise
                        error = _cancelled_by_code(delivery)  # (see below)
                        gave_up = True
            pending = self.output_gate.wait() if not gave_up else None
            if pending is not None:
                held = True
                delivery.waiting_for = pending
                stats = self.cache.statistics()
                delivery.note("held_writes", stats.dirty_keys + stats.flushing_keys)
                delivery.note("held_commits", self.output_gate.pending_commits)
                delivery.held_at = (self.output_gate.pending_commits, self.host.commits)
                if bus.active:
                    bus.emit(ReplyHeld, self.label, self.object_id, delivery.id,
                             self.output_gate.pending_commits)
                try:
                    await pending
                except asyncio.CancelledError:
                    if self.broken is None:
                        if not _cancelled_by_object():
                            raise
                        # The object's code cancelled the call's task after its code was
                        # done (a watchdog): the call fails, it is not acknowledged.
                        error = _cancelled_by_code(delivery)
                        gave_up = True
                except BaseException as exc:
                    # A commit before this reply failed: the reply is never sent (the reset
                    # may land a moment later; the caller sees the commit's error either way).
                    gate_error = exc
                delivery.waited(self.now())
        if self.broken is None and not gave_up:
            # While the lab is paused, the release is a step the learner takes.
            permit = self.services.scheduler.permit(
                "reply", self.label, delivery.id,
                f"release the reply to {delivery.holder} ({delivery.method}) of {self.label}")
            if permit is not None:
                try:
                    await permit
                except asyncio.CancelledError:
                    if self.broken is None:
                        if not _cancelled_by_object():
                            raise
                        error = _cancelled_by_code(delivery)
                delivery.waited(self.now())  # the learner's step: with the output gate
        if gate_error is not None:
            error = self.broken if self.broken is not None else gate_error
        elif self.broken is not None and not (held and pending is not None and pending.done()):
            # (A reply that waited only for commits made before the failing one, and saw them
            # succeed, is still sent: workerd's OutputGate resolves waits registered before a
            # failed lock.)
            error = self.broken
        reply = delivery.reply
        if held:
            # What the caller got: a reset may have answered it with its error already.
            ok = (error is None if not reply.done() else
                  not reply.cancelled() and reply._exception is None)  # (not "retrieved")
            self.host.released.append((delivery.id, ok))
            if bus.active:
                bus.emit(ReplyReleased, self.label, self.object_id, delivery.id, ok)
        self.deliveries.discard(delivery)
        # The reply goes now: the call ends (a network leg back, if any, adds to it). Its
        # last phase ended at ``since`` (its code finished, or waited() moved it; a call a
        # reset answered was finished then, and waited() left it alone).
        delivery.end = delivery.since
        recent = self.host.recent
        if recent is not None:
            recent.append(delivery)
        if reply.done():  # the caller gave up, or a reset already answered
            return
        if error is not None:
            reply.set_exception(_fresh(error) if error is self.broken or error is gate_error
                                else error)
        else:
            reply.set_result(value)
        self.arm_idle_timer()

    async def _turn_over(self) -> None:
        """Wait until the current turn of this object is over, the code it started or made
        runnable included (the input gate is quiet), or until the object is reset."""
        quiet: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        def done() -> None:
            if not quiet.done():
                quiet.set_result(None)
        self.gate.on_quiet(done)
        # A reset drops the gate's quiet callbacks: stop waiting then too.
        self.turn_waiters.add(quiet)
        try:
            await quiet
        finally:
            self.turn_waiters.discard(quiet)

    # -- critical sections ---------------------------------------------------------------

    def start_critical_section(self, callback: Callable[[], Any], parent: Driver
                               ) -> asyncio.Future[Any]:
        section = CriticalSection(self, parent)
        if self.services.model == "serial" and parent.holder != "constructor":
            # Under "serial" the caller keeps the gate while it awaits, so the section cannot
            # wait for it: it runs at once, and nothing else can enter anyway.
            admission: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
            admission.set_result(_NoLock())
        else:
            admission = parent.gate.wait("critical section", priority=True,
                                         kind="critical section")
        self.critical_sections[section.result] = section
        self.track(spawn(section.run(admission, callback)))
        return section.result

    # -- idleness and eviction ------------------------------------------------------------

    @property
    def is_idle(self) -> bool:
        """No delivery unanswered, no task running, no commit pending."""
        return (not self.deliveries and self.queued == 0
                and all(t.done() for t in self.tasks)
                and not self.cache.pending_commits())

    def arm_idle_timer(self) -> None:
        """Evict this instance after ``lab.idle_timeout`` seconds of lab time without work
        (hibernate it after ``lab.hibernate_after`` if it has accepted WebSockets)."""
        timeout = self.services.idle_timeout
        if self._hibernatable():
            hibernate_after = self.services.hibernate_after
            if hibernate_after is not None and (timeout is None or hibernate_after < timeout):
                timeout = hibernate_after
        if timeout is None or self.broken is not None or self.evicted:
            return
        self._cancel_idle_timer()
        self._idle_timer = self.services.clock.call_at(self.services.clock.now() + timeout,
                                                  self._idle_check)

    def _cancel_idle_timer(self) -> None:
        if self._idle_timer is not None:
            self._idle_timer.cancel()
            self._idle_timer = None

    def _idle_check(self) -> None:
        self._idle_timer = None
        if self.broken is not None or self.evicted:
            return
        if self.is_idle:
            self.evict(reason="hibernation" if self._hibernatable() else "idle")
        else:
            self.arm_idle_timer()

    def _hibernatable(self) -> bool:
        sockets = self.host.websockets
        return sockets is not None and len(sockets) > 0

    def evict(self, *, reason: str) -> None:
        """Drop the idle instance from memory. Not a failure: stubs keep working, storage is
        kept, and the next delivery constructs the object again."""
        if self.broken is not None or self.evicted:
            return
        self.evicted = True
        self._cancel_idle_timer()
        self.cache.closed = True
        self.host.on_reset(self, None, False, "evicted")
        if self.bus.active:
            self.bus.emit(InstanceEvicted, self.label, self.object_id, reason)

    # -- resets --------------------------------------------------------------------------

    def reset(self, error: BaseException, *, reason: str, stubs_broken: bool = True,
              spare_held_replies: bool = False) -> None:
        """Drop this instance: fail everything in flight with ``error``, lose unflushed writes.

        ``spare_held_replies``: replies held only by commits made before the failing one are
        left to land (a failed SQLite COMMIT: the commits before it are already local).
        """
        if self.broken is not None:
            return
        self.broken = error
        self.gate.break_(error)
        for waiter in self.turn_waiters:
            if not waiter.done():
                waiter.set_result(None)
        for section in self.critical_sections.values():
            section.inner_gate.break_(error)
        self.output_gate.break_(error)
        lost = self.cache.close(error)
        self.host.on_reset(self, error, stubs_broken, reason)
        self._cancel_idle_timer()
        host = self.host
        if reason != "labClosed":
            host.resets += 1
            host.last_reset = f"{reason}: {lost} uncommitted write(s) lost"
        if self.bus.active:
            self.bus.emit(InstanceReset, self.label, self.object_id, reason, str(error),
                          stubs_broken, lost)
        if reason != "labClosed":
            host.reset_seq = self.bus.seq
        if self.host.websockets is not None and not self.evicted:
            self.host.websockets.reset(reason, error)  # a reset disconnects the object's sockets
        # Answer every caller now: a delivery task cancelled before it ever ran cannot. A reply
        # held only by commits made before the failure is left to land (their outcome decides).
        spared: set[asyncio.Future[Any]] = set()
        for delivery in self.deliveries:
            waiting_for = delivery.waiting_for
            if (spare_held_replies and waiting_for is not None and not waiting_for.done()
                    and delivery.task is not None):
                spared.add(delivery.task)
                continue
            if not delivery.reply.done():
                delivery.finish(self.now())
                delivery.reply.set_exception(_fresh(error))
                if reason == "labClosed":
                    delivery.reply.exception()  # closing is not news to unawaited callers
        self.deliveries.clear()
        current = asyncio.current_task()
        flush = self.cache._flush_task
        for task in list(self.tasks):
            if (task is not current and task is not flush and task not in spared
                    and not task.done()):
                task.cancel()
