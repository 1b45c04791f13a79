"""The lab's event stream: one typed, immutable record for every step the runtime takes.

Everything the panels draw and the lessons point at comes from these records. They are slotted
dataclasses named in the past tense; they hold ids, labels and numbers, never live objects, so a
list of them can be stored, printed, compared and replayed. Treat them as read-only: every
subscriber gets the same record. (They are not ``frozen``: a frozen dataclass sets each field
through ``object.__setattr__``, which made building an event more than twice as slow, and a
lab with a panel open builds tens of thousands a second; see bench/RESULTS-watching.txt.)

Two ways to build one. Readers and tests use keywords, with ``object`` and ``object_id``
defaulting to ``""``: ``StorageOp(seq=1, time=0.0, delivery=3, op="get", keys=("n",),
cache="hit")``. The runtime emits with every field given by position, in the order the class
declares them (``seq``, ``time``, ``object``, ``object_id``, then the class's own fields; see
:func:`build`): matching eight keywords made building an event three times as slow as filling
eight slots, and that was most of what a subscriber cost a busy lab.

Every event has:

- ``seq``: position in the lab's stream (1, 2, 3, ...), total order of everything that happened;
- ``time``: the lab clock's time (epoch seconds) when it happened;
- ``object``: a short label of the object it concerns (``"COUNTER:room-1"``, or the namespace and
  the first hex digits of the id for unnamed objects), ``""`` for lab-wide events;
- ``object_id``: the full 64-hex id (``""`` for lab-wide events).

Deliveries (an RPC call, a ``fetch``, later alarms and WebSocket messages) are numbered by the
lab: ``delivery`` fields name them, so a timeline can draw one lane per delivery.

The vocabulary (see docs/events.md for a worked example):

- a delivery is *queued* at the object's input gate, *started* when admitted, its *turn ends*
  each time it awaits something pending, it is *resumed* when admitted again through the gate,
  and it *finishes* (ok or with an error);
- the input gate is *locked* (``InputGateLocked``; the panels say CLOSED) for each holder it
  admits and *unlocked* (``InputGateUnlocked``; OPEN) when that holder releases;
- storage operations say whether the cache answered (``hit``) or storage had to be read
  (``miss``); writes only change the cache (``write``);
- a *flush* takes every pending write as one batch and *commits* it in one transaction;
- a reply (or an outgoing call) is *held* behind the output gate until the writes before it are
  committed, then *released*;
- an *instance* is constructed, and may be *reset* (in-memory state dropped).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any

__all__ = [
    "CommitDone",
    "CommitFailed",
    "CriticalSectionEnded",
    "CriticalSectionStarted",
    "DeliveryFinished",
    "DeliveryQueued",
    "DeliveryRefused",
    "DeliveryResumed",
    "DeliveryStarted",
    "FaultInjected",
    "FlushStarted",
    "InputGateLocked",
    "InputGateUnlocked",
    "InstanceConstructed",
    "InstanceEvicted",
    "InstanceReset",
    "LabClosed",
    "NetworkHopEnded",
    "NetworkHopStarted",
    "ObjectPlaced",
    "OutgoingCallHeld",
    "OutgoingCallReleased",
    "Paused",
    "ReplyHeld",
    "ReplyReleased",
    "Resumed",
    "RuntimeEvent",
    "StepTaken",
    "StorageOp",
    "TurnEnded",
    "WebSocketAccepted",
    "WebSocketAutoResponse",
    "WebSocketClosed",
    "WebSocketMessageReceived",
    "WebSocketMessageReleased",
    "WebSocketMessageSent",
    "build",
    "describe",
]


def _positional_filler(names: list[str]) -> Any:
    """``fill(event, seq, time, values)``: set ``seq``, ``time``, then the other fields, in
    declaration order, from the tuple ``values``, in one unpacking assignment.

    Generated, as dataclasses generate ``__init__``, because it is the cheapest way CPython has
    to fill slots: a function taking eight separate arguments spent twice as many machine
    instructions setting up its frame as this spends unpacking (valgrind, see
    bench/RESULTS-watching.txt). ``names`` are a dataclass's field names: identifiers.
    """
    targets = "".join(f"event.{name}, " for name in names[2:])
    source = (f"def fill(event, seq, time, values):\n"
              f"    event.seq = seq\n"
              f"    event.time = time\n"
              f"    ({targets}) = values\n")
    namespace: dict[str, Any] = {}
    exec(source, namespace)
    return namespace["fill"]


def _event(cls: type) -> type:
    """Make ``cls`` a slotted keyword dataclass that :func:`build` can also fill by position."""
    cls = dataclass(slots=True, kw_only=True)(cls)
    cls._fill = _positional_filler([f.name for f in fields(cls)])  # type: ignore[attr-defined]
    return cls


_new = object.__new__


def build(event_type: type[RuntimeEvent], *values: Any) -> RuntimeEvent:
    """``event_type`` with every field given by position, in declaration order (no defaults).

    ``build(DeliveryStarted, 7, t, "C:a", id_hex, 3, "increment")`` is
    ``DeliveryStarted(seq=7, time=t, object="C:a", object_id=id_hex, delivery=3,
    method="increment")``, built without matching keywords. The bus builds events this way.
    """
    declared = fields(event_type)  # type: ignore[arg-type]  # (every event type is a dataclass)
    if len(values) != len(declared):
        raise TypeError(f"build({event_type.__name__}, ...) takes a value for each of its "
                        f"{len(declared)} fields "
                        f"({', '.join(f.name for f in declared)}), got {len(values)}")
    event = _new(event_type)
    event_type._fill(event, values[0], values[1], values[2:])  # type: ignore[attr-defined]
    return event


@_event
class RuntimeEvent:
    """Base of every event on the stream."""

    seq: int
    time: float
    object: str = ""
    object_id: str = ""

    @property
    def kind(self) -> str:
        """The event's type name, e.g. ``"FlushStarted"`` (handy for filters and tables)."""
        return type(self).__name__


# -- deliveries --------------------------------------------------------------------------------


@_event
class DeliveryQueued(RuntimeEvent):
    """A delivery arrived at the object and waits at its input gate."""

    delivery: int
    kind_of_delivery: str  # "rpc", "fetch", "alarm", "websocket"
    method: str
    queue_length: int  # deliveries waiting to start at this object, this one included


@_event
class DeliveryRefused(RuntimeEvent):
    """A delivery was refused without being queued (the object's queue was full)."""

    delivery: int
    method: str
    reason: str


@_event
class DeliveryStarted(RuntimeEvent):
    """The input gate admitted the delivery; the object's code starts running for it."""

    delivery: int
    method: str


@_event
class TurnEnded(RuntimeEvent):
    """The delivery's code awaited something pending: its turn is over.

    ``awaiting`` says what: ``"storage"`` (a read that needs I/O: the input gate stays CLOSED),
    ``"io"`` (a timer, another object, ``sync()``...: the gate opens and others may run),
    ``"blockConcurrencyWhile"`` (a critical section runs next) or ``"yield"`` (``sleep(0)``).
    """

    delivery: int
    awaiting: str
    gate_held: bool


@_event
class DeliveryResumed(RuntimeEvent):
    """What the delivery awaited is done and the input gate admitted its continuation."""

    delivery: int


@_event
class DeliveryFinished(RuntimeEvent):
    """The delivery's code is done (its reply may still be held by the output gate)."""

    delivery: int
    ok: bool
    error: str = ""


# -- input gate --------------------------------------------------------------------------------


@_event
class InputGateLocked(RuntimeEvent):
    """The input gate admitted ``holder`` (``"delivery 7"``, ``"constructor"``, ...)."""

    holder: str
    waiting: int  # still queued behind it
    depth: int = 0  # 0 = the object's gate, 1+ = inside nested critical sections


@_event
class InputGateUnlocked(RuntimeEvent):
    """``holder`` released the input gate; the next waiter, if any, is admitted next."""

    holder: str
    waiting: int
    depth: int = 0


@_event
class CriticalSectionStarted(RuntimeEvent):
    """A ``blockConcurrencyWhile`` callback started: nothing else enters until it settles."""

    delivery: int  # the delivery that called blockConcurrencyWhile (0: the constructor)
    depth: int


@_event
class CriticalSectionEnded(RuntimeEvent):
    """The critical section settled. ``ok=False`` means it raised: the object is reset."""

    delivery: int
    depth: int
    ok: bool
    error: str = ""


# -- storage -----------------------------------------------------------------------------------


@_event
class StorageOp(RuntimeEvent):
    """A storage call. ``cache`` is ``"hit"``, ``"miss"`` (needs I/O), ``"write"`` (the cache
    changed: a commit will follow) or ``"unchanged"`` (a write that changed nothing, e.g. the
    same value again: nothing is flushed or committed for it).

    On a SQLite-backed class every read is a ``"hit"`` (storage is synchronous there).
    """

    delivery: int
    op: str  # get, put, delete, list, deleteAll, sync, sql, transaction
    keys: tuple[str, ...]
    cache: str


@_event
class FlushStarted(RuntimeEvent):
    """A batch of pending writes left the cache for storage, as one transaction."""

    batch: int
    puts: tuple[str, ...]
    deletes: tuple[str, ...]
    delete_all: bool
    gated: bool  # True if the output gate waits for it (some write was confirmed)


@_event
class CommitDone(RuntimeEvent):
    """The batch is durable. ``keys`` is how many keys it wrote."""

    batch: int
    keys: int
    duration: float


@_event
class CommitFailed(RuntimeEvent):
    """The batch could not be committed: the output gate breaks and the object resets."""

    batch: int
    error: str
    injected: bool = False


# -- output gate -------------------------------------------------------------------------------


@_event
class ReplyHeld(RuntimeEvent):
    """A reply is ready but waits for the writes made before it to commit."""

    delivery: int
    waiting_for: int  # number of commits still pending at the time


@_event
class ReplyReleased(RuntimeEvent):
    """The writes before the reply are durable: the caller gets it now."""

    delivery: int
    ok: bool


@_event
class OutgoingCallHeld(RuntimeEvent):
    """A call from this object to another waits for this object's pending writes."""

    delivery: int
    target: str


@_event
class OutgoingCallReleased(RuntimeEvent):
    """The call left (or failed because the writes before it failed)."""

    delivery: int
    target: str
    ok: bool


# -- instances ---------------------------------------------------------------------------------


@_event
class InstanceConstructed(RuntimeEvent):
    """A new instance of the class was made (first use, or after a reset or eviction)."""

    class_name: str
    incarnation: int


@_event
class InstanceReset(RuntimeEvent):
    """The instance was dropped: in-memory state and unflushed writes are gone.

    ``reason`` is workerd's word for it (``inputGateBroken``, ``outputGateBroken``,
    ``constructorFailed``, ``codeUpdated``, ...); ``stubs_broken`` says whether stubs taken
    before now keep failing (a failure) or keep working (a code update).
    """

    reason: str
    error: str
    stubs_broken: bool
    #: Keys written and never committed, now lost: those waiting for the next flush, and
    #: those of the batch whose failed commit caused this reset.
    lost_writes: int


@_event
class InstanceEvicted(RuntimeEvent):
    """An idle instance was dropped from memory (not a failure): in-memory fields are gone,
    storage is kept, stubs keep working, and the next delivery runs the constructor again.
    ``reason`` is ``"idle"`` (``Lab(idle_timeout=...)``), ``"requested"`` (``lab.evict``) or
    ``"hibernation"``."""

    reason: str


@_event
class FaultInjected(RuntimeEvent):
    """A fault was armed (or, for crash/evict/code update, carried out) through ``lab.faults``.

    ``fault`` is the switch (``fail_commit``, ``fail_commits``, ``delay_commits``,
    ``fail_calls``, ``delay_calls``, ``fail_alarm``, ``crash``, ``code_update``, ``evict``);
    ``object`` is empty when it applies to every object.
    """

    fault: str
    detail: str


# -- WebSockets (durable_lab/websockets.py) ------------------------------------------------------
#
# ``socket`` numbers the accepted sockets of one object: 1, 2, 3, ... (kept across hibernation).


@_event
class WebSocketAccepted(RuntimeEvent):
    """The object accepted a hibernatable WebSocket (``ctx.acceptWebSocket``), with its tags."""

    delivery: int  # the delivery that accepted it (usually a fetch)
    socket: int
    tags: tuple[str, ...]


@_event
class WebSocketMessageReceived(RuntimeEvent):
    """A client sent a message; it is queued for ``webSocketMessage`` as delivery ``delivery``
    (a ``DeliveryQueued`` with ``kind_of_delivery="websocket"`` follows), waking a hibernated
    object."""

    delivery: int
    socket: int
    size: int  # bytes (UTF-8 for text)
    binary: bool


@_event
class WebSocketAutoResponse(RuntimeEvent):
    """A client's message matched ``setWebSocketAutoResponse``: the runtime answered it without
    running object code (a hibernated object stays hibernated)."""

    socket: int


@_event
class WebSocketMessageSent(RuntimeEvent):
    """The object called ``ws.send()``. ``held=True``: writes before it are not committed yet
    (or an earlier message on the socket is held), so it waits behind the output gate; otherwise
    the client has it now."""

    delivery: int  # the sending delivery (0 outside object code or for an auto-response)
    socket: int
    size: int
    binary: bool
    held: bool


@_event
class WebSocketMessageReleased(RuntimeEvent):
    """A held message left the output gate: delivered to the client (``ok=True``), or dropped
    because a commit before it failed or the socket closed meanwhile (``ok=False``)."""

    delivery: int
    socket: int
    ok: bool


@_event
class WebSocketClosed(RuntimeEvent):
    """A socket closed. ``initiator`` is ``"client"`` (its close frame, a disconnect or an
    error reached the object), ``"object"`` (the object's ``ws.close()`` reached the client) or
    ``"runtime"`` (a reset: 1011, a code update: 1012, ``lab.close()``: 1001)."""

    socket: int
    code: int
    reason: str
    was_clean: bool
    initiator: str


@_event
class LabClosed(RuntimeEvent):
    """``lab.close()`` began: from now on the lab refuses calls (``LabClosedError``).

    Lab-wide (``object`` is ``""``). Emitted once, before anything else ``close()`` does; then
    a ``Resumed`` if the lab was paused, the commits already under way landing (deliveries
    already queued may still run meanwhile), one ``InstanceReset`` with
    ``reason="labClosed"`` per live instance (``instances`` of them; their unflushed writes are
    lost), the ``DeliveryFinished``/``ReplyReleased`` (``ok=False``) of calls still in flight
    and ``WebSocketClosed`` (1001) of open sockets. Nothing is emitted after ``close()``
    returns. docs/events.md, "The lab", has the exact order.
    """

    instances: int  # live instances close() is about to reset


# -- placement and the network (durable_lab/network.py; only with Lab(network=...)) ----------------
#
# ``hop`` numbers one call's travel: the request leg and the reply leg of a call share it.


@_event
class ObjectPlaced(RuntimeEvent):
    """The object's first call placed it in ``region``, for good.

    ``reason``: ``"hint"`` (the stub's ``locationHint``), ``"caller"`` (no hint: near the caller
    that created it) or ``"jurisdiction"`` (restricted to a jurisdiction whose regions did not
    include the hint or the caller's region: the nearest of them).
    """

    region: str
    reason: str
    hint: str = ""  # the location hint of the stub that created it ("" if none)
    caller_region: str = ""
    jurisdiction: str = ""


@_event
class NetworkHopStarted(RuntimeEvent):
    """A message left for the network: a call's request (``leg="request"``, towards the object,
    before it is queued) or its reply (``leg="reply"``, after the output gate released it).
    It arrives ``delay`` seconds of lab time later (a ``NetworkHopEnded``)."""

    hop: int
    leg: str  # "request" or "reply"
    from_region: str
    to_region: str
    delay: float  # seconds, one way
    method: str
    caller: str = ""  # the calling object's label, or "client"


@_event
class NetworkHopEnded(RuntimeEvent):
    """The message arrived: a request is queued at the object next (``DeliveryQueued``); a reply
    is in the caller's hands."""

    hop: int
    leg: str
    from_region: str
    to_region: str
    delay: float
    method: str
    caller: str = ""


# -- stepping ----------------------------------------------------------------------------------


@_event
class Paused(RuntimeEvent):
    """The lab paused: transitions wait to be chosen (``reason``: requested, or a breakpoint)."""

    reason: str


@_event
class Resumed(RuntimeEvent):
    """The lab runs freely again."""


@_event
class StepTaken(RuntimeEvent):
    """The learner (or ``lab.step()``) took one transition while paused."""

    step_kind: str  # admit, resume, critical section, constructor, flush, commit, reply
    description: str


# -- in plain words (the tour, the event log, the lessons' printed traces) ---------------------

#: One line per kind of event a learner follows; the gate bookkeeping events have none.
_PLAIN_WORDS: dict[str, Callable[[Any], str]] = {
    "DeliveryQueued": lambda e: f"call {e.delivery} ({e.method}) queued, {e.queue_length} waiting",
    "DeliveryStarted": lambda e: f"call {e.delivery} admitted by the input gate",
    "TurnEnded": lambda e: (
        f"call {e.delivery} awaits {e.awaiting}: gate "
        + ("stays CLOSED" if e.gate_held else "OPENS")
    ),
    "DeliveryResumed": lambda e: f"call {e.delivery} resumes (admitted again)",
    "DeliveryFinished": lambda e: (f"call {e.delivery} finished"
                                   + ("" if e.ok else f" with {e.error}")),
    "StorageOp": lambda e: f"call {e.delivery}: {e.op}({', '.join(e.keys)}) -> {e.cache}" + (
        " (the same as the cache holds: nothing to commit)" if e.cache == "unchanged" else ""),
    "FlushStarted": lambda e: (f"flush #{e.batch}: {len(e.puts)} puts, {len(e.deletes)} "
                               "deletes, one transaction"),
    "CommitDone": lambda e: f"commit #{e.batch} durable ({e.keys} keys)",
    "CommitFailed": lambda e: f"commit #{e.batch} FAILED: {e.error}",
    "ReplyHeld": lambda e: f"reply to call {e.delivery} HELD by the output gate",
    "ReplyReleased": lambda e: (f"reply to call {e.delivery} released"
                                + ("" if e.ok else " as an error")),
    "InstanceConstructed": lambda e: f"{e.class_name} constructed (incarnation {e.incarnation})",
    "InstanceReset": lambda e: (f"object RESET ({e.reason}): {e.lost_writes} uncommitted "
                                "writes lost"),
    "InstanceEvicted": lambda e: (f"object EVICTED ({e.reason}): its in-memory state is "
                                  "dropped, storage kept; the next call constructs it again"),
    "LabClosed": lambda e: f"the lab is CLOSED (lab.close()): {e.instances} live object(s) "
                           "closing, calls refused from now on",
    "ObjectPlaced": lambda e: f"placed in {e.region} " + {
        "hint": "(its location hint)", "caller": "(near the caller that created it)",
        "jurisdiction": f"(the nearest region of jurisdiction {e.jurisdiction!r})",
    }.get(e.reason, f"({e.reason})"),
    "NetworkHopStarted": lambda e: f"{e.leg} of {e.method} leaves {e.from_region} for "
                                   f"{e.to_region} ({e.delay * 1000:.0f} ms one way)",
    "NetworkHopEnded": lambda e: f"{e.leg} of {e.method} arrives in {e.to_region}",
}


def describe(event: RuntimeEvent) -> str | None:
    """A one-line, plain-words description of an event (None for gate bookkeeping events)."""
    render = _PLAIN_WORDS.get(event.kind)
    return None if render is None else render(event)
