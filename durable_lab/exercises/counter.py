"""Exercises 00 (a counter that survives) and 01 (a counter without gates needs a lock)."""

from __future__ import annotations

import asyncio

from ..check import linearizable, lost_updates
from ..lab import Lab
from ._core import (
    CheckResult,
    Fail,
    Scenario,
    first_lines,
    gather_outcomes,
    run_check,
    source_of,
)

__all__ = ["CONCURRENT_INCREMENTS", "check_counter", "check_locked_counter"]

#: Increments sent at once in the concurrency scenarios of exercises 00 and 01.
CONCURRENT_INCREMENTS = 10


async def _expect(call, expected, what: str, hint: str):  # type: ignore[no-untyped-def]
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
                "Fields like self.count live only in memory: the constructor runs again after "
                "an eviction and they start over. Keep the count in storage: "
                "`n = (await self.ctx.storage.get('n')) or 0` then "
                "`self.ctx.storage.put('n', n + by)`.")


async def _concurrent(cls: type) -> None:
    async with Lab(storage="memory", seed=1, record=True) as lab:
        stub = lab.bind("COUNTER", cls).getByName("page-1")
        n = CONCURRENT_INCREMENTS
        results = await asyncio.gather(*(stub.increment() for _ in range(n)))
        final = await stub.value()
        if sorted(results) != list(range(1, n + 1)) or final != n:
            report = lost_updates(lab.history())
            detail = f"\n{first_lines(report)}" if report else ""
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
         Scenario("the count survives an eviction", _evicted),
         Scenario(f"{CONCURRENT_INCREMENTS} increments at once lose nothing", _concurrent)],
        methods=("increment", "value"),
        praise="Your counter keeps its state in storage, per object, and the input gate keeps "
               "concurrent increments apart. That is the whole Durable Objects idea in one class.")


# -- 01: no gates, so bring a lock --------------------------------------------------------

LOCK_HINT = (
    "Without gates (model='none') two increments can both read the old value before either "
    "writes. Make one lock per object in the constructor (`self.lock = asyncio.Lock()`) and "
    "hold it from the get to the put: `async with self.lock: n = ...; await "
    "self.ctx.storage.put('n', n + by)`. Await the put inside the lock: without gates a put is "
    "its own trip to storage, and the next reader must not overtake it.")


async def _locked_counts(cls: type) -> None:
    for model in ("gates", "none"):
        async with Lab(storage="memory", seed=1, model=model) as lab:
            stub = lab.bind("COUNTER", cls).getByName("x")
            for expected in (1, 2, 3):
                await _expect(stub.increment(), expected,
                              f"increment() number {expected} (model={model!r})", RETURN_HINT)
            await _expect(stub.value(), 3, f"value() (model={model!r})", RETURN_HINT)


async def _no_gates(cls: type) -> str:
    async with Lab(storage="memory", seed=1, model="none", record=True) as lab:
        stub = lab.bind("COUNTER", cls).getByName("x")
        n = CONCURRENT_INCREMENTS
        outcomes = await gather_outcomes(*(stub.increment() for _ in range(n)))
        errors = [v for ok, v in outcomes if not ok]
        if errors:
            raise Fail(f"{len(errors)} of {n} concurrent increments raised, e.g. {errors[0]!r}.",
                       f"Run {n} increments yourself with asyncio.gather to see the error.")
        final = await stub.value()
        history = lab.history()
        verdict = linearizable(history)
        if final != n or not verdict.ok:
            source = source_of(cls)
            hint = LOCK_HINT
            if "Lock" in source and "await self.ctx.storage.put" not in source:
                hint = ("You have a lock; now await the put inside it. Under model='none' a put "
                        "you do not await is still on its way to storage when the lock is "
                        "released, and the next increment reads the old value.")
            elif "Lock()" in source and "def __init__" not in source:
                hint = ("A lock made inside the method is a new lock for every call, so it "
                        "keeps nobody out. Make it once per object, in __init__. " + LOCK_HINT)
            raise Fail(f"{n} increments at once (no gates) left the counter at {final!r} "
                       f"instead of {n}.\n{first_lines(lost_updates(history), 3)}\n"
                       f"The history checker: {verdict}", hint)
        return "No gates, and still linearizable: your lock did the input gate's job."


async def check_locked_counter(cls: type) -> CheckResult:
    """Exercise 01: a counter that loses no update even under ``Lab(model="none")``."""
    return await run_check(
        "01", "a counter without gates", cls,
        [Scenario("it counts, with and without gates", _locked_counts),
         Scenario(f"{CONCURRENT_INCREMENTS} increments at once with model='none' lose nothing",
                  _no_gates)],
        methods=("increment", "value"),
        praise="You rebuilt by hand what the input gate gives every Durable Object for free. "
               "Note what made it possible: all calls for 'x' reach ONE instance, so one lock "
               "is enough. A fleet of stateless workers sharing a database has no such place "
               "to put the lock.")
