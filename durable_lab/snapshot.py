"""Snapshots: an object's live state now, in the words of the event stream, stamped with a seq.

A panel opened late knows only the events after it opened: a mailbox with two calls waiting
would look empty. A snapshot is what that panel needs to start from: the state a reader of the
stream would have reached by folding events 1..``seq`` (``lab.bus.seq`` when it was taken),
read from the runtime itself, so the panel starts from it and folds the events after ``seq``:
no gap, no double count (docs/panels.md, "Panels opened late").

It is read synchronously, outside the object's turns: nothing is delivered to the object, no
gate is touched, no event is emitted. ``lab.snapshot()`` gives every object
(:class:`LabSnapshot`), ``lab.snapshot(target)`` one (:class:`ObjectSnapshot`), and
``await lab.snapshot_storage(target)`` one with its key-value data (``storage``), read at the
same seq.

The fields use the vocabulary of the events (docs/events.md):

- ``mailbox``: deliveries queued (``DeliveryQueued``) and not yet admitted through the input
  gate for the first time (``InputGateLocked`` for them, or ``DeliveryStarted``);
- ``admitted``: a delivery the gate just admitted whose code has not started yet (the next
  step of the runtime starts it): its turn is the running one;
- ``in_flight``: deliveries whose code started and has not finished (``DeliveryFinished``);
- ``running`` / ``awaiting``: the delivery whose turn runs now, and what each delivery's
  last ``TurnEnded`` said it awaits (``storage``, ``io``, ``blockConcurrencyWhile``,
  ``yield``), kept by the runtime where it emits those events (``Instance.running``);
- ``dirty``: keys written and not yet taken by a flush (``"*"``: a pending deleteAll);
- ``batches``: batches flushed (``FlushStarted``) and not yet landed or failed;
- ``held``: replies held by the output gate: (delivery, commits still to land, counted as a
  reader does: the ``waiting_for`` of its ``ReplyHeld`` less the ``CommitDone`` since);
- ``finished``, ``commits``, ``resets``, ``last_batch``, ``last_reset``, ``released``: what
  those events said so far, counted whether or not anyone listened.

The event stream is only built while someone listens; the runtime keeps what a snapshot
reads at all times, so a snapshot of a lab nobody watched is what a reader who watched from
the start would have folded.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .attribution import OUTPUT_GATE

__all__ = ["LabSnapshot", "ObjectSnapshot", "lab_snapshot", "object_snapshot"]


@dataclass(frozen=True, slots=True)
class ObjectSnapshot:
    """One object's live state, consistent with the event stream up to event ``seq``."""

    seq: int
    label: str
    object_id: str
    namespace: str
    name: str | None
    #: "not started" (never constructed), "live", "reset", "evicted" or "closed" (the lab
    #: closed): the status the events gave it last. An instance being constructed again
    #: after a reset keeps "reset" until ``InstanceConstructed``.
    status: str
    #: An instance is in memory (constructed, or about to be for the calls it queued).
    in_memory: bool
    #: The incarnation last constructed (0: none).
    incarnation: int
    mailbox: tuple[tuple[int, str], ...] = ()  # (delivery, method), oldest first
    #: Deliveries waiting for their first admission, the admitted-not-started one included
    #: (``DeliveryQueued.queue_length`` counts these).
    queued: int = 0
    admitted: int | None = None
    admitted_method: str = ""
    gate_holder: str = ""  # "" = the input gate is open
    #: Everyone waiting at the input gate, as (holder, kind): deliveries and continuations.
    gate_waiters: tuple[tuple[str, str], ...] = ()
    critical_section: bool = False
    running: int | None = None
    in_flight: tuple[tuple[int, str], ...] = ()  # (delivery, method)
    awaiting: tuple[tuple[int, str], ...] = ()  # (delivery, what)
    dirty: tuple[str, ...] = ()
    batches: tuple[tuple[int, tuple[str, ...]], ...] = ()
    held: tuple[tuple[int, int], ...] = ()  # (delivery, commits it still waits for)
    #: Calls to other objects held by the output gate (``OutgoingCallHeld``, not released).
    outgoing_held: int = 0
    finished: int = 0
    commits: int = 0
    resets: int = 0
    last_batch: tuple[int, int, bool] | None = None  # (batch, keys, ok)
    last_reset: str = ""
    reset_seq: int = 0
    released: tuple[tuple[int, bool], ...] = ()  # the last replies released: (delivery, ok)
    last_fault: str = ""  # the last fault armed for it: "kind (detail)"
    region: str | None = None
    #: The key-value data as the object sees it (pending writes included), from
    #: ``await lab.snapshot_storage(target)``; None in a snapshot taken without it.
    storage: Mapping[str, Any] | None = None

    @property
    def methods(self) -> dict[int, str]:
        """Deliveries admitted and not finished: delivery -> method (the running turn's,
        the ones awaiting something, and the one admitted but not started)."""
        out = dict(self.in_flight)
        if self.admitted is not None:
            out[self.admitted] = self.admitted_method
        return dict(sorted(out.items()))


@dataclass(frozen=True, slots=True)
class LabSnapshot:
    """Every object the lab has seen, and the scheduler, at event ``seq``."""

    seq: int
    paused: bool
    steps: int  # transitions taken while paused (``StepTaken``)
    last_step: str  # the description of the last one
    closed: bool
    objects: tuple[ObjectSnapshot, ...] = field(default_factory=tuple)
    #: The lab clock when it was taken (epoch seconds, like ``RuntimeEvent.time``): where a
    #: panel drawing against lab time opens the lanes the snapshot says are open.
    time: float = 0.0

    def get(self, label: str) -> ObjectSnapshot | None:
        """The snapshot of the object labelled ``label`` (None if the lab has not seen it)."""
        for snap in self.objects:
            if snap.label == label:
                return snap
        return None


def _delivery_number(holder: str) -> int | None:
    head, _, number = holder.rpartition(" ")
    return int(number) if head == "delivery" and number.isdigit() else None


def _status(host: Any) -> str:
    instance = host.instance
    if instance is not None and host.constructed == instance.incarnation:
        return "live"  # (InstanceConstructed was emitted for the instance in memory)
    end = host.last_end
    if end == "":
        return "not started"
    if end == "evicted":
        return "evicted"
    if end == "labClosed":
        return "closed"
    return "reset"


def _batches(host: Any) -> list[tuple[int, tuple[str, ...]]]:
    """Batches in flight as a reader of the stream knows them: those of the current
    instance, and one of the instance before it that may still be landing (until a new
    instance is constructed: ``InstanceConstructed`` clears them from the reader's view)."""
    out: list[tuple[int, tuple[str, ...]]] = []
    caches = []
    previous = host.previous_cache
    if previous is not None and previous.instance.incarnation >= host.constructed:
        caches.append(previous)
    instance = host.instance
    if instance is not None and instance.cache is not previous:
        caches.append(instance.cache)
    for cache in caches:
        out.extend(_batches_of(cache))
    if instance is not None:
        naive = getattr(instance.storage, "in_flight", None)  # Lab(model="none")
        if isinstance(naive, dict):
            out.extend(naive.items())
    return out


def _batches_of(cache: Any) -> Iterable[tuple[int, tuple[str, ...]]]:
    if getattr(cache, "is_sqlite", False):
        return list(cache.in_flight_batches.items())
    batch = cache.batch_in_flight()
    return [] if batch is None else [batch]


def _dirty(instance: Any) -> tuple[str, ...]:
    cache = instance.cache
    if getattr(cache, "is_sqlite", False):
        keys = tuple(cache._txn_keys)
        return (*keys, "*") if cache._txn_delete_all else keys
    keys = tuple(cache.dirty)
    return (*keys, "*") if cache.delete_all_pending else keys


def object_snapshot(host: Any, seq: int, *, region: str | None = None,
                    storage: Mapping[str, Any] | None = None) -> ObjectSnapshot:
    """The snapshot of one object host (``_host.ObjectHost``) at event ``seq``."""
    instance = host.instance
    common = dict(
        seq=seq, label=host.label, object_id=host.object_id, namespace=host.namespace.name,
        name=host.id.name, status=_status(host), in_memory=instance is not None,
        incarnation=host.constructed, batches=tuple(_batches(host)), finished=host.finished,
        commits=host.commits, resets=host.resets, last_batch=host.last_batch,
        last_reset=host.last_reset, reset_seq=host.reset_seq, released=tuple(host.released),
        last_fault=host.last_fault,
        region=region, storage=storage)
    if instance is None:
        return ObjectSnapshot(**common)
    gate = instance.gate
    waiting = gate.queued()
    # Deliveries not admitted yet: their first admission still waits at the gate (with no
    # gate at all, Lab(model="none"), until their code starts).
    not_admitted = {_delivery_number(holder) for holder, kind in waiting if kind == "admit"}
    gate_on = gate.enabled
    holder, kind = gate.holder, gate.holder_kind
    admitted = _delivery_number(holder) if kind == "admit" else None
    running = instance.running
    admitted_method = ""
    mailbox, in_flight = [], []
    for delivery in sorted(instance.deliveries, key=lambda d: d.id):
        if delivery.started:
            if delivery.phase != OUTPUT_GATE:
                in_flight.append((delivery.id, delivery.method))
        elif delivery.id == admitted:
            admitted_method = delivery.method
            running = delivery.id  # its InputGateLocked made it the running turn
        elif not gate_on or delivery.id in not_admitted:
            mailbox.append((delivery.id, delivery.method))
    if admitted is not None and running != admitted:
        admitted = None  # (a lock of kind admit whose delivery already started)
    commits = host.commits
    held = tuple(
        (d.id, max(0, d.held_at[0] - (commits - d.held_at[1])))
        for d in sorted(instance.deliveries, key=lambda d: d.id)
        if d.held_at is not None and d.phase == OUTPUT_GATE)
    return ObjectSnapshot(
        **common, mailbox=tuple(mailbox), queued=instance.queued, admitted=admitted,
        admitted_method=admitted_method if admitted is not None else "",
        gate_holder=holder, gate_waiters=tuple(waiting),
        critical_section=holder == "critical section", running=running,
        in_flight=tuple(in_flight), awaiting=tuple(instance.awaits.items()),
        dirty=_dirty(instance), held=held, outgoing_held=instance.outgoing_held)


def lab_snapshot(hosts: Iterable[Any], seq: int, *, paused: bool, steps: int, last_step: str,
                 closed: bool, region_of: Any = None, time: float = 0.0) -> LabSnapshot:
    """A :class:`LabSnapshot` of ``hosts`` (in the order the lab first saw them)."""
    objects = tuple(object_snapshot(h, seq, region=region_of(h) if region_of else None)
                    for h in hosts)
    return LabSnapshot(seq=seq, paused=paused, steps=steps, last_step=last_step,
                       closed=closed, objects=objects, time=time)
