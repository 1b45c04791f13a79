"""Exercise 09 (capstone): a rate limiter, proved under concurrency, schedules and faults."""

from __future__ import annotations

from collections.abc import Awaitable
from functools import partial
from typing import Any

from ..clock import ManualClock
from ..errors import DurableObjectError
from ..events import CommitDone
from ..lab import Lab
from ._core import (
    CheckResult,
    Fail,
    Scenario,
    advance,
    drive,
    explore,
    gather_outcomes,
    run_check,
    settle,
    source_of,
)

__all__ = ["ADVERSARIAL_SCHEDULES", "CALLS", "check_rate_limiter"]

#: The adversarial scenario: this many random legal schedules of LIMIT + 3 calls.
ADVERSARIAL_SCHEDULES = 15


def _limits(cls: type) -> tuple[int, float]:
    return int(getattr(cls, "LIMIT", 5)), float(getattr(cls, "WINDOW", 60))


#: Lab time starts 37 s into a minute, so a limiter that resets on minute boundaries (a fixed
#: window) is caught the same way on every run.
START = 1_700_000_017.0


def _lab(seed: int = 1) -> Lab:
    return Lab(storage="memory", seed=seed, clock=ManualClock(start=START))



def _allows(stub: Any, n: int) -> list[Awaitable[Any]]:
    """``n`` calls of ``stub.allow()`` (made when the exploration starts them)."""
    return [stub.allow() for _ in range(n)]

async def _basic(cls: type) -> None:
    limit, _ = _limits(cls)
    lab = _lab()
    async with lab:
        stub = lab.bind("LIMITER", cls).getByName("user-1")
        got = [await drive(lab, stub.allow()) for _ in range(limit + 2)]
        want = [True] * limit + [False, False]
        if got != want:
            raise Fail(f"{limit + 2} calls in a row returned {got}; expected {want}.",
                       f"allow() returns True for the first LIMIT ({limit}) calls in any "
                       "WINDOW seconds, False after that.")


async def _slides(cls: type) -> None:
    limit, window = _limits(cls)
    lab = _lab()
    async with lab:
        stub = lab.bind("LIMITER", cls).getByName("user-1")
        for _ in range(limit):  # all at t = 0
            await drive(lab, stub.allow())
        await advance(lab, window / 2, step=window / 2)
        mid = await drive(lab, stub.allow())
        await advance(lab, window / 2 + 1, step=window / 2 + 1)
        later = await drive(lab, stub.allow())
        if mid is not False or later is not True:
            source = source_of(cls)
            hint = ("The window slides: a call is allowed if fewer than LIMIT calls were "
                    "allowed in the WINDOW seconds before it. Store the times of allowed "
                    "calls (read the time with durable_lab.now()), drop those older than "
                    "WINDOW, and compare the count. (A counter "
                    "reset every WINDOW seconds is a fixed window: around each reset it lets "
                    "up to 2 x LIMIT calls through.)")
            if "time.time" in source or "time.monotonic" in source:
                hint = ("Read the time with durable_lab.now() (the lab clock, which the check "
                        "moves), not time.time(). " + hint)
            raise Fail(f"{limit} calls at t=0; at t={window / 2:.0f} s allow() returned {mid} "
                       f"(expected False) and at t={window + 1:.0f} s {later} (expected True).",
                       hint)
        # A fixed window would allow 2 * LIMIT calls around its boundary.
        for _ in range(limit - 1):
            await drive(lab, stub.allow())
        await advance(lab, 2, step=2)
        burst = [await drive(lab, stub.allow()) for _ in range(limit)]
        if any(burst):
            raise Fail(f"{limit} calls were allowed just after t={window + 1:.0f} s; 2 s "
                       f"later allow() still said {burst}: more than {limit} calls in "
                       f"{window:.0f} s.",
                       "A fixed window (a counter reset every WINDOW seconds) lets 2 x LIMIT "
                       "calls through around the reset. Keep the times of the allowed calls "
                       "and count those in the last WINDOW seconds.")


async def _evicted(cls: type) -> None:
    limit, _ = _limits(cls)
    lab = _lab()
    async with lab:
        stub = lab.bind("LIMITER", cls).getByName("user-1")
        first = [await drive(lab, stub.allow()) for _ in range(limit - 1)]
        await lab.evict(stub)
        rest = [await drive(lab, stub.allow()) for _ in range(2)]
        if first + rest != [True] * limit + [False]:
            raise Fail(f"{limit - 1} calls, an eviction, then 2 more returned {first} and "
                       f"{rest}.",
                       "The times of allowed calls must be in storage: fields are lost when "
                       "the object is evicted.")


async def _burst(cls: type) -> None:
    limit, _ = _limits(cls)
    lab = _lab()
    async with lab:
        stub = lab.bind("LIMITER", cls).getByName("user-1")
        got = await drive(lab, gather_outcomes(*(stub.allow() for _ in range(4 * limit))))
        allowed = sum(1 for ok, v in got if ok and v is True)
        if allowed != limit:
            raise Fail(f"{4 * limit} calls at the same moment: {allowed} were allowed "
                       f"instead of {limit}.",
                       "Between reading the stored times and writing the new list, do not "
                       "await anything but storage: any other await opens the input gate.")


async def _schedules(cls: type) -> str:
    limit, _ = _limits(cls)
    for seed in range(ADVERSARIAL_SCHEDULES):
        lab = _lab(seed)
        async with lab:
            stub = lab.bind("LIMITER", cls).getByName("user-1")
            run = await explore(lab, partial(_allows, stub, limit + 3), seed)
            allowed = sum(1 for ok, v in run.outcomes if ok and v is True)
            if allowed > limit:
                raise Fail(f"the check played scheduler (seed {seed}) with {limit + 3} calls "
                           f"and {allowed} were allowed:\n{run.schedule_text()}",
                           "Some await between your read and your write opens the input gate. "
                           "Keep read-check-write in one turn.")
    return f"{ADVERSARIAL_SCHEDULES} adversarial schedules: never more than LIMIT allowed."


async def _faults(cls: type) -> str:
    limit, _ = _limits(cls)
    lab = _lab(5)
    async with lab:
        ns = lab.bind("LIMITER", cls)

        def fail_every_other_commit(event: object) -> None:
            if isinstance(event, CommitDone) and event.object == "LIMITER:user-1":
                lab.faults.fail_next_commit("LIMITER:user-1")

        sub = lab.subscribe(fail_every_other_commit)
        told_yes = 0
        errors = 0
        for _ in range(6 * limit):
            try:
                if await drive(lab, ns.getByName("user-1").allow()) is True:
                    told_yes += 1
            except DurableObjectError:
                errors += 1
            await settle(lab)
        sub.close()
        lab.faults.clear()
        if told_yes > limit:
            raise Fail(f"{6 * limit} calls while every other commit failed: {told_yes} "
                       f"callers were told True (limit {limit}).",
                       "A True that is not durable can be forgotten by a reset, and the next "
                       "call is allowed again. Do not use allowUnconfirmed here; the output "
                       "gate makes every True durable before the caller sees it.")
        if told_yes < limit:
            raise Fail(f"{6 * limit} calls while every other commit failed: only {told_yes} "
                       f"were allowed (limit {limit}): failed calls used up the budget.",
                       "Count only calls whose write was committed. Keep the state only in "
                       "storage: after a reset the object starts from what was committed.")
        return f"{errors} calls failed with errors; exactly {limit} were told True."


#: The bounded-storage scenario: this many calls, one every WINDOW / 4 seconds.
CALLS = 100


async def _bounded(cls: type) -> str:
    limit, window = _limits(cls)
    lab = _lab()
    async with lab:
        stub = lab.bind("LIMITER", cls).getByName("user-1")
        for _ in range(CALLS):
            await drive(lab, stub.allow())
            await advance(lab, window / 4, step=window / 4)
        info = [o for o in await lab.objects() if o.name == "user-1"]
        size = info[0].stored_bytes if info else 0
        if size > 30 * limit + 200:
            raise Fail(f"after {CALLS} calls over {CALLS * window / 4:.0f} s the object stores "
                       f"{size} bytes.",
                       "Drop the times that fell out of the window when you write the list "
                       "back, so storage stays small however long the limiter lives.")
        return f"storage stays small ({size} bytes after {CALLS} calls)."


async def check_rate_limiter(cls: type) -> CheckResult:
    """Exercise 09: ``allow()`` admits at most ``LIMIT`` calls per sliding ``WINDOW`` seconds.

    Reads ``cls.LIMIT`` (default 5) and ``cls.WINDOW`` (default 60). Use ``durable_lab.now()``.
    """
    return await run_check(
        "09", "capstone: a rate limiter you can prove", cls,
        [Scenario("LIMIT calls pass, the next ones are refused", _basic),
         Scenario("the window slides (lab clock, no fixed-window burst)", _slides),
         Scenario("the budget survives an eviction", _evicted),
         Scenario("a burst of concurrent calls", _burst),
         Scenario("adversarial schedules", _schedules),
         Scenario("every other commit fails", _faults),
         Scenario("storage stays bounded", _bounded)],
        methods=("allow",),
        praise="Correct alone, under a burst, under every schedule the check tried, and while "
               "storage fails. You designed with Durable Objects, and proved it.")


