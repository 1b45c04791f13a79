"""Stepping: pause the runtime, see what could happen next, and choose.

Normally every transition of the runtime happens as soon as it can. ``lab.pause()`` changes that:
the runtime keeps running up to the next *transition* and waits there. A transition is one of:

=====================  =====================================================================
kind                   what happens when it is taken
=====================  =====================================================================
``admit``              a queued delivery is admitted by its object's input gate and starts
``resume``             a delivery whose awaited I/O is done re-enters through the input gate
``critical section``   a ``blockConcurrencyWhile`` callback starts
``constructor``        the object's constructor runs
``flush``              the pending writes of an object leave the cache as one batch
``commit``             a batch's commit is reported durable (replies behind it may go)
``reply``              a reply held by the output gate is released to its caller
=====================  =====================================================================

``lab.choices()`` lists the transitions that are legal *now*: only those the gates allow (a
CLOSED input gate offers nobody; an open one offers each of its waiters, in any order the learner
likes). ``await lab.choose(i)`` takes one and lets the runtime run until it reaches the next
transitions; ``await lab.step()`` takes the one that would have happened first. This is how a
lesson lets a learner play scheduler and try to produce a lost update: with the gates on, no
sequence of choices can interleave a read and a write of two deliveries.

Breakpoints pause the lab by themselves: ``lab.break_on("commit", object="COUNTER:room-1")``
stops before every commit of that object. While paused, the kernel stays free: cells run, stub
calls can be made (they queue), widgets respond.

A call made while the lab is paused waits at its object's gate like any other delivery; so that
a learner who paused in one cell is not left staring at a silent cell later, the first client
call of each pause prints one line, as ordinary output (stdout: in Jupyter plain text under the
cell, not the red box of stderr, because nothing went wrong): "the lab is paused:
COUNTER:a.increment() waits until you press Play or Step". ``lab.scheduler.note_paused_calls =
False`` keeps it quiet.

Deliberately not transitions: storage reads and timers complete by themselves (time is the
clock's business: ``lab.clock.advance()`` on a manual clock); object code between two awaits is
one indivisible turn.
"""

from __future__ import annotations

import asyncio
import itertools
import sys
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache, partial
from operator import attrgetter
from typing import TYPE_CHECKING, Any, Protocol

from .events import Paused, Resumed, RuntimeEvent, StepTaken

if TYPE_CHECKING:
    from .bus import EventBus

__all__ = ["TRANSITION_KINDS", "Breakpoint", "Choice", "Scheduler"]

class _Waiter(Protocol):
    """One waiter at an input gate, as the scheduler sees it (``_gates.py`` makes them)."""

    kind: str
    holder: str
    seq: int


class InputGate(Protocol):
    """An input gate, as the scheduler sees it: the gates register themselves with it
    (``_gates.py`` sits above and hands itself down)."""

    @property
    def label(self) -> str: ...

    def waiting(self) -> list[Any]: ...
    def waiting_head(self) -> Any: ...
    def admit(self, waiter: Any) -> None: ...
    def _admit_next(self) -> None: ...


TRANSITION_KINDS = ("admit", "resume", "critical section", "constructor", "task", "flush",
                    "commit", "reply")

#: Printed once per pause, at the first call a client makes while paused.
PAUSED_CALL_MESSAGE = ("the lab is paused: %s.%s() waits until you press Play or Step "
                       "(lab.resume() / await lab.step())")


class Choice:
    """One transition the learner may take now (see ``lab.choices()``)."""

    __slots__ = ("_take", "delivery", "description", "index", "kind", "object", "seq")

    def __init__(self, kind: str, obj: str, delivery: int, description: str, seq: int,
                 take: Callable[[], None]) -> None:
        self.kind = kind
        self.object = obj
        self.delivery = delivery
        self.description = description
        self.seq = seq
        self.index = -1
        self._take = take

    def _key(self) -> tuple[str, str, int, int]:
        """What identifies this transition across two calls of ``choices()``."""
        return (self.kind, self.object, self.delivery, self.seq)

    def __repr__(self) -> str:
        return f"[{self.index}] {self.description}"


@dataclass
class Breakpoint:
    """Pause before transitions of ``kind`` (any if None) at ``object`` (any if None)."""

    kind: str | None
    object: str | None
    _scheduler: Scheduler | None = None

    def matches(self, kind: str, obj: str) -> bool:
        return (self.kind is None or self.kind == kind) and (self.object is None
                                                              or self.object == obj)

    def remove(self) -> None:
        if self._scheduler is not None and self in self._scheduler._breakpoints:
            self._scheduler._breakpoints.remove(self)


class _Permit:
    __slots__ = ("delivery", "description", "future", "kind", "object", "seq")

    def __init__(self, kind: str, obj: str, delivery: int, description: str, seq: int,
                 future: asyncio.Future[None]) -> None:
        self.kind = kind
        self.object = obj
        self.delivery = delivery
        self.description = description
        self.seq = seq
        self.future = future


#: How a gate's waiter is described as a choice (see ``Scheduler._gate_choice``).
_VERBS = {"admit": "admit", "resume": "resume"}
_SECTIONS = ("critical section", "constructor")
_by_seq = attrgetter("seq")


@lru_cache(maxsize=1024)
def _delivery_number(holder: str) -> int:
    """The delivery a holder belongs to: "delivery 3", or "delivery 3 task 5" (a task that
    delivery's code started); 0 for the constructor and critical sections."""
    words = holder.split(" ")
    if len(words) >= 2 and words[0] == "delivery" and words[1].isdigit():
        return int(words[1])
    return 0


class Scheduler:
    """The lab's transition scheduler (``lab.pause()``, ``lab.step()``, ``lab.choices()``)."""

    def __init__(self, bus: EventBus, io_in_flight: Callable[[], int]) -> None:
        """``bus``: where transitions are announced; ``io_in_flight()``: storage calls on
        their way (a settled lab waits for them)."""
        self._bus = bus
        self._io_in_flight = io_in_flight
        self.paused = False
        #: The input gates, held weakly (a gate goes with its evicted or closed object). A
        #: plain list of references, pruned as it is read: iterating a WeakSet costs several
        #: times more, and ``choices()`` runs at every step of an exploration.
        self._gate_refs: list[weakref.ref[InputGate]] = []
        self._prune_at = 64
        self._permits: list[_Permit] = []
        self._breakpoints: list[Breakpoint] = []
        self._seq = itertools.count(1)
        self.steps_taken = 0
        #: The description of the last transition taken ("" before any).
        self.last_step = ""
        #: Whether this pause already told the learner that calls wait (once per pause).
        self._told_paused = False
        #: Print "the lab is paused: ... waits" at the first call of a pause. Code that pauses a
        #: lab of its own to play scheduler (the exercise checks, trace replay) turns it off.
        self.note_paused_calls = True
        #: With ``Lab(record=True)``: every transition taken, in order (for lab.trace()).
        self.recording = False
        self.transitions: list[dict[str, Any]] = []

    def record(self, kind: str, obj: str, holder: str) -> None:
        """Note a transition that was taken (gate grants and released permits)."""
        self.transitions.append({"kind": kind, "object": obj, "holder": holder})

    def next_seq(self) -> int:
        return next(self._seq)

    # -- hooks the runtime calls -----------------------------------------------------------

    def register_gate(self, gate: InputGate) -> None:
        self._gate_refs.append(weakref.ref(gate))
        if len(self._gate_refs) >= self._prune_at:
            # A lab that never pauses never reads the list: prune it here now and then
            # (when it doubled), so evicted objects' dead references do not pile up.
            self._gates()
            self._prune_at = max(64, 2 * len(self._gate_refs))

    def _gates(self) -> list[InputGate]:
        """The live gates (dead references are dropped on the way)."""
        live = [gate for gate in (ref() for ref in self._gate_refs) if gate is not None]
        if len(live) != len(self._gate_refs):
            self._gate_refs = [weakref.ref(gate) for gate in live]
        return live

    def _should_hold(self, kind: str, obj: str) -> bool:
        if self.paused:
            return True
        for point in self._breakpoints:
            if point.matches(kind, obj):
                self._pause(f"breakpoint: {kind} at {obj}")
                return True
        return False

    def holds_admission(self, gate: InputGate, waiter: _Waiter) -> bool:
        """Called by a gate before it admits ``waiter`` on its own."""
        if not self.paused and not self._breakpoints:
            return False
        return self._should_hold(waiter.kind, gate.label)

    def permit(self, kind: str, obj: str, delivery: int, description: str
               ) -> asyncio.Future[None] | None:
        """None to go ahead now; else a future to await until the learner takes this step."""
        holder = f"delivery {delivery}" if delivery else ""
        if not self.paused and not self._breakpoints:
            if self.recording:
                self.record(kind, obj, holder)
            return None
        if not self._should_hold(kind, obj):
            if self.recording:
                self.record(kind, obj, holder)
            return None
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._permits.append(_Permit(kind, obj, delivery, description, self.next_seq(), fut))
        return fut

    def note_call(self, target: str, method: str) -> None:
        """A client called ``target.method()``: while paused, say once that it waits."""
        if self.paused and not self._told_paused and self.note_paused_calls:
            self._told_paused = True
            # A note, not a warning: printed to stdout (looked up now, so whoever captures
            # sys.stdout, a notebook cell or a test, gets it).
            print(PAUSED_CALL_MESSAGE % (target, method), file=sys.stdout, flush=True)

    # -- the learner's controls ------------------------------------------------------------

    def _pause(self, reason: str) -> None:
        if self.paused:
            return
        self.paused = True
        self._told_paused = False
        bus = self._bus
        if bus.active:
            bus.emit(Paused, "", "", reason)

    def pause(self) -> None:
        self._pause("requested")

    def resume(self) -> None:
        """Run freely again: every held transition happens, in the order it became ready."""
        if not self.paused:
            return
        self.paused = False
        bus = self._bus
        if bus.active:
            bus.emit(Resumed, "", "")
        permits, self._permits = self._permits, []
        for permit in sorted(permits, key=lambda p: p.seq):
            self._release(permit)
        for gate in sorted(self._gates(), key=lambda g: min((w.seq for w in g.waiting()),
                                                          default=0)):
            gate._admit_next()

    def choices(self) -> list[Choice]:
        """The transitions that are legal now, oldest first."""
        found: list[Choice] = []
        for gate in self._gates():
            for waiter in gate.waiting():
                found.append(self._gate_choice(gate, waiter))
        for permit in self._permits:
            if not permit.future.done():
                found.append(Choice(permit.kind, permit.object, permit.delivery,
                                    permit.description, permit.seq,
                                    partial(self._release, permit)))
        found.sort(key=_by_seq)
        for index, choice in enumerate(found):
            choice.index = index
        return found

    def _release(self, permit: _Permit) -> None:
        if self.recording:
            self.record(permit.kind, permit.object,
                        f"delivery {permit.delivery}" if permit.delivery else "")
        if permit in self._permits:
            self._permits.remove(permit)
        if not permit.future.done():
            permit.future.set_result(None)

    async def choose(self, index: int | Choice) -> Choice:
        """Take choice ``index`` of ``choices()`` (or that ``Choice`` itself, if it is still
        legal), then run until the next transitions."""
        await self.settle()
        options = self.choices()
        if isinstance(index, Choice):
            wanted = index._key()
            found = [c for c in options if c._key() == wanted]
            if not found:
                listing = "\n".join(f"  {c!r}" for c in options) or "  (none: nothing can happen)"
                raise LookupError(f"{index.description!r} is no longer possible; the choices "
                                  f"now are:\n{listing}")
            index = found[0].index
        if not isinstance(index, int) or not 0 <= index < len(options):
            listing = "\n".join(f"  {c!r}" for c in options) or "  (none: nothing can happen)"
            raise IndexError(f"no choice {index!r}; the choices now are:\n{listing}")
        choice = options[index]
        self._take(choice)
        await self.settle()
        return choice

    async def take(self, choice: Choice) -> None:
        """Take ``choice``, straight from ``choices()`` with nothing run since, then run until
        the next transitions. ``choose()`` without its checks: the fast path for code that
        steps a lab thousands of times (``durable_lab.explore``). One quiet pass of the event
        loop ends the settle (``choose`` waits for two): nothing is left to run once the ready
        queue is empty and no storage call is in flight."""
        self._take(choice)
        await self.settle(passes=1)

    def _take(self, choice: Choice) -> None:
        self.steps_taken += 1
        self.last_step = choice.description
        bus = self._bus
        if bus.active:
            bus.emit(StepTaken, choice.object, "", choice.kind, choice.description)
        choice._take()

    async def step(self) -> Choice | None:
        """Take the transition that would have happened first; None if there is none."""
        if not self.paused:
            self.pause()
        choice = self._oldest()
        if choice is None or self._io_in_flight():
            # Something may still be on its way to a transition: let it arrive first.
            await self.settle()
            choice = self._oldest()
        if choice is None:
            return None
        self._take(choice)
        await self.settle()
        return choice

    def _oldest(self) -> Choice | None:
        """The transition that would have happened first: only the head of each gate and the
        pending permits are looked at, so a step costs the same with 10 or 10,000 queued."""
        best: Choice | None = None
        for gate in self._gates():
            allowed = gate.waiting_head()
            if allowed is not None and (best is None or allowed.seq < best.seq):
                best = self._gate_choice(gate, allowed)
        for permit in self._permits:
            if not permit.future.done() and (best is None or permit.seq < best.seq):
                best = Choice(permit.kind, permit.object, permit.delivery, permit.description,
                              permit.seq, partial(self._release, permit))
        if best is not None:
            best.index = 0
        return best

    def _gate_choice(self, gate: InputGate, waiter: _Waiter) -> Choice:
        kind = waiter.kind
        label = gate.label
        if kind in _SECTIONS:
            description = f"start the {kind} at {label}"
        else:
            description = f"{_VERBS.get(kind, 'start')} {waiter.holder} at {label}"
        return Choice(kind, label, _delivery_number(waiter.holder), description, waiter.seq,
                      partial(gate.admit, waiter))

    async def step_until(self, condition: type[RuntimeEvent] | Callable[[RuntimeEvent], bool],
                         *, max_steps: int = 10_000) -> RuntimeEvent | None:
        """Step until an event matching ``condition`` (an event type or a predicate) appears.

        Returns that event, or None if the runtime ran out of transitions first.
        """
        matches: Callable[[RuntimeEvent], bool]
        if isinstance(condition, type):
            event_type = condition

            def is_of_type(event: RuntimeEvent) -> bool:
                return isinstance(event, event_type)

            matches = is_of_type
        else:
            matches = condition
        seen: list[RuntimeEvent] = []
        subscription = self._bus.subscribe(
            lambda event: seen.append(event) if not seen and matches(event) else None)
        try:
            for _ in range(max_steps):
                if seen:
                    return seen[0]
                if await self.step() is None:
                    return seen[0] if seen else None
            return seen[0] if seen else None
        finally:
            subscription.close()

    def break_on(self, kind: str | None = None, object: str | None = None) -> Breakpoint:
        """Pause before every transition of ``kind`` at ``object`` (a label like "C:room-1")."""
        if kind is not None and kind not in TRANSITION_KINDS:
            raise ValueError(f"kind must be one of {', '.join(TRANSITION_KINDS)} (or None), "
                             f"got {kind!r}")
        point = Breakpoint(kind, object, self)
        self._breakpoints.append(point)
        return point

    def clear_breakpoints(self) -> None:
        self._breakpoints.clear()

    async def settle(self, *, passes: int = 2, limit: float = 5.0) -> None:
        """Let the event loop run until nothing is runnable but held transitions.

        Storage I/O in flight (SQLite reads and commits on their threads) is waited for; timers
        are not (time belongs to the clock).
        """
        loop = asyncio.get_running_loop()
        quiet = 0
        deadline = loop.time() + limit
        while quiet < passes and loop.time() < deadline:
            if self._io_in_flight():
                quiet = 0
                await asyncio.sleep(0.0005)
                continue
            await asyncio.sleep(0)
            ready = getattr(loop, "_ready", None)
            quiet = quiet + 1 if ready is not None and len(ready) == 0 else 0

    def __repr__(self) -> str:
        state = "paused" if self.paused else "running"
        return f"<Scheduler {state}, {len(self.choices())} choices>"
