"""Latency attribution: where did a call's time go?

A slow Durable Objects design is slow for a reason the caller cannot see: the call queued behind
others at the input gate, or waited for its own storage reads with the gate held, or for a timer
or another object, or came back from that wait to find the gate taken, or was held by the output
gate until its writes were durable, or crossed an ocean twice. This module names those reasons
and measures, for every call, how much of its end-to-end latency each one took.

Every call's latency (lab clock, from the moment the caller made the call to the moment the reply
reached it) is split into seven *phases* that add up to it exactly:

=============  ======================================================================
phase          the call is...
=============  ======================================================================
``queued``     waiting for its first admission at the object's input gate
``running``    running its own turns (object code, the gate held by it)
``storage``    waiting for its own storage reads, the gate held (cache misses)
``io``         waiting on other I/O with the gate open: timers, calls to other objects,
               tasks and futures it awaits
``reentry``    done waiting, waiting to come back in through the input gate
``output_gate`` done, its reply held by the output gate until the writes before it
               are durable (or, for a call made by an object, the call held by the
               caller's output gate before it could leave)
``network``    on its way: the placement model's one-way delays (``Lab(network=...)``)
               out and back, and a delay injected by ``lab.faults.delay_calls``
=============  ======================================================================

The bookkeeping is always on and cheap: a :class:`~durable_lab._host.Delivery` keeps its current
phase and the lab-clock time it entered it; at each transition the driver already knows about
(admission, turn end, read done, resume requested, re-admission, finish, reply released, network
out and back) the elapsed time is added to the phase it leaves. Because the buckets telescope,
they sum to ``end - start`` by construction; the lab clock makes the numbers exact on a manual or
auto clock. docs/attribution.md says exactly where each boundary is taken and what is simplified.

What it costs (bench/RESULTS-attribution.txt, ``python bench/bench_attribution.py BEFORE_TREE
--clock callgrind``): a trivial call with nobody subscribed executes 3.0 % more machine
instructions (3.7 % on SQLite storage), for two clock reads and a handful of attribute
stores; the issue's target is at most 5 %. (Timings on the shared machine it was measured on
swung by more than that, the same tree against itself included, so the deterministic count is
the figure given.)

A finished call's numbers are frozen into a :class:`Breakdown` (plain data, JSON-able): kept with
the call in ``lab.history()`` entries (``op.breakdown``) and in workload results, reachable for
the most recent call on a stub (:func:`last_call`), and explained by :func:`explain`
(``lab.explain(call)``): a short table and a one-line verdict naming the dominant phase and its
cause (a queue, a critical section, a commit and ``commit_latency``, a timer, a region pair...).

This module imports nothing from the runtime: the host fills the buckets, this module reads them.
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "PHASES",
    "PHASE_LABELS",
    "Breakdown",
    "Explanation",
    "explain",
    "last_call",
    "phase_percentiles",
]

#: The phases, in the order a call usually meets them (and the order tables show them).
PHASES = ("queued", "running", "storage", "io", "reentry", "output_gate", "network")

# Indices into a delivery's bucket list (the hot path indexes, it never looks names up).
QUEUED, RUNNING, STORAGE, IO, REENTRY, OUTPUT_GATE, NETWORK = range(7)

#: What each phase means, in the words a table or a panel legend uses.
PHASE_LABELS = {
    "queued": "waiting for admission (input gate)",
    "running": "running its own turns",
    "storage": "waiting for its storage reads (gate held)",
    "io": "waiting on other I/O (gate open)",
    "reentry": "waiting to re-enter (input gate)",
    "output_gate": "held by the output gate",
    "network": "network",
}


def _ms(seconds: float) -> str:
    ms = seconds * 1000
    return f"{ms:.0f} ms" if ms >= 10 else f"{ms:.1f} ms" if ms >= 0.1 else f"{ms:.3f} ms"


@dataclass(frozen=True, slots=True)
class Breakdown:
    """One call's latency, split into :data:`PHASES`, with what the verdict needs to say why.

    ``phases`` maps every phase name to seconds (lab clock); they add up to :attr:`latency`.
    ``end`` is ``None`` while the call is still in flight (then the phase it is in counts up
    to the moment the breakdown was taken, and ``in_phase`` names it).
    """

    object: str
    delivery: int
    method: str
    start: float
    end: float | None
    phases: dict[str, float]
    kind: str = "rpc"
    in_phase: str | None = None
    #: Turns it ran (admissions through the gate), storage reads it awaited with the gate held,
    #: timers it awaited and the seconds it spent waiting for them.
    turns: int = 0
    reads: int = 0
    timers: int = 0
    timer_wait: float = 0.0
    #: At arrival: deliveries waiting ahead of it for their first admission; whether a
    #: blockConcurrencyWhile held the gate while it queued; whether it arrived at a new
    #: instance whose constructor had not run yet.
    queue_ahead: int = 0
    behind_section: bool = False
    behind_constructor: bool = False
    #: Its own blockConcurrencyWhile: seconds from awaiting it to getting the gate back.
    section: float = 0.0
    #: When its reply was held: keys waiting to commit, commits pending; the lab's
    #: commit_latency; seconds its outgoing call was held by the *caller's* output gate.
    held_writes: int = 0
    held_commits: int = 0
    commit_latency: float = 0.0
    caller_held: float = 0.0
    #: With Lab(network=...): (caller's region, object's region, round trip in seconds).
    route: tuple[str, str, float] | None = None
    #: Storage of the lab ("sqlite" or "memory") and the class's engine ("kv" or "sql").
    storage: str = ""
    engine: str = "kv"
    #: The calls it made to other objects (their own breakdowns), in the order they arrived.
    calls: tuple[Breakdown, ...] = field(default=())

    @property
    def latency(self) -> float:
        """Seconds from the call to its reply (or to now, for a call in flight)."""
        return sum(self.phases.values())

    @property
    def dominant(self) -> str:
        """The phase that took the most time (``running`` for a call that took none)."""
        if self.latency <= 0:
            return "running"
        return max(PHASES, key=lambda p: self.phases[p])

    def share(self, phase: str) -> float:
        """The fraction (0..1) of the latency spent in ``phase``."""
        total = self.latency
        return self.phases[phase] / total if total > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name in self.__slots__:
            value = getattr(self, name)
            if name == "calls":
                value = [c.to_dict() for c in value]
            elif name == "route" and value is not None:
                value = list(value)
            elif name == "phases":
                value = dict(value)
            out[name] = value
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Breakdown:
        kwargs = dict(data)
        kwargs["calls"] = tuple(cls.from_dict(c) for c in kwargs.get("calls", ()))
        route = kwargs.get("route")
        kwargs["route"] = None if route is None else (str(route[0]), str(route[1]),
                                                      float(route[2]))
        kwargs["phases"] = {p: float(kwargs.get("phases", {}).get(p, 0.0)) for p in PHASES}
        known = set(cls.__slots__)
        return cls(**{k: v for k, v in kwargs.items() if k in known})

    def __str__(self) -> str:
        return str(Explanation(self))


# -- building a breakdown from a delivery (called by the host and the lab) ---------------------


def snapshot(delivery: Any, now: float, settings: Any) -> Breakdown:
    """Freeze ``delivery``'s buckets into a :class:`Breakdown` (at ``now`` if still in flight).

    ``settings`` is the lab's (``commit_latency``, ``storage``): its ``LabServices``.

    ``delivery`` is a ``_host.Delivery``; read by attribute so this module stays below the host.
    """
    spent = list(delivery.spent)
    # (The delivery sets these only when they mean something: see _host.Delivery.)
    end = getattr(delivery, "end", None)
    in_phase = None
    if end is None:
        spent[delivery.phase] += max(0.0, now - delivery.since)
        in_phase = PHASES[delivery.phase]
    info = getattr(delivery, "info", None) or {}
    turns = getattr(delivery, "turns", 0 if delivery.phase == QUEUED and end is None else 1)
    host = delivery.host
    behind_section = bool(info.get("behind_section", False))
    if not behind_section and spent[QUEUED] > 0:
        # A critical section of another call that held the gate while this one queued.
        queued_until = delivery.start + spent[NETWORK] + spent[QUEUED]
        behind_section = any(
            s_start < queued_until and s_end > delivery.start and s_delivery != delivery.id
            for s_start, s_end, s_delivery in host.sections)
    return Breakdown(
        object=host.label, delivery=delivery.id, method=delivery.method, kind=delivery.kind,
        start=delivery.start, end=end, phases=dict(zip(PHASES, spent, strict=True)),
        in_phase=in_phase, turns=turns, reads=info.get("reads", 0),
        timers=info.get("timers", 0), timer_wait=info.get("timer_wait", 0.0),
        queue_ahead=getattr(delivery, "queue_ahead", 0), behind_section=behind_section,
        behind_constructor=bool(info.get("behind_constructor", False)),
        section=info.get("section", 0.0), held_writes=info.get("held_writes", 0),
        held_commits=info.get("held_commits", 0), commit_latency=settings.commit_latency,
        caller_held=info.get("caller_held", 0.0), route=info.get("route"),
        storage=settings.storage, engine="sql" if host.namespace.sql else "kv",
        calls=tuple(snapshot(c, now, settings) for c in info.get("calls", ())),
    )


def last_call(stub: Any) -> Breakdown | None:
    """The breakdown of the most recent call made on ``stub`` that reached its object (in
    flight or finished); ``None`` if none has yet."""
    delivery = getattr(stub, "_last", None)
    if delivery is None:
        return None
    services = stub._host.services
    return snapshot(delivery, services.clock.now(), services)


# -- percentiles over many calls (workload results, the panel) ---------------------------------


def _nearest_rank(sorted_values: list[float], q: float) -> float:
    rank = max(1, -(-q * len(sorted_values) // 100))
    return sorted_values[int(min(rank, len(sorted_values))) - 1]


def phase_percentiles(breakdowns: Iterable[Breakdown], qs: Iterable[float] = (50, 95, 99)
                      ) -> dict[str, dict[str, float | None]]:
    """Per phase, the nearest-rank percentiles (seconds) of the time calls spent in it:
    ``{"queued": {"p50": ..., "p95": ..., "p99": ...}, ...}`` (``None`` with no calls)."""
    rows = list(breakdowns)
    qs = list(qs)
    table: dict[str, dict[str, float | None]] = {}
    for phase in PHASES:
        values = sorted(b.phases[phase] for b in rows)
        table[phase] = {f"p{q:g}": (_nearest_rank(values, q) if values else None) for q in qs}
    return table


# -- explaining ---------------------------------------------------------------------------------


def _verdict(b: Breakdown) -> str:
    """One line: the dominant phase, its share, and the cause the breakdown can name."""
    phase = b.dominant
    share = f"{b.share(phase) * 100:.0f} %"
    spent = b.phases[phase]
    if b.latency <= 0:
        return "took no lab time (a manual clock that was not advanced, or a trivial call)"
    if phase == "queued":
        if b.behind_section:
            why = (f"a blockConcurrencyWhile held the gate while it waited "
                   f"({_ms(spent)} queued)")
        elif b.behind_constructor and not b.queue_ahead:
            why = (f"it arrived at a new instance, whose constructor runs first "
                   f"({_ms(spent)} queued)")
        elif b.queue_ahead:
            why = (f"queued behind {b.queue_ahead} call(s) ahead of it "
                   f"({_ms(spent)}); one object is one queue")
        else:
            why = f"{_ms(spent)} before the gate admitted it"
        return f"{share} waiting for admission at the input gate: {why}"
    if phase == "running":
        return (f"{share} running its own code: {b.turns} turn(s), {_ms(spent)} of lab time "
                "with the input gate held by this call (long synchronous work delays every "
                "call behind it)")
    if phase == "storage":
        where = (f"Lab(storage={b.storage!r})" if b.storage else "storage")
        return (f"{share} waiting for its own storage reads with the input gate held: "
                f"{b.reads} read(s) that missed the cache ({_ms(spent)}, {where}); nothing else "
                "runs meanwhile")
    if phase == "io":
        causes = []
        if b.section > 0 and b.timers:
            return (f"{share} waiting inside its own blockConcurrencyWhile, the input gate held "
                    f"throughout: {b.timers} timer(s) ({_ms(b.timer_wait)}); every other "
                    "call to this object waits for it")
        if b.timers:
            causes.append(f"{b.timers} timer(s) ({_ms(b.timer_wait)})")
        if b.calls:
            slowest = max(b.calls, key=lambda c: c.latency)
            causes.append(f"{len(b.calls)} call(s) to other objects (slowest "
                          f"{slowest.object}.{slowest.method} {_ms(slowest.latency)}: "
                          f"mostly {slowest.dominant.replace('_', ' ')}, see .calls)")
        if not causes:
            causes.append("futures or tasks it awaited")
        return (f"{share} waiting on other I/O with the input gate open: "
                + " and ".join(causes))
    if phase == "reentry":
        return (f"{share} waiting to re-enter through the input gate after its I/O: other "
                f"calls held the gate ({_ms(spent)}); their turns ran first")
    if phase == "output_gate":
        if b.caller_held and b.caller_held >= spent / 2:
            return (f"{share} held by the caller's output gate: the call left only once the "
                    f"caller's writes were durable ({_ms(b.caller_held)}; commit_latency "
                    f"{_ms(b.commit_latency)})")
        batch = (f"{b.held_writes} write(s) committed in one batch"
                 if b.held_commits <= 1 else
                 f"{b.held_writes} key(s) written, in {b.held_commits} commits one after the "
                 "other")
        return (f"{share} held by the output gate: {batch}; commit_latency "
                f"{_ms(b.commit_latency)}")
    # network
    if b.route is not None:
        source, target, rtt = b.route
        return (f"{share} on the network: {source} → {target} and back, round trip "
                f"{_ms(rtt)} (place the object nearer its callers: locationHint, or one "
                "object per region)")
    return f"{share} on the network: a delayed call (lab.faults.delay_calls), {_ms(spent)}"


class Explanation:
    """What ``lab.explain(call)`` returns: prints as a table of phases and a verdict."""

    def __init__(self, breakdown: Breakdown) -> None:
        self.breakdown = breakdown
        self.verdict = _verdict(breakdown)

    def rows(self) -> list[tuple[str, float, float]]:
        """``(phase, seconds, share 0..1)`` for every phase, in :data:`PHASES` order."""
        b = self.breakdown
        return [(p, b.phases[p], b.share(p)) for p in PHASES]

    def _title(self) -> str:
        b = self.breakdown
        state = "" if b.end is not None else f" (in flight, now {b.in_phase})"
        return (f"{b.object}.{b.method} (delivery {b.delivery}): {_ms(b.latency)}"
                f"{state}")

    def __str__(self) -> str:
        lines = [self._title()]
        for phase, seconds, share in self.rows():
            if seconds <= 0:
                continue
            bar = "█" * max(1, round(share * 20))
            lines.append(f"  {phase:<12} {seconds * 1000:>10.3f} ms {share * 100:>5.1f} %  {bar}")
        lines.append(f"  → {self.verdict}")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return str(self)

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:
        p.text(str(self))

    def _repr_html_(self) -> str:
        rows = "".join(
            f"<tr><td>{html.escape(phase)}</td><td style='text-align:right'>"
            f"{seconds * 1000:.3f} ms</td><td style='text-align:right'>{share * 100:.1f} %</td>"
            f"<td><div style='background:#4c78a8;height:0.8em;width:{share * 200:.0f}px'>"
            f"</div></td></tr>"
            for phase, seconds, share in self.rows() if seconds > 0)
        return (f"<div><b>{html.escape(self._title())}</b><table>"
                f"<tr><th>phase</th><th>time</th><th>share</th><th></th></tr>{rows}</table>"
                f"<p>{html.escape(self.verdict)}</p></div>")


def explain(call: Any, lab: Any = None) -> Explanation:
    """Explain one call: a :class:`Breakdown`, a history entry (``lab.history()`` operation or
    a workload ``CallRecord`` with a breakdown), or a stub (its most recent call)."""
    breakdown = getattr(call, "breakdown", call)
    if isinstance(breakdown, Breakdown):
        return Explanation(breakdown)
    if hasattr(call, "_host") and hasattr(call, "_send"):  # a stub
        found = last_call(call)
        if found is None:
            raise ValueError(f"no call on {call!r} has reached its object yet: explain() "
                             "needs a call that was made (await stub.method() first)")
        return Explanation(found)
    if breakdown is None:
        raise ValueError(
            f"{call!r} has no breakdown: history entries get one on a Lab(record=True) once "
            "the call answered; workload calls once they reached their object")
    raise TypeError(f"explain() takes a history entry, a workload call, a Breakdown or a stub; "
                    f"got {type(call).__name__}: {call!r}")
