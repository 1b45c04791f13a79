"""Exercises 00 (a counter that survives) and 01 (a counter without gates needs a lock)."""

from __future__ import annotations

import ast
import asyncio

from ..check import linearizable, lost_updates
from ..lab import Lab
from ._core import (
    CheckResult,
    Fail,
    Scenario,
    first_lines,
    gather_outcomes,
    method_tree,
    run_check,
)

__all__ = ["CONCURRENT_INCREMENTS", "SLOW_COMMITS", "check_counter", "check_locked_counter"]

#: Increments sent at once in the concurrency scenarios of exercises 00 and 01.
CONCURRENT_INCREMENTS = 10


async def _expect(call, expected, what: str, hint: str):
    got = await call
    if got != expected:
        raise Fail(f"{what} returned {got!r}, expected {expected!r}.", hint)
    return got


# -- 00: a counter ------------------------------------------------------------------------

RETURN_HINT = ("increment(by=1) should add `by` to the stored count and return the new count; "
               "value() should return the count (0 before any increment).")


async def _counts(cls: type) -> None:
    async with Lab(storage="memory", seed=1) as lab:
        stub = lab.bind("COUNTER", cls).getByName("page-1")
        await _expect(stub.value(), 0, "value() on a new counter", RETURN_HINT +
                      " A key that was never written reads as None: write "
                      "`(await self.ctx.storage.get('n')) or 0`.")
        for expected in (1, 2, 3):
            await _expect(stub.increment(), expected, f"increment() number {expected}",
                          RETURN_HINT)
        await _expect(stub.increment(5), 8, "increment(5) after three increments",
                      RETURN_HINT + " Use the `by` argument: increment(5) adds 5.")
        await _expect(stub.value(), 8, "value() after increments totalling 8", RETURN_HINT)


async def _separate(cls: type) -> None:
    async with Lab(storage="memory", seed=1) as lab:
        ns = lab.bind("COUNTER", cls)
        a, b = ns.getByName("page-a"), ns.getByName("page-b")
        await a.increment()
        await a.increment()
        got = await b.increment()
        if got != 1:
            raise Fail(
                f"'page-a' was incremented twice, then the first increment of 'page-b' "
                f"returned {got!r} instead of 1: the two counters share their count.",
                "Each name is its own object with its own storage. A class attribute "
                "(`counts = {}` in the class body) or a module-level variable is shared by "
                "every object in this Python process, and on Cloudflare the objects would not "
                "even run on the same machine. Keep the count in self.ctx.storage.")


FIELD_HINT = (
    "Fields like self.count live only in memory: the constructor runs again after an eviction "
    "and they start over. Keep the count in storage: "
    "`n = (await self.ctx.storage.get('n')) or 0` then `self.ctx.storage.put('n', n + by)`.")

WRITE_THROUGH_HINT = (
    "Your count reaches storage, but increment() adds to a field (like self.count) that "
    "started over at 0 when the constructor ran again after the eviction, and then wrote that "
    "wrong count back. Storage is the truth, a field only a copy: read the count from storage "
    "in increment() (`n = (await self.ctx.storage.get('n')) or 0`), or load the field from "
    "storage in the constructor with ctx.blockConcurrencyWhile before any call runs.")


async def _evicted(cls: type) -> None:
    async with Lab(storage="memory", seed=1) as lab:
        stub = lab.bind("COUNTER", cls).getByName("page-1")
        await stub.increment()
        await stub.increment()
        await lab.evict(stub)
        got = await stub.value()
        if got != 2:
            raise Fail(
                f"after two increments the object was evicted from memory (as Cloudflare does "
                f"with idle objects), and value() then returned {got!r} instead of 2.",
                FIELD_HINT)
        # value() may read storage while increment() still counts in a field it writes
        # through: only the next increment shows that (issue 17).
        got = await stub.increment()
        after = await stub.value()
        if got != 3 or after != 3:
            raise Fail(
                f"after two increments the object was evicted; value() then said 2, but the "
                f"next increment() returned {got!r} instead of 3, and value() now says "
                f"{after!r}.",
                WRITE_THROUGH_HINT if got == 1 else FIELD_HINT)


async def _concurrent(cls: type) -> None:
    async with Lab(storage="memory", seed=1, record=True) as lab:
        stub = lab.bind("COUNTER", cls).getByName("page-1")
        n = CONCURRENT_INCREMENTS
        results = await asyncio.gather(*(stub.increment() for _ in range(n)))
        final = await stub.value()
        if sorted(results) != list(range(1, n + 1)) or final != n:
            report = lost_updates(lab.history())
            detail = f"\n{first_lines(str(report))}" if report else ""
            raise Fail(
                f"{n} increments sent at once to a new counter returned {sorted(results)} and "
                f"the counter ended at {final!r} instead of {n}.{detail}",
                "Something between your read (get) and your write (put) lets another call in: "
                "an await on a timer (sleep), on another object, or on storage.sync(). Storage "
                "reads keep the input gate closed; other awaits open it. Do the read and the "
                "write with only storage calls in between.")


async def check_counter(cls: type) -> CheckResult:
    """Exercise 00: ``increment(by=1)`` returns the new count, ``value()`` the count.

    ``await check_counter(MyCounter)``.
    """
    return await run_check(
        "00", "a counter that remembers", cls,
        [Scenario("it counts (increment, increment(5), value)", _counts),
         Scenario("each name is its own counter", _separate),
         Scenario("the count survives an eviction (value, then the next increment)", _evicted),
         Scenario(f"{CONCURRENT_INCREMENTS} increments at once lose nothing", _concurrent)],
        methods=("increment", "value"),
        praise="Your counter keeps its state in storage, per object, and the input gate keeps "
               "concurrent increments apart. That is the whole Durable Objects idea in one class.")


# -- 01: no gates, so bring a lock --------------------------------------------------------

#: The no-gates scenario runs on instant storage, then on storage whose writes take these
#: long (lab time, on an auto clock: the check does not wait for them), so a write still on its
#: way when the lock is released is caught, even when the code sleeps "to let it land".
SLOW_COMMITS = (0.005, 2.0)


LOCK_HINT = (
    "Without gates (model='none') two increments can both read the old value before either "
    "writes. Make one lock per object in the constructor (`self.lock = asyncio.Lock()`) and "
    "hold it from the get to the put: `async with self.lock: n = ...; await "
    "self.ctx.storage.put('n', n + by)`. Await the put inside the lock: without gates a put is "
    "its own trip to storage, and the next reader must not overtake it.")

PER_CALL_HINT = (
    "A lock made inside the method is a new lock for every call, so it keeps nobody out. Make "
    "it once per object, in __init__ (`self.lock = asyncio.Lock()`), and hold it from the get "
    "to the put.")
UNAWAITED_HINT = (
    "You have a lock; now await the put inside it. Under model='none' a put is its own trip to "
    "storage: one you do not await is still on its way when the lock is released, and the next "
    "increment reads the old value (the check ran the burst again on slow storage, "
    f"{SLOW_COMMITS[0] * 1000:g} ms then {SLOW_COMMITS[1]:g} s per write).")
TIMER_HINT = (
    "You have a lock, and you wait for a timer instead of for the write: a sleep does not know "
    "when the write lands. On storage slower than your sleep (the check tried "
    f"{SLOW_COMMITS[1]:g} s per write) the lock is released while the put is still on its way, "
    "and the next increment reads the old value. Await the put itself inside the lock: "
    "`await self.ctx.storage.put('n', n + by)`.")
RELEASED_HINT = (
    "Your lock is released before the put: the next increment gets the lock, reads, and reads "
    "the old value, because your write has not reached storage yet. Hold the lock from the get "
    "until the put is done: `async with self.lock:` around the get AND `await "
    "self.ctx.storage.put(...)`.")
READ_OUTSIDE_HINT = (
    "Your increment reads the count before it takes the lock: two increments both read the old "
    "value, then take turns writing the same new one. The lock must cover the read too: hold "
    "it from the get until the awaited put is done.")
BCW_HINT = (
    "blockConcurrencyWhile closes the input gate, and under model='none' there is no input "
    "gate to close: it keeps nobody out. Build the gate yourself: make one lock per object in "
    "the constructor (`self.lock = asyncio.Lock()`) and hold it from the get until the awaited "
    "put is done.")
FIELD_HINT_01 = (
    "A count kept in a field (self.count) needs no lock, because nothing is awaited, but it "
    "lives only in memory and starts over when the object is evicted. Keep it in storage "
    "(`await self.ctx.storage.get('n')` / `await self.ctx.storage.put('n', ...)`), and then "
    "protect the read and the write with a lock.")


def _lock_diagnosis(cls: type) -> str:
    """The hint for a counter that lost updates without gates, from the shape of increment().

    Read from the method's syntax tree (not its text) once the scenario has measured the lost
    updates: where the lock is made, what the ``async with`` block covers, whether the put is
    awaited.
    """
    tree = method_tree(cls, "increment")
    if tree is None:
        return LOCK_HINT
    nodes = list(ast.walk(tree))

    def calls_to(name: str) -> list[ast.Call]:
        return [node for node in nodes if isinstance(node, ast.Call)
                and name in (getattr(node.func, "attr", None), getattr(node.func, "id", None))]

    if calls_to("blockConcurrencyWhile"):
        return BCW_HINT
    if calls_to("Lock"):
        return PER_CALL_HINT
    locked = [node for node in nodes if isinstance(node, ast.AsyncWith)]
    if not locked:
        return LOCK_HINT
    inside = {id(n) for block in locked for n in ast.walk(block)}
    if any(id(get) not in inside for get in calls_to("get")):
        return READ_OUTSIDE_HINT
    puts = calls_to("put")
    if any(id(put) not in inside for put in puts):
        return RELEASED_HINT
    awaited = {id(node.value) for node in nodes if isinstance(node, ast.Await)}
    if any(id(put) not in awaited for put in puts):
        return TIMER_HINT if calls_to("sleep") else UNAWAITED_HINT
    return LOCK_HINT


async def _locked_counts(cls: type) -> None:
    for model in ("gates", "none"):
        async with Lab(storage="memory", seed=1, model=model) as lab:
            stub = lab.bind("COUNTER", cls).getByName("x")
            for expected in (1, 2, 3):
                await _expect(stub.increment(), expected,
                              f"increment() number {expected} (model={model!r})", RETURN_HINT)
            await _expect(stub.value(), 3, f"value() (model={model!r})", RETURN_HINT)


async def _locked_evicted(cls: type) -> None:
    async with Lab(storage="memory", seed=1, model="none") as lab:
        stub = lab.bind("COUNTER", cls).getByName("x")
        await stub.increment()
        await stub.increment()
        await lab.evict(stub)
        got = [await stub.value(), await stub.increment()]
        if got != [2, 3]:
            raise Fail(f"two increments, an eviction, then value() and increment() returned "
                       f"{got} instead of [2, 3].", FIELD_HINT_01)


async def _no_gates(cls: type) -> str:
    n = CONCURRENT_INCREMENTS
    for latency in (0.0, *SLOW_COMMITS):
        async with Lab(storage="memory", seed=1, model="none", record=True, clock="auto",
                       commit_latency=latency) as lab:
            stub = lab.bind("COUNTER", cls).getByName("x")
            outcomes = await gather_outcomes(*(stub.increment() for _ in range(n)))
            errors = [v for ok, v in outcomes if not ok]
            if errors:
                raise Fail(f"{len(errors)} of {n} concurrent increments raised, e.g. "
                           f"{errors[0]!r}.",
                           f"Run {n} increments yourself with asyncio.gather to see the error.")
            final = await stub.value()
            history = lab.history()
            verdict = linearizable(history)
            if final != n or not verdict.ok:
                storage = ("instant storage" if not latency else
                           f"storage taking {latency * 1000:g} ms per write")
                raise Fail(f"{n} increments at once (no gates, {storage}) left the counter at "
                           f"{final!r} instead of {n}.\n"
                           f"{first_lines(str(lost_updates(history)), 3)}\n"
                           f"The history checker: {verdict}", _lock_diagnosis(cls))
    return "No gates, and still linearizable: your lock did the input gate's job."


async def check_locked_counter(cls: type) -> CheckResult:
    """Exercise 01: a counter that loses no update even under ``Lab(model="none")``."""
    return await run_check(
        "01", "a counter without gates", cls,
        [Scenario("it counts, with and without gates", _locked_counts),
         Scenario("the count survives an eviction (model='none')", _locked_evicted),
         Scenario(f"{CONCURRENT_INCREMENTS} increments at once with model='none' lose nothing",
                  _no_gates)],
        methods=("increment", "value"),
        praise="You rebuilt by hand what the input gate gives every Durable Object for free. "
               "Note what made it possible: all calls for 'x' reach ONE instance, so one lock "
               "is enough. A fleet of stateless workers sharing a database has no such place "
               "to put the lock.")
