"""Drive objects with many clients at once, and measure what happens.

A *workload* is a crowd of clients calling one method on a set of objects. It is how a lesson
shows the things one call cannot show: that one object is one queue (a hot object's latency
grows while the others idle), that a get/sleep/put increment loses updates only when calls
overlap, that an object refuses calls once its queue is full (``overloaded``).

    result = await run_workload(lab.env.COUNTER, method="increment", clients=8, per_client=50,
                                objects=4, distribution="hot", seed=1)
    print(result.summary())          # throughput, latency percentiles, calls per object, errors
    rows = result.to_rows()          # one dict per call, for pandas / matplotlib

The knobs:

- **clients**: how many callers run at once. Each client makes its calls one after the other,
  waiting for each answer (a *closed loop*); ``open_loop=True`` makes clients fire on schedule
  without waiting, which is how a real crowd overloads a server.
- **calls** (total) or **per_client**: how many calls.
- **rate**: calls per second *per client* (``None``: as fast as the answers come back).
- **objects** and **distribution**: which object each call goes to. ``"uniform"`` spreads calls
  evenly; ``"zipf"`` makes object ``k`` get a share proportional to ``1 / (k + 1) ** skew``
  (a few popular objects, a long tail: skew defaults to 1.0); ``"hot"`` sends a ``skew`` share
  (default 0.8) to ``obj-0`` and spreads the rest. Objects are named ``obj-0``, ``obj-1``, ...
  (or pass ``names=[...]``).
- **seed**: every choice (object, method, arguments) is drawn from ``random.Random(seed)``
  *before* the run starts, so the same seed gives every client the same sequence of calls.
- **history**: a :class:`durable_lab.check.History` to record every call into, to check the
  run afterwards with :func:`~durable_lab.check.linearizable` and
  :func:`~durable_lab.check.lost_updates`.
- **regions**: where the clients are (``Lab(network=...)``, ``durable_lab.network``): client
  ``c`` calls from ``regions[c % len(regions)]``, so its calls pay the round trip to wherever
  each object lives. ``result.per_region()`` and the summary give latency percentiles per
  region.
- **phases**: every call's latency is also split into phases (``durable_lab.attribution``:
  queued, running, storage, io, reentry, output_gate, network) on the lab clock:
  ``call.breakdown``, ``lab.explain(call)``, ``result.phases(object=...)`` (p50/p95/p99 per
  phase) and ``result.phases_per_object()``; the summary prints the p50/p95 of each phase.
- **timing**: ``"wall"`` (default) measures wall-clock time; ``"lab"`` measures lab-clock time,
  which is what network delays and ``commit_latency`` cost on a manual or auto clock (where
  they take no wall time at all).

Errors never stop a workload: each failed call is recorded with its kind (``overloaded``,
``reset``, ``remote``, ``timeout``, ``closed``, ``local``), as a real client would log it and
carry on. The one exception: on a lab that is already closed, ``run_workload`` raises
``LabClosedError`` at once instead of recording every call as failed.
Times are seconds from the start of the run: wall-clock (``time.perf_counter``) by default,
lab-clock with ``timing="lab"``.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from .attribution import PHASES, Breakdown, last_call, phase_percentiles
from .errors import LAB_CLOSED_MESSAGE, LabClosedError
from .network import check_caller_region
from .recording import History, error_kind

if TYPE_CHECKING:
    from .namespace import DurableObjectNamespace

__all__ = ["CallRecord", "PlannedCall", "WorkloadResult", "run_workload"]

Distribution = Literal["uniform", "zipf", "hot"]
ArgsSpec = tuple[Any, ...] | list[Any] | Callable[[int, random.Random], Sequence[Any]]


@dataclass(frozen=True, slots=True)
class PlannedCall:
    """One call of the plan, drawn before the run: call number ``index`` is client
    ``index % clients``'s call number ``seq``."""

    index: int
    client: int
    seq: int
    object: str
    method: str
    args: tuple[Any, ...]


@dataclass(slots=True)
class CallRecord:
    """What happened to one call. ``start``/``end`` are seconds since the run started."""

    index: int
    client: int
    seq: int
    object: str
    method: str
    args: tuple[Any, ...]
    start: float
    end: float
    result: Any = None
    error: BaseException | None = None
    error_kind: str | None = None
    op: int | None = None  # the call's id in the history, if one was recorded
    region: str | None = None  # the calling client's region (run_workload(regions=...))
    #: Where its time went (lab clock, ``durable_lab.attribution``): ``lab.explain(call)``.
    #: ``None`` if the call never reached its object (refused, lost, or the lab closed).
    breakdown: Breakdown | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def latency(self) -> float:
        return self.end - self.start

    def to_row(self) -> dict[str, Any]:
        return {
            "call": self.index,
            "client": self.client,
            "seq": self.seq,
            "object": self.object,
            "method": self.method,
            "args": self.args,
            "ok": self.ok,
            "result": self.result,
            "error": None if self.error is None else str(self.error),
            "error_type": None if self.error is None else type(self.error).__name__,
            "error_kind": self.error_kind,
            "start": self.start,
            "end": self.end,
            "latency": self.latency,
            "op": self.op,
            "region": self.region,
            **{f"{phase}_s": (None if self.breakdown is None else self.breakdown.phases[phase])
               for phase in PHASES},
        }

    def __str__(self) -> str:
        args = ", ".join(repr(a) for a in self.args)
        outcome = f"→ {self.result!r}" if self.ok else f"✗ {self.error_kind}: {self.error}"
        return (f"call {self.index} (client {self.client} #{self.seq}) {self.object}."
                f"{self.method}({args}) {outcome} in {self.latency * 1000:.2f} ms")


def _percentile(sorted_values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile (``q`` in 0..100) of an already sorted list."""
    if not sorted_values:
        return None
    rank = max(1, math.ceil(q / 100 * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:.2f} ms"


@dataclass
class WorkloadResult:
    """Everything a run measured. ``calls`` holds one :class:`CallRecord` per call, by number."""

    method: str
    clients: int
    names: list[str]
    distribution: str
    duration: float
    calls: list[CallRecord] = field(default_factory=list)
    plan: list[PlannedCall] = field(default_factory=list)
    #: "wall" or "lab": which clock start, end and latencies are measured on.
    timing: str = "wall"
    #: The client regions, in client order (empty without run_workload(regions=...)).
    regions: list[str] = field(default_factory=list)

    # -- counts --

    @property
    def ok_calls(self) -> list[CallRecord]:
        return [c for c in self.calls if c.ok]

    @property
    def failed_calls(self) -> list[CallRecord]:
        return [c for c in self.calls if not c.ok]

    @property
    def throughput(self) -> float:
        """Successful calls per second of the run."""
        return len(self.ok_calls) / self.duration if self.duration > 0 else 0.0

    @property
    def per_object(self) -> dict[str, int]:
        """Calls sent to each object (every object listed, in name order)."""
        counts = Counter(c.object for c in self.calls)
        return {name: counts.get(name, 0) for name in self.names}

    @property
    def hot_object(self) -> str | None:
        """The object that received the most calls."""
        counts = self.per_object
        return max(counts, key=lambda name: counts[name]) if self.calls else None

    @property
    def errors(self) -> dict[str, int]:
        """Failed calls by kind: ``overloaded``, ``reset``, ``remote``, ``timeout``, ``closed``,
        ``local``."""
        return dict(Counter(c.error_kind for c in self.calls if c.error_kind is not None))

    @property
    def error_types(self) -> dict[str, int]:
        """Failed calls by exception type name."""
        return dict(Counter(type(c.error).__name__ for c in self.calls if c.error is not None))

    def sequence(self, client: int) -> list[tuple[str, str, tuple[Any, ...]]]:
        """Client ``client``'s calls in order, as ``(object, method, args)``."""
        return [(p.object, p.method, p.args) for p in self.plan if p.client == client]

    # -- latency --

    def latencies(self, *, object: str | None = None, region: str | None = None) -> list[float]:
        """Sorted latencies (seconds) of the successful calls (of one object, or from one
        client region, if given)."""
        return sorted(c.latency for c in self.calls
                      if c.ok and (object is None or c.object == object)
                      and (region is None or c.region == region))

    def percentile(self, q: float, *, object: str | None = None,
                   region: str | None = None) -> float | None:
        """Latency (seconds) below which ``q`` percent of the successful calls finished."""
        return _percentile(self.latencies(object=object, region=region), q)

    def per_region(self) -> dict[str, dict[str, float | int | None]]:
        """Per client region (in client order): ``calls`` (successful ones) and the latency
        percentiles ``p50``, ``p95``, ``p99`` in seconds."""
        table: dict[str, dict[str, float | int | None]] = {}
        for region in dict.fromkeys(self.regions):
            lat = self.latencies(region=region)
            table[region] = {"calls": len(lat), "p50": _percentile(lat, 50),
                             "p95": _percentile(lat, 95), "p99": _percentile(lat, 99)}
        return table

    def phases(self, *, object: str | None = None) -> dict[str, dict[str, float | None]]:
        """Where the time went: per phase (``durable_lab.attribution.PHASES``), the p50, p95
        and p99 (seconds, lab clock) of the time the successful calls (of one object, if
        given) spent in it."""
        return phase_percentiles(c.breakdown for c in self.calls
                                 if c.ok and c.breakdown is not None
                                 and (object is None or c.object == object))

    def phases_per_object(self) -> dict[str, dict[str, dict[str, float | None]]]:
        """:meth:`phases` for every object that answered a call, in name order."""
        answered = {c.object for c in self.calls if c.ok and c.breakdown is not None}
        return {name: self.phases(object=name) for name in self.names if name in answered}

    def slowest(self, n: int = 20) -> list[CallRecord]:
        """The ``n`` slowest successful calls, slowest first (for ``lab.explain``)."""
        return sorted(self.ok_calls, key=lambda c: -c.latency)[:n]

    @property
    def p50(self) -> float | None:
        return self.percentile(50)

    @property
    def p90(self) -> float | None:
        return self.percentile(90)

    @property
    def p99(self) -> float | None:
        return self.percentile(99)

    # -- output --

    def to_rows(self) -> list[dict[str, Any]]:
        """One dict per call (``pandas.DataFrame(result.to_rows())``)."""
        return [c.to_row() for c in self.calls]

    def summary(self) -> str:
        ok, failed = len(self.ok_calls), len(self.failed_calls)
        clock = " of lab time" if self.timing == "lab" else ""
        lines = [
            f"Workload: {len(self.calls)} calls of {self.method} from {self.clients} client(s) "
            f"on {len(self.names)} object(s) ({self.distribution}) in {self.duration:.3f} s"
            f"{clock}",
            f"  ok {ok}, failed {failed}"
            + (" (" + ", ".join(f"{kind} {n}" for kind, n in sorted(self.errors.items())) + ")"
               if failed else ""),
            f"  throughput {self.throughput:.1f} calls/s; latency p50 {_ms(self.p50)}, "
            f"p90 {_ms(self.p90)}, p99 {_ms(self.p99)}",
        ]
        if self.regions:
            lines.append("  latency by client region:")
            for region, row in self.per_region().items():
                lines.append(f"    {region:<8} {row['calls']:>5} ok  p50 {_ms(row['p50']):>10}  "
                             f"p95 {_ms(row['p95']):>10}  p99 {_ms(row['p99']):>10}")
        table = self.phases()
        shown_phases = [p for p in PHASES if (table[p]["p95"] or 0) > 0]
        if shown_phases:
            lines.append("  where the time went (p50 / p95 per phase, lab clock):")
            lines.append("    " + ", ".join(
                f"{p} {_ms(table[p]['p50'])} / {_ms(table[p]['p95'])}" for p in shown_phases))
        counts = self.per_object
        top = max(counts.values(), default=0)
        shown = sorted(counts.items(), key=lambda kv: -kv[1])[:10]
        lines.append("  calls per object:")
        for name, n in shown:
            bar = "█" * (round(30 * n / top) if top else 0)
            lines.append(f"    {name:<12} {n:>6} {bar}")
        if len(counts) > len(shown):
            lines.append(f"    … {len(counts) - len(shown)} more")
        closed = self.errors.get("closed", 0)
        if closed:
            lines.append(f"  {closed} call(s) failed because the lab was closed during the run: "
                         "make a new Lab() (re-run the cell that makes it) and run this again")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary()

    def __repr__(self) -> str:
        return (f"<WorkloadResult {len(self.calls)} calls, {len(self.failed_calls)} failed, "
                f"{self.throughput:.1f} calls/s>")

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:
        p.text(self.summary())


# -- planning ----------------------------------------------------------------------------------


def _object_picker(distribution: str, count: int, skew: float | None
                   ) -> Callable[[random.Random], int]:
    if distribution == "uniform":
        return lambda rng: rng.randrange(count)
    if distribution == "zipf":
        s = 1.0 if skew is None else float(skew)
        if s < 0:
            raise ValueError(f"zipf skew must be >= 0, got {skew!r}")
        cumulative: list[float] = []
        total = 0.0
        for k in range(count):
            total += 1.0 / (k + 1) ** s
            cumulative.append(total)
        return lambda rng: rng.choices(range(count), cum_weights=cumulative)[0]
    if distribution == "hot":
        share = 0.8 if skew is None else float(skew)
        if not 0.0 <= share <= 1.0:
            raise ValueError(f"with distribution='hot', skew is the hot object's share of the "
                             f"calls, between 0 and 1; got {skew!r}")
        if count == 1:
            return lambda rng: 0
        return lambda rng: 0 if rng.random() < share else 1 + rng.randrange(count - 1)
    raise ValueError(f"distribution must be 'uniform', 'zipf' or 'hot', got {distribution!r}")


def _method_picker(method: str | Mapping[str, float]) -> Callable[[random.Random], str]:
    if isinstance(method, str):
        return lambda rng: method
    names = list(method)
    weights = [float(method[n]) for n in names]
    if not names or any(w < 0 for w in weights) or sum(weights) <= 0:
        raise ValueError(f"method weights must be >= 0 with a positive total, got {method!r}")
    return lambda rng: rng.choices(names, weights=weights)[0]


def _args_for(spec: ArgsSpec | Mapping[str, ArgsSpec], method: str, i: int,
              rng: random.Random) -> tuple[Any, ...]:
    if isinstance(spec, Mapping):
        spec = spec.get(method, ())
    if callable(spec):
        made = spec(i, rng)
        if not isinstance(made, (tuple, list)):
            raise TypeError(f"args(i, rng) must return a tuple of arguments, got "
                            f"{type(made).__name__} {made!r} (write `return (x,)` for one)")
        return tuple(made)
    if isinstance(spec, (tuple, list)):
        return tuple(spec)
    raise TypeError(f"args must be a tuple, a function (i, rng) -> tuple, or a dict of those "
                    f"by method; got {type(spec).__name__}")


def _plan(*, clients: int, total: int, names: list[str], method: str | Mapping[str, float],
          distribution: str, skew: float | None, args: ArgsSpec | Mapping[str, ArgsSpec],
          seed: int | None) -> list[PlannedCall]:
    rng = random.Random(seed)
    pick_object = _object_picker(distribution, len(names), skew)
    pick_method = _method_picker(method)
    plan = []
    for i in range(total):
        chosen = pick_method(rng)
        target = names[pick_object(rng)]
        plan.append(PlannedCall(i, i % clients, i // clients, target, chosen,
                                _args_for(args, chosen, i, rng)))
    return plan


# -- running -----------------------------------------------------------------------------------


def _consume(fut: asyncio.Future[Any]) -> None:
    if not fut.cancelled():
        fut.exception()  # retrieved: a late answer nobody waits for any more


async def run_workload(
    namespace: DurableObjectNamespace,
    *,
    method: str | Mapping[str, float],
    clients: int = 4,
    calls: int | None = None,
    per_client: int | None = None,
    rate: float | None = None,
    objects: int = 1,
    names: Sequence[str] | None = None,
    distribution: Distribution = "uniform",
    skew: float | None = None,
    args: ArgsSpec | Mapping[str, ArgsSpec] = (),
    seed: int | None = 0,
    history: History | None = None,
    timeout: float | None = None,  # noqa: ASYNC109 - a per-call timeout, not the whole run's
    open_loop: bool = False,
    regions: Sequence[str] | None = None,
    timing: Literal["wall", "lab"] = "wall",
) -> WorkloadResult:
    """Run ``clients`` concurrent clients calling ``method`` on objects of ``namespace``.

    Args:
        method: the method to call, or ``{"increment": 0.9, "value": 0.1}`` to mix methods.
        clients: concurrent clients (client ``c`` makes calls ``c``, ``c + clients``, ...).
        calls: total number of calls, shared out round-robin; or ``per_client`` calls each.
        rate: calls per second per client (``None``: as fast as possible), paced on the wall
            clock (also with ``timing="lab"``).
        objects: how many objects (``obj-0`` ... ``obj-{objects-1}``); or ``names=[...]``.
        distribution: ``"uniform"``, ``"zipf"`` or ``"hot"``; ``skew`` tunes the last two.
        args: the arguments of every call (a tuple), a function ``args(i, rng) -> tuple`` of
            the call number and the workload's random generator, or a dict of those by method.
        seed: seeds the generator every choice is drawn from (same seed, same calls).
        history: record every call into this :class:`~durable_lab.check.History`.
        timeout: seconds a client waits for an answer before giving up on that call (recorded
            as a ``timeout`` error; the call may still take effect later).
        open_loop: clients send on schedule without waiting for answers (needs ``rate``).
        regions: the client regions, one per client in turn (client ``c`` calls from
            ``regions[c % len(regions)]``); see ``Lab(network=...)``.
        timing: ``"wall"`` (wall-clock seconds) or ``"lab"`` (lab-clock seconds: what network
            delays and commit latency cost on a manual or auto clock).

    A fresh stub is taken for every call (as a Worker does per request), so a reset object is
    reached again by the next call. Errors are recorded, never raised.
    """
    if not isinstance(clients, int) or clients < 1:
        raise ValueError(f"clients must be an int >= 1, got {clients!r}")
    if (calls is None) == (per_client is None):
        raise ValueError("give exactly one of calls= (total) or per_client=")
    total = calls if calls is not None else per_client * clients  # type: ignore[operator]
    if not isinstance(total, int) or total < 0:
        raise ValueError(f"the number of calls must be an int >= 0, got {total!r}")
    if rate is not None and (not isinstance(rate, (int, float)) or rate <= 0):
        raise ValueError(f"rate must be calls per second per client (> 0) or None, got {rate!r}")
    if open_loop and rate is None:
        raise ValueError("open_loop=True needs a rate= (calls per second per client)")
    if timeout is not None and timeout <= 0:
        raise ValueError(f"timeout must be > 0 seconds or None, got {timeout!r}")
    if names is not None:
        name_list = [str(n) for n in names]
        if not name_list or len(set(name_list)) != len(name_list):
            raise ValueError(f"names must be a non-empty list of distinct names, got {names!r}")
    else:
        if not isinstance(objects, int) or objects < 1:
            raise ValueError(f"objects must be an int >= 1, got {objects!r}")
        name_list = [f"obj-{k}" for k in range(objects)]
    if timing not in ("wall", "lab"):
        raise ValueError(f"timing must be 'wall' or 'lab', got {timing!r}")
    region_list: list[str] = []
    if regions is not None:
        if isinstance(regions, str) or not regions:
            raise ValueError(f"regions must be a non-empty list of regions (one per client in "
                             f"turn), e.g. ['weur', 'apac-ne']; got {regions!r}")
        network = namespace._services.network
        region_list = [check_caller_region(network, r) for r in regions]  # checks each name
    if namespace._services.closed:
        # Every call would fail the same way: say it once, not "failed 120 (local 120)".
        raise LabClosedError(f"run_workload() cannot call {namespace.name}: {LAB_CLOSED_MESSAGE}")
    cls = namespace.cls
    for name in ([method] if isinstance(method, str) else list(method)):
        if name.startswith("_") or not callable(getattr(cls, name, None)):
            raise TypeError(f"{cls.__qualname__} has no public method {name!r} to call")

    plan = _plan(clients=clients, total=total, names=name_list, method=method,
                 distribution=distribution, skew=skew, args=args, seed=seed)
    ids = {name: namespace.idFromName(name) for name in name_list}
    records: list[CallRecord | None] = [None] * total
    seen_from = {r: namespace._seen_from(r) for r in region_list}
    client_region = [region_list[c % len(region_list)] if region_list else None
                     for c in range(clients)]
    now = namespace._services.clock.now if timing == "lab" else time.perf_counter
    t0 = time.perf_counter()
    clock_t0 = now()

    async def one_call(call: PlannedCall) -> None:
        token = (history.invoke(call.client, call.object, call.method, call.args)
                 if history is not None else None)
        start = now() - clock_t0
        result: Any = None
        error: BaseException | None = None
        region = client_region[call.client]
        stub = None
        try:
            stub = (seen_from[region] if region is not None else namespace).get(ids[call.object])
            reply = asyncio.ensure_future(getattr(stub, call.method)(*call.args))
            if timeout is None:
                result = await reply
            else:
                done, _ = await asyncio.wait({reply}, timeout=timeout)
                if not done:
                    reply.add_done_callback(_consume)
                    raise TimeoutError(f"no answer from {call.object}.{call.method}() "
                                       f"within {timeout} s")
                result = reply.result()
        except Exception as exc:
            error = exc
        end = now() - clock_t0
        # A fresh stub per call: its most recent call is this one.
        breakdown = last_call(stub) if stub is not None else None
        if token is not None and history is not None:
            if error is None:
                history.complete(token, result)
            else:
                history.fail(token, error)
        records[call.index] = CallRecord(
            call.index, call.client, call.seq, call.object, call.method, call.args, start, end,
            result, error, None if error is None else error_kind(error), token, region,
            breakdown)

    async def client(number: int) -> None:
        mine = plan[number::clients]
        in_flight: list[asyncio.Task[None]] = []
        for k, call in enumerate(mine):
            if rate is not None:
                delay = t0 + k / rate - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
            if open_loop:
                in_flight.append(asyncio.ensure_future(one_call(call)))
            else:
                await one_call(call)
        if in_flight:
            await asyncio.gather(*in_flight)

    await asyncio.gather(*(client(c) for c in range(min(clients, max(total, 1)))))
    duration = now() - clock_t0
    done = [r for r in records if r is not None]
    return WorkloadResult(
        method=method if isinstance(method, str) else "/".join(method),
        clients=clients, names=name_list, distribution=distribution, duration=duration,
        calls=done, plan=plan, timing=timing,
        regions=[r for r in client_region if r is not None])
