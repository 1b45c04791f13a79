"""Reducers: from the lab's events to the state and rows the panels draw. No UI imports.

Every panel is a reducer plus a view (house style, rule 21). The reducers here take
``durable_lab.events`` records in stream order and keep just enough state to draw:

- :class:`ObjectState` / :class:`ObjectsReducer`: what one object looks like *now* (mailbox
  chips, input gate and its holder, the running turn, awaits in flight, dirty keys, batches
  flying to storage, replies held by the output gate);
- :class:`TimelineReducer`: closed segments (one lane per delivery) and commit markers, as
  column rows ready for ``ColumnDataSource.stream``;
- :class:`StorageReducer`: per object, each key's state (pending, flushing, committed, lost);
- :class:`FleetReducer`: per object load, queue length and status;
- :class:`MetricsReducer`: throughput, queue depth, batch sizes, latency against writes;
- :func:`describe_event`: one line of plain words per event, for the event log.

All of them are bounded: they keep per-object state for at most ``max_objects`` objects (least
recently active dropped first) and per-object key tables of at most ``max_keys`` keys. They
never read the runtime: events in, rows out, so they are tested with recorded or synthetic
events and no widgets at all. They mutate their own state for speed (a dashboard folds about
10,000 events a second); ``fold(reducer, events)`` is the pure-looking entry point for tests.

Each has ``apply(event)`` (one event) and ``consume(events)`` (a batch, what the panels call):
``consume`` skips, before any call, the events its reducer ignores (``RELEVANT``, or another
object's under ``only``). A dashboard hands every event to five reducers; one Python call per
event and reducer saved is most of what it costs a busy lab (bench/RESULTS-watching.txt).
"""

from __future__ import annotations

import dataclasses
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from durable_lab import events as ev
from durable_lab.events import describe as _describe

__all__ = [
    "BATCH_BINS",
    "GATE_COLUMNS",
    "GATE_LANES",
    "FleetReducer",
    "GateLanes",
    "MetricsReducer",
    "ObjectState",
    "ObjectsReducer",
    "StorageReducer",
    "TimelineReducer",
    "describe_event",
    "fold",
]


def fold(reducer: Any, events: Iterable[ev.RuntimeEvent]) -> Any:
    """Apply ``events`` in order to ``reducer`` and return it (handy in tests and notebooks)."""
    consume = getattr(reducer, "consume", None)
    if consume is not None:
        consume(list(events))
    else:
        for event in events:
            reducer.apply(event)
    return reducer


def _objects_of(snap: Any) -> Sequence[Any]:
    """The object snapshots in a ``durable_lab`` ``LabSnapshot``, or the one ``ObjectSnapshot``."""
    objects = getattr(snap, "objects", None)
    return (snap,) if objects is None else objects


def _delivery_of(holder: str) -> int | None:
    head, _, number = holder.rpartition(" ")
    return int(number) if head == "delivery" and number.isdigit() else None


class _Lru(OrderedDict[str, Any]):
    """An ordered dict that forgets its least recently touched entries beyond ``limit``."""

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = limit
        self.forgotten = 0

    def touch(self, key: str, make: Any) -> Any:
        value = self.get(key)
        if value is None:
            value = self[key] = make(key)
            if len(self) > self.limit:
                self.popitem(last=False)
                self.forgotten += 1
        else:
            self.move_to_end(key)
        return value


# -- object view -----------------------------------------------------------------------------


@dataclass
class ObjectState:
    """One object as the object view draws it. Every field is plain data."""

    label: str
    object_id: str = ""
    status: str = "unknown"  # unknown, not started, live, idle, reset, evicted, closed
    incarnation: int = 0
    #: Deliveries queued at the input gate, oldest first: delivery -> method.
    mailbox: dict[int, str] = field(default_factory=dict)
    gate_holder: str = ""  # "" = the gate is open
    gate_waiting: int = 0
    critical_section: bool = False
    running: int | None = None  # the delivery whose turn runs now
    methods: dict[int, str] = field(default_factory=dict)  # started, not yet answered
    awaiting: dict[int, str] = field(default_factory=dict)  # delivery -> "storage", "io"...
    dirty: dict[str, int] = field(default_factory=dict)  # key -> delivery that wrote it
    batches: dict[int, tuple[str, ...]] = field(default_factory=dict)  # in flight
    last_batch: tuple[int, int, bool] | None = None  # (batch, keys, ok) of the last to land
    held: dict[int, int] = field(default_factory=dict)  # replies held: delivery -> waiting_for
    released: deque[tuple[int, bool]] = field(default_factory=lambda: deque(maxlen=6))
    last_reset: str = ""  # "outputGateBroken: ...", shown as a banner
    reset_seq: int = 0
    last_fault: str = ""
    finished: int = 0
    commits: int = 0
    resets: int = 0
    last_seq: int = 0

    @property
    def gate_open(self) -> bool:
        return not self.gate_holder

    def clear_instance(self) -> None:
        self.mailbox.clear()
        self.gate_holder = ""
        self.gate_waiting = 0
        self.critical_section = False
        self.running = None
        self.methods.clear()
        self.awaiting.clear()
        self.dirty.clear()
        self.held.clear()

    def apply(self, e: ev.RuntimeEvent) -> None:
        if not e.object:  # (nothing of this object's changes)
            self.last_seq = e.seq
            return
        _fold_object_events((e,), lambda _label: self)

    def seed(self, snap: Any) -> None:
        """Start from ``snap`` (a ``durable_lab.ObjectSnapshot``): the state a reader of the
        stream would have folded from events 1..``snap.seq``. Fold only later events next."""
        self.object_id = snap.object_id or self.object_id
        if snap.status == "not started":
            # Calls queued at an instance not constructed yet: no status event so far.
            self.status = "unknown" if snap.in_memory else "not started"
        else:
            self.status = snap.status
        self.incarnation = snap.incarnation
        self.mailbox = dict(snap.mailbox)
        self.gate_holder = snap.gate_holder
        self.gate_waiting = len(snap.gate_waiters)
        self.critical_section = snap.critical_section
        self.running = snap.running
        self.methods = snap.methods
        self.awaiting = dict(snap.awaiting)
        # (Who wrote a pending key is not kept by the runtime: 0, "before the panel".)
        self.dirty = dict.fromkeys(snap.dirty, 0)
        self.batches = dict(snap.batches)
        self.last_batch = snap.last_batch
        self.held = dict(snap.held)
        self.released = deque(snap.released, maxlen=self.released.maxlen)
        self.last_reset = snap.last_reset
        self.reset_seq = snap.reset_seq
        self.last_fault = snap.last_fault
        self.finished = snap.finished
        self.commits = snap.commits
        self.resets = snap.resets
        self.last_seq = max(self.last_seq, snap.seq)


def _fold_object_events(events: Sequence[ev.RuntimeEvent],
                        state_of: Callable[[str], ObjectState],
                        lab_wide: ObjectsReducer | None = None, only: str | None = None
                        ) -> None:
    """Fold each event into the :class:`ObjectState` of its object (``state_of(label)``, asked
    once per object per batch); the scheduler's events (pauses, steps) into ``lab_wide``.
    ``only``: fold that object's events and skip the others' (the scheduler's still count).

    One loop with the branches inline, not a call per event: a dashboard folds every event of
    the lab here (see the module docstring). The event classes are local names and the
    branches go from the most frequent event of a call to the rarest (a trivial call emits two
    StorageOps and one each of queued, gate locked, started, gate unlocked, finished, reply
    held and released): each ``type(e) is ...`` tried costs every event that gets past it."""
    StorageOp, DeliveryQueued, DeliveryStarted = ev.StorageOp, ev.DeliveryQueued, ev.DeliveryStarted
    InputGateLocked, InputGateUnlocked = ev.InputGateLocked, ev.InputGateUnlocked
    DeliveryFinished, ReplyHeld, ReplyReleased = ev.DeliveryFinished, ev.ReplyHeld, ev.ReplyReleased
    FlushStarted, CommitDone, TurnEnded = ev.FlushStarted, ev.CommitDone, ev.TurnEnded
    DeliveryResumed = ev.DeliveryResumed
    states: dict[str, ObjectState] = {}
    for e in events:
        label = e.object
        if not label:
            if lab_wide is not None and type(e) in _SCHEDULER_EVENTS:
                lab_wide._scheduler_event(e)
            continue
        if only is not None and label != only:
            if lab_wide is not None and type(e) in _SCHEDULER_EVENTS:
                lab_wide._scheduler_event(e)
            continue
        s = states.get(label)
        if s is None:
            s = states[label] = state_of(label)
            if e.object_id:
                s.object_id = e.object_id
        s.last_seq = e.seq
        if type(e) is StorageOp:
            d = e.delivery
            awaiting = s.awaiting
            if awaiting and d in awaiting:  # code after a storage read runs on, gate held
                del awaiting[d]
                s.running = d
            if e.cache == "write":
                if e.op == "deleteAll":
                    s.dirty["*"] = d
                else:
                    dirty = s.dirty
                    for key in e.keys:
                        dirty[key] = d
        elif type(e) is DeliveryQueued:
            s.mailbox[e.delivery] = e.method
        elif type(e) is InputGateLocked:
            if e.depth == 0:
                s.gate_holder = holder = e.holder
                s.gate_waiting = e.waiting
                s.critical_section = holder == "critical section"
                mailbox = s.mailbox
                if mailbox and holder[:9] == "delivery ":
                    # Its first admission: it leaves the mailbox and its turn is the running
                    # one now (its DeliveryStarted comes one step of the runtime later; in
                    # between, a frame must not show it queued AND holding the gate).
                    tail = holder[9:]
                    if tail.isdigit():
                        d = int(tail)
                        method = mailbox.pop(d, None)
                        if method is not None:
                            s.methods[d] = method
                            s.running = d
        elif type(e) is DeliveryStarted:
            d = e.delivery
            s.mailbox.pop(d, None)
            s.methods[d] = e.method
            s.running = d
            s.status = "live"
        elif type(e) is InputGateUnlocked:
            if e.depth == 0:
                s.gate_holder = ""
                s.gate_waiting = e.waiting
                s.critical_section = False
        elif type(e) is DeliveryFinished:
            d = e.delivery
            if s.awaiting:
                s.awaiting.pop(d, None)
            s.methods.pop(d, None)
            if s.running == d:
                s.running = None
            s.finished += 1
        elif type(e) is ReplyHeld:
            s.held[e.delivery] = e.waiting_for
        elif type(e) is ReplyReleased:
            s.held.pop(e.delivery, None)
            s.released.append((e.delivery, e.ok))
        elif type(e) is FlushStarted:
            s.batches[e.batch] = e.puts + e.deletes + (("*",) if e.delete_all else ())
            # A batch takes every pending write; a key left out was a no-op write (the same
            # value again), which the cache drops.
            s.dirty.clear()
        elif type(e) is CommitDone:
            s.batches.pop(e.batch, None)
            s.last_batch = (e.batch, e.keys, True)
            s.commits += 1
            # Each held reply waited for the commits in flight when it was held: one fewer now
            # (at 0 it is releasable, and goes out at the next step).
            held = s.held
            if held:
                for d, n in held.items():
                    if n > 0:
                        held[d] = n - 1
        elif type(e) is TurnEnded:
            s.awaiting[e.delivery] = e.awaiting
            if s.running == e.delivery:
                s.running = None
        elif type(e) is DeliveryResumed:
            s.awaiting.pop(e.delivery, None)
            s.running = e.delivery
        elif type(e) in _SCHEDULER_EVENTS:  # a step the learner took (of this object)
            if lab_wide is not None:
                lab_wide._scheduler_event(e)
        else:
            _fold_rare_object_event(s, e)


def _fold_rare_object_event(s: ObjectState, e: ev.RuntimeEvent) -> None:
    if type(e) is ev.CommitFailed:
        keys = s.batches.pop(e.batch, ())
        s.last_batch = (e.batch, len(keys), False)
    elif type(e) is ev.InstanceConstructed:
        s.incarnation = e.incarnation
        s.status = "live"
        s.batches.clear()
    elif type(e) is ev.InstanceReset and e.reason == "labClosed":
        # Not a failure of this object: the whole lab was closed (``await lab.close()``).
        s.clear_instance()
        s.status = "closed"
    elif type(e) is ev.InstanceReset:
        s.clear_instance()
        s.status = "reset"
        s.resets += 1
        s.reset_seq = e.seq
        s.last_reset = f"{e.reason}: {e.lost_writes} uncommitted write(s) lost"
    elif type(e) is ev.InstanceEvicted:
        s.clear_instance()
        s.status = "evicted"
    elif type(e) is ev.FaultInjected:
        s.last_fault = f"{e.fault} ({e.detail})" if e.detail else e.fault


_SCHEDULER_EVENTS = frozenset({ev.StepTaken, ev.Paused, ev.Resumed})


def _not_seeded(reducer: ObjectsReducer | StorageReducer,
                events: Sequence[ev.RuntimeEvent]) -> Sequence[ev.RuntimeEvent]:
    """``events`` without those of ``reducer.only`` that its state, seeded from a snapshot
    by ``focus``, already holds (``seq`` up to ``reducer._skip``); the skip ends with the
    first batch that goes past it (every later batch is newer). A step the learner took
    stays: it is lab-wide, not part of the object's seeded state."""
    skip, only = reducer._skip, reducer.only
    if events[-1].seq > skip:
        reducer._skip = 0
    if events[0].seq > skip:
        return events
    return [e for e in events
            if e.seq > skip or e.object != only or type(e) in _SCHEDULER_EVENTS]


class ObjectsReducer:
    """An :class:`ObjectState` for each object seen (at most ``max_objects``), or for one
    object only after :meth:`focus` (a dashboard shows one object: folding the other objects'
    events too was a third of what watching a busy lab cost, bench/bench_watching.py)."""

    def __init__(self, max_objects: int = 500) -> None:
        self.objects: _Lru = _Lru(max_objects)
        self.seq = 0
        self.steps = 0
        self.last_step = ""
        self.paused = False
        self.only: str | None = None  # the one object folded (None: every object)
        self._skip = 0  # events of ``only`` up to this seq are in its seeded state already

    def apply(self, e: ev.RuntimeEvent) -> None:
        self.consume((e,))

    def consume(self, events: Sequence[ev.RuntimeEvent]) -> None:
        if not events:
            return
        if self._skip:
            events = _not_seeded(self, events)
            if not events:
                return
        touch = self.objects.touch
        _fold_object_events(events, lambda label: touch(label, ObjectState), self, self.only)
        self.seq = events[-1].seq

    def focus(self, label: str, snap: Any) -> None:
        """Fold ``label``'s events only, from now on. Its state starts from ``snap`` (the lab's
        snapshot now, or None before anything happened); the events up to ``snap.seq`` that
        the reducer has not folded yet are in that snapshot and are skipped. The other objects'
        states are dropped (they would go stale)."""
        if label == self.only:
            return
        self.only = label
        state = self.objects.get(label)
        self.objects.clear()
        if snap is None:
            if state is not None:  # nothing newer to start from: keep what was folded
                self.objects[label] = state
            return
        fresh = self.objects.touch(label, ObjectState)
        for o in getattr(snap, "objects", (snap,)):
            if o.label == label:
                fresh.seed(o)
        if snap.seq > self.seq:
            self._skip = snap.seq

    def _scheduler_event(self, e: ev.RuntimeEvent) -> None:
        if type(e) is ev.StepTaken:
            self.steps += 1
            self.last_step = e.description
        else:
            self.paused = type(e) is ev.Paused

    def get(self, label: str) -> ObjectState:
        return self.objects.get(label) or ObjectState(label)

    def seed(self, snap: Any) -> None:
        """Start from a ``durable_lab.LabSnapshot`` (every object, the scheduler) or one
        ``ObjectSnapshot``: what happened before the panel opened. The panel then folds only
        the events after ``snap.seq`` (the feed drops the others: widgets/_feed.py)."""
        objects = getattr(snap, "objects", None)
        if objects is None:
            objects = (snap,)
        else:
            self.paused = snap.paused
            self.steps = snap.steps
            self.last_step = snap.last_step
        for o in objects:
            self.objects.touch(o.label, ObjectState).seed(o)
        self.seq = max(self.seq, snap.seq)


# -- timeline --------------------------------------------------------------------------------

#: Segment kinds of the timeline, in drawing order, with their colours (see _theme).
#: "network" only appears with Lab(network=...): the request's trip before "queued", the
#: reply's trip after "reply held". "awaiting io, gate held": awaiting io while the input gate
#: stays closed (inside a blockConcurrencyWhile section, or under Lab(model="serial")).
SEGMENT_KINDS = ("network", "queued", "running", "awaiting storage", "awaiting io",
                 "awaiting io, gate held", "reply held")

#: Network hops a timeline remembers while they travel (older ones are forgotten first).
_MAX_HOPS = 5000
#: Events between a request's arrival and its DeliveryQueued: at most the InputGateLocked of a
#: constructor (a first call makes the instance, whose constructor queues first).
_ARRIVAL_GAP = 3
#: Lane names remembered (delivery -> "alarm", method...), the oldest forgotten first.
_MAX_LANE_NAMES = 5000

#: The width, in events, of a span that opened and closed at the same event.
MIN_EVENT_WIDTH = 0.6


def _columns(*names: str) -> dict[str, list[Any]]:
    return {name: [] for name in names}


#: Every row carries both x coordinates: ``left``/``right`` in events (the event's ``seq``)
#: and ``t_left``/``t_right`` in milliseconds of lab time since the timeline's origin; the
#: panel draws one pair or the other (``Timeline(x="events" | "time")``).
SEGMENT_COLUMNS = ("delivery", "left", "right", "t_left", "t_right", "kind", "object", "method",
                   "detail")
MARKER_COLUMNS = ("delivery", "x", "t", "batch", "size", "ok", "object", "label")
GATE_COLUMNS = ("lane", "left", "right", "t_left", "t_right", "kind", "object", "detail",
                "label")

#: The gate lanes above the delivery lanes, top to bottom, and what a span on each means.
GATE_LANES = ("input gate", "commit", "output gate")
GATE_KINDS = {"input gate": "gate closed", "commit": "commit in flight",
              "output gate": "replies held"}


class GateLanes:
    """When one object's input gate was closed (and by whom), when a commit was in flight (and
    whether it failed) and when replies were held by the output gate: spans with both x
    coordinates (events and lab time, see SEGMENT_COLUMNS).

    At full speed a closed gate lasts microseconds and no frame ever shows it; as a span on the
    timeline it stays visible after the fact, next to the deliveries it kept waiting.
    """

    def __init__(self, only: str | None = None, origin: float | None = None,
                 keep: int | None = None) -> None:
        self.object = only  # None: the first object that does something
        self.origin = origin  # lab time of t = 0 ms (None: the first event's)
        self.open: dict[str, tuple[int, float, str, str]] = {}  # lane -> (seq, ms, detail, label)
        # The spans closed since the last take(), the newest ``keep`` (None: all), as tuples:
        # formatted into columns by take(). At full speed three spans close per call of the
        # object, and a plot that draws 2.5 times a second keeps only its rollover of them.
        self._spans: deque[tuple[str, int, int, float, float, str, str, str]] = deque(
            maxlen=keep)
        self.held = 0  # replies and outgoing calls held now
        self.closed_spans = 0  # input-gate spans closed so far (for tests and summaries)
        self.failed_commits = 0

    def _start(self, lane: str, x: int, t: float, detail: str, label: str) -> None:
        self._end(lane, x, t)
        self.open[lane] = (x, t, detail, label)

    def _end(self, lane: str, x: int, t: float, kind: str = "", label: str | None = None
             ) -> None:
        seg = self.open.pop(lane, None)
        if seg is None:
            return
        start, start_t, detail, own_label = seg
        self._spans.append((lane, start, x, start_t, t, kind, detail,
                            own_label if label is None else label))
        if lane == "input gate":
            self.closed_spans += 1

    #: The events that open or close a span (the timeline hands it only these).
    RELEVANT = frozenset({ev.InputGateLocked, ev.InputGateUnlocked, ev.FlushStarted,
                          ev.CommitDone, ev.CommitFailed, ev.ReplyHeld, ev.OutgoingCallHeld,
                          ev.ReplyReleased, ev.OutgoingCallReleased, ev.InstanceReset,
                          ev.InstanceEvicted})

    def apply(self, e: ev.RuntimeEvent, x: int, t: float | None = None) -> None:
        if not e.object:
            return
        if self.object is None:
            self.object = e.object
        elif e.object != self.object:
            return
        if t is None:
            if self.origin is None:
                self.origin = e.time
            t = (e.time - self.origin) * 1000.0
        if type(e) is ev.InputGateLocked:
            if e.depth == 0:
                number = _delivery_of(e.holder)
                label = f"#{number}" if number is not None else e.holder.split(" ")[0]
                self._start("input gate", x, t, f"closed by {e.holder}", label)
        elif type(e) is ev.InputGateUnlocked:
            if e.depth == 0:
                self._end("input gate", x, t)
        elif type(e) is ev.FlushStarted:
            n = len(e.puts) + len(e.deletes) + (1 if e.delete_all else 0)
            self._start("commit", x, t, f"batch {e.batch}: {n} key(s)", f"b{e.batch}")
        elif type(e) is ev.CommitDone:
            self._end("commit", x, t)
        elif type(e) is ev.CommitFailed:
            # Red and labelled: the batch did NOT reach storage (the object resets next).
            self.failed_commits += 1
            self._end("commit", x, t, "commit failed", f"b{e.batch} failed")
        elif type(e) is ev.ReplyHeld or type(e) is ev.OutgoingCallHeld:
            self.held += 1
            if self.held == 1:
                self._start("output gate", x, t, "replies held until the commit lands", "")
        elif type(e) is ev.ReplyReleased or type(e) is ev.OutgoingCallReleased:
            if self.held > 0:
                self.held -= 1
                if self.held == 0:
                    self._end("output gate", x, t)
        elif type(e) is ev.InstanceReset or type(e) is ev.InstanceEvicted:
            for lane in list(self.open):
                self._end(lane, x, t)
            self.held = 0

    def take(self) -> dict[str, list[Any]]:
        """The spans closed since the last call, as columns (GATE_COLUMNS), then forget them."""
        rows = _columns(*GATE_COLUMNS)
        obj = self.object or ""
        for lane, start, x, start_t, t, kind, detail, label in self._spans:
            rows["lane"].append(lane)
            rows["left"].append(start)
            rows["right"].append(max(x, start + MIN_EVENT_WIDTH))
            rows["t_left"].append(start_t)
            rows["t_right"].append(max(t, start_t))
            rows["kind"].append(kind or GATE_KINDS[lane])
            rows["object"].append(obj)
            rows["detail"].append(f"{detail} (events {start}-{x})")
            rows["label"].append(label)
        self._spans.clear()
        return rows

    def seed(self, o: Any, t: float = 0.0) -> None:
        """Open the spans an ``ObjectSnapshot`` says are open (from its ``seq``, and ``t`` ms of
        lab time: the snapshot is taken when the panel opens, the origin of its lab time)."""
        if self.object is None:
            self.object = o.label
        elif o.label != self.object:
            return
        x = o.seq
        if o.gate_holder:
            number = _delivery_of(o.gate_holder)
            label = f"#{number}" if number is not None else o.gate_holder.split(" ")[0]
            self.open["input gate"] = (x, t, f"closed by {o.gate_holder}", label)
        if o.batches:
            batch, keys = o.batches[-1]
            self.open["commit"] = (x, t, f"batch {batch}: {len(keys)} key(s)", f"b{batch}")
        self.held = len(o.held) + o.outgoing_held
        if self.held:
            self.open["output gate"] = (x, t, "replies held until the commit lands", "")

    def open_rows(self, last_x: int, last_t: float = 0.0) -> dict[str, list[Any]]:
        rows = _columns(*GATE_COLUMNS)
        for lane, (start, start_t, detail, label) in self.open.items():
            rows["lane"].append(lane)
            rows["left"].append(start)
            rows["right"].append(max(last_x + MIN_EVENT_WIDTH, start + MIN_EVENT_WIDTH))
            rows["t_left"].append(start_t)
            rows["t_right"].append(max(last_t, start_t))
            rows["kind"].append(GATE_KINDS[lane])
            rows["object"].append(self.object or "")
            rows["detail"].append(f"{detail} (since event {start})")
            rows["label"].append(label)
        return rows


def _forget_oldest(table: dict[int, Any]) -> None:
    """Keep a hop table bounded (hops whose other end never comes, e.g. at lab.close())."""
    if len(table) > _MAX_HOPS:
        for key in list(table)[: len(table) - _MAX_HOPS]:
            del table[key]


class TimelineReducer:
    """Lanes per delivery: closed segments and commit markers, as rows to stream.

    Each row has two x coordinates (SEGMENT_COLUMNS): the event's ``seq`` (the order of
    everything that happened, so a run on a memory backend, where everything takes
    microseconds, still spreads out readably) and its lab time in milliseconds since
    ``origin`` (so a 230 ms trip is 23 times as wide as a 10 ms one). ``only`` restricts the
    lanes to one object's deliveries. ``names`` gives each lane's name: its method, or
    ``alarm`` / ``websocket`` for the deliveries the runtime makes itself.
    """

    def __init__(self, only: str | None = None, origin: float | None = None, *,
                 keep: int | None = None) -> None:
        if keep is not None and keep < 1:
            raise ValueError(f"keep must be a number of rows >= 1 (or None: all), got {keep!r}")
        self.only = only
        self.origin = origin  # lab time of t = 0 ms (None: the first event's)
        #: delivery -> (kind, start seq, start ms, object, method)
        self.open: dict[int, tuple[str, int, float, str, str]] = {}
        self.methods: dict[int, str] = {}
        self.names: dict[int, str] = {}  # delivery -> lane name ("alarm", its method...)
        #: Rows closed since the last take, as tuples, the newest ``keep`` of them: a busy lab
        #: closes thousands of segments between two frames and the plot keeps only its
        #: rollover, so older rows are dropped here, before anything is formatted for them.
        self._segments: deque[tuple[int, int, int, float, float, str, str, str]] = deque(
            maxlen=keep)
        self._markers: deque[tuple[int, int, float, int, int, bool, str, str]] = deque(
            maxlen=keep)
        #: per object: key -> delivery that wrote it last (who a commit belongs to)
        self._writers: dict[str, dict[str, int]] = {}
        self._batch_writers: dict[tuple[str, int], set[int]] = {}
        self.last_x = 0
        self.last_t = 0.0  # ms of lab time of the latest event
        self.gates = GateLanes(only, origin, keep)
        self.rows_taken = 0  # (see take())
        #: Objects whose input gate a blockConcurrencyWhile section holds now: an await there
        #: keeps the gate closed, whatever the TurnEnded says (its gate_held is the turn's).
        self._sections: set[str] = set()
        #: Network hops (Lab(network=...)): where each request left, the request that just
        #: arrived (object, hop, seq: its DeliveryQueued follows within _ARRIVAL_GAP events,
        #: only a new instance's constructor admission in between; else the call was not
        #: queued), and the delivery each hop became.
        self._hop_sent: dict[int, tuple[int, float]] = {}
        self._arriving: tuple[str, int, int] | None = None
        self._hop_delivery: dict[int, int] = {}
        #: Which method folds an event of each type (events of other types change nothing).
        self._handlers: dict[type, Callable[[Any, float], None]] = {
            ev.StorageOp: self._on_storage_op,
            ev.DeliveryQueued: self._on_queued,
            ev.NetworkHopStarted: self._on_hop_started,
            ev.NetworkHopEnded: self._on_hop_ended,
            ev.DeliveryStarted: self._on_running,
            ev.DeliveryResumed: self._on_running,
            ev.TurnEnded: self._on_turn_ended,
            ev.DeliveryFinished: self._on_done,
            ev.ReplyReleased: self._on_done,
            ev.ReplyHeld: self._on_reply_held,
            ev.InputGateLocked: self._on_gate,
            ev.InputGateUnlocked: self._on_gate,
            ev.FlushStarted: self._on_flush,
            ev.CommitDone: self._on_commit,
            ev.CommitFailed: self._on_commit,
            ev.InstanceReset: self._on_reset,
            ev.InstanceEvicted: self._on_reset,
        }

    def _close(self, delivery: int, x: int, t: float) -> None:
        seg = self.open.pop(delivery, None)
        if seg is None:
            return
        kind, start, start_t, obj, method = seg
        self._segments.append((delivery, start, x, start_t, t if t > start_t else start_t,
                               kind, obj, method))

    def _open(self, delivery: int, kind: str, x: int, t: float, obj: str) -> None:
        self._close(delivery, x, t)
        self.open[delivery] = (kind, x, t, obj, self.methods.get(delivery, ""))

    def consume(self, events: Sequence[ev.RuntimeEvent]) -> None:
        only = self.only
        handlers = self._handlers
        lanes = self.gates
        gate_events = GateLanes.RELEVANT
        origin = self.origin
        last = None
        t = 0.0
        for e in events:
            if only is None or e.object == only:
                if origin is None:
                    origin = self.origin = lanes.origin = e.time
                t = (e.time - origin) * 1000.0
                if type(e) in gate_events or lanes.object is None:
                    lanes.apply(e, e.seq, t)
                # One dict lookup per event instead of a chain of type tests: this runs for
                # every event of a busy lab (bench/bench_watching.py).
                handler = handlers.get(type(e))
                if handler is not None:
                    handler(e, t)
                last = e
        if last is not None:
            self.last_x = last.seq
            self.last_t = t

    def apply(self, e: ev.RuntimeEvent) -> None:
        self.consume((e,))

    def seed(self, snap: Any) -> None:
        """Open a lane, from ``snap.seq``, for each delivery a ``durable_lab`` snapshot says
        is queued, running, awaiting or held; open the gate lanes it says are open. (Their
        lab time starts at ``last_t``: 0 ms, the panel's origin, when it has just opened.)"""
        only = self.only
        objects = [o for o in _objects_of(snap)
                   if only is None or o.label == only]
        x = snap.seq
        t = self.last_t
        self.last_x = max(self.last_x, x)
        for o in objects:
            awaiting = dict(o.awaiting)
            if o.critical_section:
                self._sections.add(o.label)
            lanes = [(d, "queued", m) for d, m in o.mailbox]
            for d, m in o.methods.items():
                what = awaiting.get(d)
                # (Admitted, not started yet: its lane turns "running" at DeliveryStarted.)
                kind = ("queued" if d == o.admitted else "running" if what is None else
                        "awaiting storage" if what == "storage" else
                        "awaiting io, gate held" if o.critical_section else "awaiting io")
                lanes.append((d, kind, m))
            lanes += [(d, "reply held", "") for d, _ in o.held]
            for d, kind, method in lanes:
                self.methods[d] = method
                self.names.setdefault(d, method)
                self.open[d] = (kind, x, t, o.label, method)
        live = [o for o in objects if o.gate_holder or o.batches or o.held or o.mailbox]
        if live:
            self.gates.seed(live[0], t)

    def _on_storage_op(self, e: ev.StorageOp, now: float) -> None:
        d = e.delivery
        seg = self.open.get(d)
        if seg is not None and seg[0] == "awaiting storage":
            self._open(d, "running", e.seq, now, e.object)
        if e.cache != "write":
            return
        writers = self._writers.get(e.object)
        if writers is None:
            writers = self._writers[e.object] = {}
        for key in e.keys or ("*",):
            writers[key] = d

    def _on_queued(self, e: ev.DeliveryQueued, now: float) -> None:
        self.methods[e.delivery] = e.method
        kind_of = e.kind_of_delivery
        self.names[e.delivery] = kind_of if kind_of in ("alarm", "websocket") else e.method
        if len(self.names) > _MAX_LANE_NAMES:
            del self.names[next(iter(self.names))]
        arriving, self._arriving = self._arriving, None
        hop = (arriving[1] if arriving is not None and arriving[0] == e.object
               and kind_of in ("rpc", "fetch")
               and e.seq - arriving[2] <= _ARRIVAL_GAP else None)
        if hop is not None and hop in self._hop_sent:
            # The request's trip, drawn on the lane it turned into, ending where it queued.
            sent_x, sent_t = self._hop_sent.pop(hop)
            self.open[e.delivery] = ("network", sent_x, sent_t, e.object, e.method)
            self._hop_delivery[hop] = e.delivery
            _forget_oldest(self._hop_delivery)
        self._open(e.delivery, "queued", e.seq, now, e.object)

    def _on_hop_started(self, e: ev.NetworkHopStarted, now: float) -> None:
        if e.leg == "request":
            self._hop_sent[e.hop] = (e.seq, now)
            _forget_oldest(self._hop_sent)
        else:
            lane = self._hop_delivery.get(e.hop)
            if lane is not None:
                self.methods[lane] = e.method
                self._open(lane, "network", e.seq, now, e.object)

    def _on_hop_ended(self, e: ev.NetworkHopEnded, now: float) -> None:
        if e.leg == "request":
            self._arriving = (e.object, e.hop, e.seq)
        else:
            lane = self._hop_delivery.pop(e.hop, None)
            if lane is not None:
                self._close(lane, e.seq, now)
                self.methods.pop(lane, None)

    def _on_running(self, e: ev.DeliveryStarted | ev.DeliveryResumed, now: float) -> None:
        self._open(e.delivery, "running", e.seq, now, e.object)

    def _on_turn_ended(self, e: ev.TurnEnded, now: float) -> None:
        if e.awaiting == "storage":
            kind = "awaiting storage"
        elif e.gate_held or e.object in self._sections:
            kind = "awaiting io, gate held"
        else:
            kind = "awaiting io"
        self._open(e.delivery, kind, e.seq, now, e.object)

    def _on_done(self, e: ev.DeliveryFinished | ev.ReplyReleased, now: float) -> None:
        """The delivery's code finished, or its held reply went out: its lane closes (a reply
        held by the output gate opens it again, ``_on_reply_held``)."""
        self._close(e.delivery, e.seq, now)
        self.methods.pop(e.delivery, None)

    def _on_reply_held(self, e: ev.ReplyHeld, now: float) -> None:
        self.methods.setdefault(e.delivery, "")
        self._open(e.delivery, "reply held", e.seq, now, e.object)

    def _on_gate(self, e: ev.InputGateLocked | ev.InputGateUnlocked, now: float) -> None:
        if e.depth == 0 and e.holder == "critical section":
            self._section(e.object, type(e) is ev.InputGateLocked, e.seq, now)

    def _on_flush(self, e: ev.FlushStarted, now: float) -> None:
        writers = self._writers.get(e.object, {})
        owners = {writers[k] for k in e.puts + e.deletes if k in writers}
        if e.delete_all and "*" in writers:
            owners.add(writers["*"])
        writers.clear()  # the batch took every pending write (the rest were no-ops)
        self._batch_writers[(e.object, e.batch)] = owners

    def _on_commit(self, e: ev.CommitDone | ev.CommitFailed, now: float) -> None:
        owners = self._batch_writers.pop((e.object, e.batch), set()) or {0}
        ok, size = (True, e.keys) if type(e) is ev.CommitDone else (False, 0)
        markers = self._markers
        for d in sorted(owners):
            markers.append((d, e.seq, now, e.batch, size, ok, e.object,
                            str(size) if ok else "✗ failed"))

    def _on_reset(self, e: ev.InstanceReset | ev.InstanceEvicted, now: float) -> None:
        self._sections.discard(e.object)
        for d in [d for d, seg in self.open.items() if seg[3] == e.object]:
            self._close(d, e.seq, now)
        self._writers.pop(e.object, None)
        for batch_key in [k for k in self._batch_writers if k[0] == e.object]:
            if type(e) is ev.InstanceReset:
                del self._batch_writers[batch_key]

    def _section(self, obj: str, closed: bool, x: int, now: float) -> None:
        """A blockConcurrencyWhile section took (or gave back) the object's input gate: the
        deliveries of that object awaiting io now wait with the gate closed (or open again)."""
        before, after = (("awaiting io", "awaiting io, gate held") if closed else
                         ("awaiting io, gate held", "awaiting io"))
        if closed:
            self._sections.add(obj)
        else:
            self._sections.discard(obj)
        for d, seg in list(self.open.items()):
            if seg[0] == before and seg[3] == obj:
                self._open(d, after, x, now, obj)

    def take(self) -> tuple[dict[str, list[Any]], dict[str, list[Any]]]:
        """The rows closed since the last call (segments, markers; the newest ``keep`` of
        each), as columns, then forget them."""
        segments = _columns(*SEGMENT_COLUMNS)
        #: Segments closed since the last take (at most ``keep``): thousands at saturation
        #: (see Timeline.rest_after_draw).
        self.rows_taken = len(self._segments)
        if self._segments:
            rows = list(zip(*self._segments, strict=True))
            for name, column in zip(SEGMENT_COLUMNS, rows, strict=False):
                segments[name] = list(column)
            # A segment at least MIN_EVENT_WIDTH wide, so an instant still shows.
            segments["right"] = [right if right > left + MIN_EVENT_WIDTH
                                 else left + MIN_EVENT_WIDTH
                                 for left, right in zip(rows[1], rows[2], strict=True)]
            # (lab time: the hover's t columns)
            segments["detail"] = [f"{kind}: events {left}-{right}"
                                  for left, right, kind in zip(rows[1], rows[2], rows[5],
                                                               strict=True)]
            self._segments.clear()
        markers = _columns(*MARKER_COLUMNS)
        if self._markers:
            for name, column in zip(MARKER_COLUMNS, zip(*self._markers, strict=True),
                                    strict=True):
                markers[name] = list(column)
            self._markers.clear()
        return segments, markers

    def open_rows(self) -> dict[str, list[Any]]:
        """The segments still open, drawn up to the latest event (replaced once per frame)."""
        rows = _columns(*SEGMENT_COLUMNS)
        end = self.last_x + MIN_EVENT_WIDTH
        now = self.last_t
        for d, (kind, start, start_t, obj, method) in self.open.items():
            rows["delivery"].append(d)
            rows["left"].append(start)
            rows["right"].append(max(end, start + MIN_EVENT_WIDTH))
            rows["t_left"].append(start_t)
            rows["t_right"].append(max(now, start_t))
            rows["kind"].append(kind)
            rows["object"].append(obj)
            rows["method"].append(method)
            rows["detail"].append(f"{kind} since event {start}")
        return rows


# -- storage inspector ----------------------------------------------------------------------


@dataclass
class KeyState:
    state: str  # "pending", "flushing", "committed", "deleted", "lost", "failed"
    batch: int = 0
    delivery: int = 0
    seq: int = 0
    before: str = ""  # the state before a pending write (restored if the write was a no-op)


def _new_key_table(_label: str) -> OrderedDict[str, KeyState]:
    return OrderedDict()


class StorageReducer:
    """Per object, the state of every key seen written: pending vs flushing vs committed."""

    def __init__(self, max_objects: int = 200, max_keys: int = 500) -> None:
        self.objects: _Lru = _Lru(max_objects)
        self.max_keys = max_keys
        self._deletes: dict[tuple[str, int], set[str]] = {}
        self.only: str | None = None  # the one object followed (None: every object)
        self._skip = 0  # events of ``only`` up to this seq are in its seeded table already

    def focus(self, label: str, snap: Any) -> None:
        """Follow ``label``'s keys only, from now on (the inspector shows one object: folding
        every object's writes cost a busy dashboard a tenth of its rate). Its table starts
        from ``snap`` (the lab's snapshot now, None: nothing to start from); the events up to
        ``snap.seq`` not folded yet are in it and are skipped. Other tables are dropped."""
        if label == self.only:
            return
        self.only = label
        kept = self.objects.get(label)
        self.objects.clear()
        if snap is None:
            self._deletes = {k: v for k, v in self._deletes.items() if k[0] == label}
            if kept is not None:
                self.objects[label] = kept
            return
        self._deletes.clear()
        mine = [o for o in _objects_of(snap) if o.label == label]
        if mine:
            self.seed(mine[0])
        self._skip = snap.seq

    def _keys(self, label: str) -> OrderedDict[str, KeyState]:
        return self.objects.touch(label, _new_key_table)

    def _set(self, table: OrderedDict[str, KeyState], key: str, ks: KeyState) -> None:
        table[key] = ks
        table.move_to_end(key)
        while len(table) > self.max_keys:
            table.popitem(last=False)

    #: What the inspector follows: writes, batches, resets (a read changes no key's state).
    RELEVANT = frozenset({ev.StorageOp, ev.FlushStarted, ev.CommitDone, ev.CommitFailed,
                          ev.InstanceReset})

    def consume(self, events: Sequence[ev.RuntimeEvent]) -> None:
        """Fold a batch: one LRU touch per object, writes (the commonest) inline."""
        relevant = self.RELEVANT
        StorageOp = ev.StorageOp
        tables: dict[str, OrderedDict[str, KeyState]] = {}
        only = self.only
        if self._skip and events:
            events = _not_seeded(self, events)
        for e in events:
            t = type(e)
            if t not in relevant or (type(e) is StorageOp and e.cache != "write"):
                continue
            if only is not None and e.object != only:
                continue
            table = tables.get(e.object)
            if table is None:
                table = tables[e.object] = self._keys(e.object)
            if type(e) is not StorageOp:
                self._fold_batch_event(table, e)
            elif e.op == "deleteAll":
                self._delete_all(table, e)
            else:
                for key in e.keys:
                    ks = table.get(key)
                    if ks is None:
                        self._set(table, key, KeyState("pending", 0, e.delivery, e.seq))
                        continue
                    if ks.state != "pending":  # restored if the write turns out a no-op
                        ks.before = ks.state
                        ks.state = "pending"
                    ks.delivery, ks.seq = e.delivery, e.seq
                    table.move_to_end(key)

    def apply(self, e: ev.RuntimeEvent) -> None:
        self.consume((e,))

    def seed(self, snap: Any) -> None:
        """Start from a ``durable_lab`` snapshot (``LabSnapshot`` or ``ObjectSnapshot``):
        each object's pending keys and the keys of its batches in flight; keys stored
        (``snap.storage``, if read) show as committed. Who wrote a pending key is not kept by
        the runtime (``delivery`` 0)."""
        for o in _objects_of(snap):
            if not (o.dirty or o.batches or o.storage):
                continue
            table = self._keys(o.label)
            for key in o.storage or ():
                if key not in table:
                    self._set(table, key, KeyState("committed", 0, 0, o.seq))
            for batch, keys in o.batches:
                for key in keys:
                    self._set(table, key, KeyState("flushing", batch, 0, o.seq))
            for key in o.dirty:
                ks = table.get(key)
                before = ks.state if ks is not None and ks.state != "pending" else ""
                self._set(table, key, KeyState("pending", 0, 0, o.seq, before))
            for batch, keys in o.batches:
                deletes = {k for k in keys if k != "*" and o.storage is not None
                           and k not in o.storage}
                if deletes:
                    self._deletes[(o.label, batch)] = deletes

    def _delete_all(self, table: OrderedDict[str, KeyState], e: ev.StorageOp) -> None:
        for ks in table.values():
            if ks.state == "committed":
                ks.state, ks.seq = "pending", e.seq
        self._set(table, "*", KeyState("pending", 0, e.delivery, e.seq))

    def _fold_batch_event(self, table: OrderedDict[str, KeyState],
                          e: ev.RuntimeEvent) -> None:
        if type(e) is ev.FlushStarted:
            taken = e.puts + e.deletes + (("*",) if e.delete_all else ())
            if len(table) > len(taken) or any(k not in table for k in taken):
                in_batch = set(taken)
                for key, ks in list(table.items()):
                    if ks.state == "pending" and key not in in_batch:  # a no-op write: dropped
                        if ks.before:
                            ks.state = ks.before
                        else:
                            del table[key]
            for key in taken:
                flushing = table.get(key)
                if flushing is None:
                    flushing = KeyState("pending")
                    self._set(table, key, flushing)
                flushing.state, flushing.batch, flushing.seq = "flushing", e.batch, e.seq
            if e.deletes:
                self._deletes[(e.object, e.batch)] = set(e.deletes)
        elif type(e) is ev.CommitDone or type(e) is ev.CommitFailed:
            deletes = self._deletes.pop((e.object, e.batch), ()) if self._deletes else ()
            ok = type(e) is ev.CommitDone
            batch = e.batch
            for key, ks in list(table.items()):
                if ks.state == "flushing" and ks.batch == batch:
                    if not ok:
                        ks.state = "failed"
                    elif key == "*":
                        del table[key]
                        for other in table.values():
                            if other.state == "pending" and other.batch == 0 and other.seq < ks.seq:
                                other.state = "deleted"
                    else:
                        ks.state = "deleted" if key in deletes else "committed"
                    ks.seq = e.seq
        elif type(e) is ev.InstanceReset:
            for key, ks in list(table.items()):
                if ks.state == "pending":  # a batch already flying may still land
                    if e.lost_writes:
                        ks.state, ks.seq = "lost", e.seq
                    elif ks.before:  # the runtime lost nothing: it was a no-op write
                        ks.state = ks.before
                    else:
                        del table[key]

    def rows(self, label: str) -> list[tuple[str, KeyState]]:
        """(key, state) for ``label``: pending and flushing first, then committed, by key."""
        table = self.objects.get(label) or {}
        order = {"pending": 0, "flushing": 1, "failed": 2, "lost": 3, "committed": 4,
                 "deleted": 5}
        return sorted(table.items(), key=lambda kv: (order.get(kv[1].state, 9), kv[0]))

    def counts(self, label: str) -> dict[str, int]:
        out: dict[str, int] = {}
        for ks in (self.objects.get(label) or {}).values():
            out[ks.state] = out.get(ks.state, 0) + 1
        return out


# -- fleet -----------------------------------------------------------------------------------


@dataclass
class FleetRow:
    label: str
    queue: int = 0  # waiting at the input gate
    in_flight: int = 0  # admitted, not answered
    done: int = 0  # answered since the panel opened
    load: float = 0.0  # deliveries answered per frame, smoothed
    status: str = "unknown"
    resets: int = 0
    region: str = ""  # where it lives (Lab(network=...)); "" if not placed
    heat: float = 0.0  # the queue, fading slowly: a hot object stays visibly hot for seconds
    peak: int = 0  # the longest queue seen
    _done_at_last_tick: int = 0


class FleetReducer:
    """Per object: queue length, calls in flight, load, status (for the grid / heat map)."""

    def __init__(self, max_objects: int = 400) -> None:
        self.rows: _Lru = _Lru(max_objects)
        self.order: list[str] = []  # first-seen order, for stable grid positions
        self._known: set[str] = set()

    def _row(self, label: str) -> FleetRow:
        if label not in self._known:
            self._known.add(label)
            self.order.append(label)
        return self.rows.touch(label, FleetRow)

    #: What a fleet cell shows: queue, calls in flight, status, region.
    RELEVANT = frozenset({ev.DeliveryQueued, ev.DeliveryStarted, ev.DeliveryFinished,
                          ev.InstanceConstructed, ev.InstanceReset, ev.InstanceEvicted,
                          ev.ObjectPlaced})

    def consume(self, events: Sequence[ev.RuntimeEvent]) -> None:
        relevant = self.RELEVANT
        rows: dict[str, FleetRow] = {}  # this batch's: one LRU touch per object
        for e in events:
            t = type(e)
            if t not in relevant or not e.object:
                continue
            r = rows.get(e.object)
            if r is None:
                r = rows[e.object] = self._row(e.object)
            # The three events of every call, here; the rare ones in _fold_rare.
            if type(e) is ev.DeliveryQueued:
                r.queue = e.queue_length
                if r.queue > r.peak:
                    r.peak = r.queue
                if r.queue > r.heat:
                    r.heat = r.queue
                if r.status != "live":
                    r.status = "live"
            elif type(e) is ev.DeliveryStarted:
                r.queue = max(0, r.queue - 1)
                r.in_flight += 1
            elif type(e) is ev.DeliveryFinished:
                r.in_flight = max(0, r.in_flight - 1)
                r.done += 1
            else:
                self._fold_rare(r, e)

    def apply(self, e: ev.RuntimeEvent) -> None:
        self.consume((e,))

    def _fold_rare(self, r: FleetRow, e: ev.RuntimeEvent) -> None:
        if type(e) is ev.InstanceConstructed:
            r.status = "live"
        elif type(e) is ev.InstanceReset:
            r.queue, r.in_flight = 0, 0
            if e.reason == "labClosed":  # the lab closed, not this object failing
                r.status = "closed"
            else:
                r.status = "reset"
                r.resets += 1
        elif type(e) is ev.InstanceEvicted:
            r.status, r.queue, r.in_flight = "evicted", 0, 0
        elif type(e) is ev.ObjectPlaced:
            r.region = e.region

    def seed(self, snap: Any, *, queue: int = 0, in_flight: int = 0, status: str = "unknown",
             region: str | None = None) -> None:
        """Start from a ``durable_lab`` snapshot (``LabSnapshot`` or ``ObjectSnapshot``):
        every object's queue, calls in flight, status, calls answered and resets so far.
        (``seed(label, queue=..., in_flight=..., status=..., region=...)`` sets one row.)"""
        if isinstance(snap, str):
            r = self._row(snap)
            r.queue, r.in_flight, r.status = queue, in_flight, status
            if region:
                r.region = region
            return
        for o in _objects_of(snap):
            r = self._row(o.label)
            r.queue = r.peak = o.queued
            r.heat = float(o.queued)
            r.in_flight = len(o.in_flight)
            # (A call queued makes an instance: the fleet calls it live from then on.)
            r.status = "live" if o.in_memory else o.status
            r.done = r._done_at_last_tick = o.finished
            r.resets = o.resets
            if o.region:
                r.region = o.region

    #: How much of a cell's heat is left after one frame (25 frames a second: after 3 s, 24 %).
    HEAT_KEPT = 0.98

    def tick(self, smoothing: float = 0.3) -> None:
        """Once per frame: fold the deliveries answered since the last tick into ``load``, and
        let each cell's heat fade towards its current queue (a queue that lasted a few
        milliseconds at full speed would otherwise never be seen in any frame)."""
        kept = self.HEAT_KEPT
        for r in self.rows.values():
            delta = r.done - r._done_at_last_tick
            r._done_at_last_tick = r.done
            r.load = r.load * (1 - smoothing) + delta * smoothing
            r.heat = max(float(r.queue), r.heat * kept)

    def visible(self) -> list[FleetRow]:
        """The rows in first-seen order; grouped by region (regions in the order they were
        first seen) once objects have one, so the grid reads as a map of where they live."""
        rows = [self.rows[label] for label in self.order if label in self.rows]
        if len(self.order) > 2 * len(self.rows):
            self.order = [label for label in self.order if label in self.rows]
            self._known = set(self.order)
        if any(r.region for r in rows):
            regions = list(dict.fromkeys(r.region for r in rows))
            rows.sort(key=lambda r: regions.index(r.region))  # stable: first-seen within one
        return rows


# -- metrics ---------------------------------------------------------------------------------

#: Commit batch-size histogram bins: (label, lowest size, highest size).
BATCH_BINS = (("1", 1, 1), ("2", 2, 2), ("3-4", 3, 4), ("5-8", 5, 8), ("9-16", 9, 16),
              ("17-64", 17, 64), ("65+", 65, 1 << 62))


def _bin(size: int) -> int:
    for i, (_, lo, hi) in enumerate(BATCH_BINS):
        if lo <= size <= hi:
            return i
    return 0


class MetricsReducer:
    """Throughput, queue depth, batch sizes and latency against writes, all on the lab clock.

    **Intervals of lab time, not samples.** Every event carries ``time``, the lab clock's
    reading when it happened (real, auto or manual clock: ``durable_lab/clock.py``). The
    reducer cuts lab time into intervals of ``interval`` seconds from ``origin`` and, for each,
    counts every call answered and every commit in it (a rate is that count over the
    interval's length) and keeps the *highest* queue depth reached in it (all objects, and the
    busiest one). Nothing happens between two wall-clock samples unseen: a burst of 400 calls
    that queues and drains in 0.3 s is the tallest point of its interval, and on an auto clock
    a minute of simulated alarms spreads over a minute of the axis however fast it ran.
    Intervals in which nothing happened are not stored one by one: a run of them is two rows
    at zero (its first and its last), so an hour's jump of a manual clock costs two rows.

    **Latency is the caller's, on the lab clock**: from the call's arrival in the mailbox to
    the reply leaving the output gate (or the code finishing, if the reply was not held); with
    ``Lab(network=...)``, from the request leaving the caller's region to the reply landing
    back there (the :class:`~durable_lab.events.NetworkHopStarted`/``Ended`` pair of its hop).
    So a post from Amsterdam to an object in Tokyo is 230 ms however little the object did.
    """

    def __init__(self, max_points: int = 5000, *, interval: float = 0.25,
                 origin: float | None = None, max_rows: int = 480) -> None:
        if not interval > 0:
            raise ValueError(f"interval must be > 0 seconds of lab time, got {interval!r}")
        self.events = 0
        self.answered = 0
        self.commits = 0
        self.writes = 0
        self.batch_hist = [0] * len(BATCH_BINS)
        self.queues: dict[str, int] = {}
        self.depth = 0  # calls queued now, all objects
        self._queued_at: dict[int, tuple[float, str]] = {}
        self._writes_of: dict[int, int] = {}
        self._finished: int | None = None  # a delivery whose reply may be held next
        self._finished_at = 0.0
        #: (writes, latency ms, method, object) per followed call answered since take_points().
        self.points: list[tuple[int, float, str, str]] = []
        self.max_points = max_points
        #: The latency of one call in this many is followed (set by take_points: a busy lab
        #: answers thousands of calls between two takes, the panel draws DOTS_PER_TAKE).
        self.follow_every = 1
        self.took_sample = False  # (see take_points)
        self._until_followed = 1  # calls queued until the next one followed
        self._answered_at_take = 0
        # -- intervals of lab time ----------------------------------------------------------
        self.interval = float(interval)
        self.origin = origin  # lab time of t = 0 (None: the first event's)
        self._index = -1  # the open interval (-1: none yet)
        self._ends = float("-inf")  # lab time at which the open interval ends
        self._calls = 0  # answered in the open interval
        self._commits = 0
        self._peak = 0  # highest depth (all objects) in the open interval
        self._busiest = 0  # longest queue of one object in the open interval
        #: Closed intervals not yet taken: (t, calls/s, commits/s, queue depth, busiest queue).
        self.rows: deque[tuple[float, float, float, float, float]] = deque(maxlen=max_rows)
        # -- network hops (Lab(network=...)): a call's latency includes its two trips -------
        self._hop_sent: dict[int, float] = {}  # request hop -> lab time it left
        self._arriving: tuple[str, int, int] | None = None  # (object, hop, seq) just arrived
        #: delivery -> (its request's hop, lab time the request left the caller)
        self._hop_of: dict[int, tuple[int, float]] = {}
        self._returning: dict[int, int] = {}  # hop -> delivery whose reply travels back

    #: Latency dots wanted per take_points() (the metrics panel takes them about 4 times a second).
    DOTS_PER_TAKE = 200

    def _answer(self, d: int, t: float) -> None:
        if self._hop_of:
            came = self._hop_of.pop(d, None)
            if came is not None:  # answered when the reply lands back (NetworkHopEnded)
                self._returning[came[0]] = d
                return
        self.answered += 1
        self._calls += 1
        start = self._queued_at.pop(d, None)
        if start is not None:
            writes = self._writes_of.pop(d, 0)
            if len(self.points) < self.max_points:
                self.points.append((writes, (t - start[0]) * 1000.0, start[1], ""))

    def _roll(self, t: float) -> None:
        """Lab time reached ``t``: close the open interval (and any empty ones) and open the
        one ``t`` falls in."""
        if self.origin is None:
            self.origin = t
        width = self.interval
        index = int((t - self.origin) // width)
        if index <= self._index:  # (a clock that stepped back: stay in the open interval)
            return
        if self._index >= 0:
            rows = self.rows
            depth = float(self.depth)
            busiest = float(max(self.queues.values(), default=0))
            rows.append((self._index * width, self._calls / width, self._commits / width,
                         float(self._peak), float(self._busiest)))
            gap = index - self._index - 1  # intervals with no event: two rows at zero
            if gap >= 1:
                rows.append(((self._index + 1) * width, 0.0, 0.0, depth, busiest))
            if gap >= 2:
                rows.append(((index - 1) * width, 0.0, 0.0, depth, busiest))
        self._index = index
        self._ends = self.origin + (index + 1) * width
        self._calls = self._commits = 0
        self._peak = self.depth
        self._busiest = max(self.queues.values(), default=0)

    #: The events the metrics fold (the others are only counted).
    RELEVANT = frozenset({ev.DeliveryQueued, ev.DeliveryStarted, ev.StorageOp,
                          ev.DeliveryFinished, ev.ReplyReleased, ev.CommitDone,
                          ev.InstanceReset, ev.InstanceEvicted, ev.NetworkHopStarted,
                          ev.NetworkHopEnded})

    def consume(self, events: Sequence[ev.RuntimeEvent]) -> None:
        self.events += len(events)
        relevant = self.RELEVANT
        StorageOp, DeliveryQueued = ev.StorageOp, ev.DeliveryQueued
        DeliveryStarted, DeliveryFinished = ev.DeliveryStarted, ev.DeliveryFinished
        ReplyHeld, ReplyReleased = ev.ReplyHeld, ev.ReplyReleased
        queued_at, queues, writes_of = self._queued_at, self.queues, self._writes_of
        finished = self._finished  # a delivery that just finished: was its reply held?
        until = self._until_followed
        ends = self._ends  # lab time at which the open interval ends
        for e in events:
            t = type(e)
            if finished is not None:
                # The event right after a DeliveryFinished says whether its reply was held
                # (the runtime emits ReplyHeld next, in the same step, if so): if not, the
                # call was answered when it finished (in the interval it finished in).
                if not (type(e) is ReplyHeld and e.delivery == finished):
                    self._answer(finished, self._finished_at)
                finished = None
            if t not in relevant:
                continue
            if e.time >= ends:
                self._roll(e.time)
                ends = self._ends
            if type(e) is StorageOp:
                # Writes the code made, skipped ones ("unchanged": the same value) included.
                if e.cache == "write" or e.cache == "unchanged":
                    n = len(e.keys) or 1
                    self.writes += n
                    if e.delivery in queued_at:
                        writes_of[e.delivery] = writes_of.get(e.delivery, 0) + n
            elif type(e) is DeliveryQueued:
                q = e.queue_length
                self.depth += q - queues.get(e.object, 0)
                queues[e.object] = q
                if self.depth > self._peak:
                    self._peak = self.depth
                if q > self._busiest:
                    self._busiest = q
                until -= 1
                arriving = self._arriving
                if arriving is not None:
                    self._arrived(e, arriving)
                if until <= 0:  # a call whose latency is followed
                    until = self.follow_every
                    came = self._hop_of.get(e.delivery) if self._hop_of else None
                    queued_at[e.delivery] = (e.time if came is None else came[1], e.method)
            elif type(e) is DeliveryStarted:
                q = queues.get(e.object, 0)
                if q > 0:
                    queues[e.object] = q - 1
                    self.depth -= 1
            elif type(e) is DeliveryFinished:
                finished, self._finished_at = e.delivery, e.time
            elif type(e) is ReplyReleased:
                self._answer(e.delivery, e.time)
            elif type(e) is ev.CommitDone:
                self.commits += 1
                self._commits += 1
                self.batch_hist[_bin(e.keys)] += 1
            elif type(e) is ev.InstanceReset or type(e) is ev.InstanceEvicted:
                self.depth -= queues.get(e.object, 0)
                queues[e.object] = 0
            elif type(e) is ev.NetworkHopStarted or type(e) is ev.NetworkHopEnded:
                self._hop(e)
        self._finished = finished
        self._until_followed = until
        if len(queued_at) > 100_000:  # calls that never answered (lab closed...)
            for d in list(queued_at)[:50_000]:
                queued_at.pop(d, None)
                writes_of.pop(d, None)

    def _hop(self, e: ev.NetworkHopStarted | ev.NetworkHopEnded) -> None:
        """A network hop (Lab(network=...)): the request leaving, arriving; the reply leaving,
        landing (the call is answered then, its latency ending there)."""
        if type(e) is ev.NetworkHopStarted:
            if e.leg == "request":
                self._hop_sent[e.hop] = e.time
                _forget_oldest(self._hop_sent)
        elif e.leg == "request":
            self._arriving = (e.object, e.hop, e.seq)
        else:
            d = self._returning.pop(e.hop, None)
            if d is not None:
                self._answer(d, e.time)

    def _arrived(self, e: ev.DeliveryQueued, arriving: tuple[str, int, int]) -> None:
        """A delivery queued right after a request arrived: the call that came over the wire
        (the same matching as the timeline's, see TimelineReducer)."""
        self._arriving = None
        obj, hop, seq = arriving
        if (obj == e.object and e.kind_of_delivery in ("rpc", "fetch")
                and e.seq - seq <= _ARRIVAL_GAP and hop in self._hop_sent):
            self._hop_of[e.delivery] = (hop, self._hop_sent.pop(hop))
            if len(self._hop_of) > _MAX_HOPS:
                for d in list(self._hop_of)[: len(self._hop_of) - _MAX_HOPS]:
                    del self._hop_of[d]
            _forget_oldest(self._returning)

    def apply(self, e: ev.RuntimeEvent) -> None:
        self.consume((e,))

    def seed(self, snap: Any) -> None:
        """Start the queue depths from a ``durable_lab`` snapshot (calls waiting now)."""
        for o in _objects_of(snap):
            if o.queued:
                self.depth += o.queued - self.queues.get(o.label, 0)
                self.queues[o.label] = o.queued

    def settle(self) -> None:
        """Every event of the steps taken so far has been folded: a call whose code finished
        last, with no ``ReplyHeld`` after it, was answered then. (The reducer waits for the
        event after a ``DeliveryFinished`` to know; the panel calls this when the feed has no
        event left to hand over, so the last call of a run is counted without waiting for
        another event. Not in ``consume``: a batch may end between the two events.)"""
        finished, self._finished = self._finished, None
        if finished is not None:
            self._answer(finished, self._finished_at)

    def take_rows(self) -> list[tuple[float, float, float, float, float]]:
        """The intervals closed since the last take: (t, calls/s, commits/s, queue depth,
        busiest queue), t in seconds of lab time since ``origin``."""
        rows = list(self.rows)
        self.rows.clear()
        return rows

    def open_row(self) -> tuple[float, float, float, float, float] | None:
        """The interval events are still falling into (its rates so far), None before any."""
        if self._index < 0:
            return None
        width = self.interval
        return (self._index * width, self._calls / width, self._commits / width,
                float(self._peak), float(self._busiest))

    def take_points(self) -> list[tuple[int, float, str, str]]:
        """The dots since the last take; from now on follow one call in as many as make about
        DOTS_PER_TAKE dots until the next take, if calls keep coming as fast (a systematic
        sample: the same the panel drew when it took every n-th of all calls' dots)."""
        points, self.points = self.points, []
        answered, self._answered_at_take = (self.answered - self._answered_at_take,
                                            self.answered)
        #: Whether the points just taken were followed one call in several (not every call).
        self.took_sample = self.follow_every > 1
        self.follow_every = max(1, answered // self.DOTS_PER_TAKE)
        return points


# -- event log -------------------------------------------------------------------------------

_HIDDEN = frozenset({"seq", "time", "object", "object_id"})


def _gate_words(e: ev.RuntimeEvent) -> str | None:
    """The gate bookkeeping events in the object view's words: the gate is CLOSED or OPEN
    (the event names say Locked/Unlocked; a learner reads the panel's words)."""
    if type(e) is not ev.InputGateLocked and type(e) is not ev.InputGateUnlocked:
        return None
    which = "input gate" if not e.depth else f"gate of critical section (depth {e.depth})"
    if type(e) is ev.InputGateLocked:
        return f"{which} CLOSED, held by {e.holder} ({e.waiting} waiting)"
    return f"{which} OPEN: {e.holder} released it ({e.waiting} waiting)"


def describe_event(e: ev.RuntimeEvent) -> str:
    """Plain words for the log: the tour's sentence if it has one, else the fields."""
    text = _describe(e)
    if text is not None:
        return text
    text = _gate_words(e)
    if text is not None:
        return text
    if not dataclasses.is_dataclass(e):  # (every event is: durable_lab/events.py)
        return repr(e)
    return ", ".join(f"{f.name}={getattr(e, f.name)!r}" for f in dataclasses.fields(e)
                     if f.name not in _HIDDEN)
