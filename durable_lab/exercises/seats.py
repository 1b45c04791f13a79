"""Exercise 02: sell one seat, with a payment call in the middle (the input gate's limits)."""

from __future__ import annotations

from collections.abc import Awaitable
from functools import partial
from typing import Any

from ..errors import DurableObjectError
from ..explore import Failed, Unfinished
from ..explore import explore as explore_every_schedule
from ..lab import Lab
from ..namespace import DurableObjectNamespace, DurableObjectStub
from ._core import CheckResult, Fail, Scenario, drive, explore, gather_outcomes, run_check
from .helpers import Payments

__all__ = ["ADVERSARIAL_SCHEDULES", "CLAIMANTS", "PRICE", "check_seat"]

PRICE = 10
#: The adversarial scenario: this many random legal schedules of claims by these users.
ADVERSARIAL_SCHEDULES = 25
CLAIMANTS = ("ann", "bob", "cat")

DOUBLE_HINT = (
    "Your claim reads 'the seat is free', then awaits the payment call, then writes the owner. "
    "Awaiting another object (like a fetch or a timer) OPENS the input gate: a second claim "
    "runs in that gap, also reads 'free', and also pays. Two fixes: (1) reserve first: write "
    "the owner BEFORE you await the payment (storage writes need no await, the gate stays "
    "closed from the read to the write); or (2) wrap read-pay-write in "
    "`await self.ctx.blockConcurrencyWhile(fn)`, which keeps everyone else out, at the cost "
    "of making every other request wait for the payment.")


PAID_HINT = (
    "Someone was charged without getting the seat: the claim paid before the seat was theirs. "
    "Awaiting the payment opens the input gate, so what you read before it may be stale after "
    "it, and checking again after paying is too late: the money is gone. Reserve first (read "
    "the owner and write your user in the same turn, with no other await in between), then "
    "pay, and free the seat again if the payment fails.")

TAKEN_HINT = ("When the seat is taken, return False and charge nobody: look at the owner (and "
              "reserve the seat) before you pay, not after.")

FIELD_HINT = (
    "The owner lives in a field, and fields are lost when the object is evicted (the "
    "constructor runs again): the seat is for sale again. Keep the owner in storage: "
    "`self.ctx.storage.put('owner', user)`, and read it with "
    "`await self.ctx.storage.get('owner')`.")


def _lab(cls: type, seed: int = 1) -> tuple[Lab, DurableObjectNamespace, DurableObjectStub]:
    lab = Lab(storage="memory", seed=seed, clock="manual")
    lab.bind("PAYMENTS", Payments)
    seats = lab.bind("SEATS", cls)
    return lab, seats, lab.env.PAYMENTS.getByName("bank")


def _claims(seat: DurableObjectStub, users: list[str]) -> list[Awaitable[Any]]:
    """Every user's claim of ``seat`` (made when the exploration starts them)."""
    return [seat.claim(u) for u in users]


async def _run(lab: Lab, call):
    return await drive(lab, call)


async def _one_claim(cls: type) -> None:
    lab, seats, bank = _lab(cls)
    async with lab:
        seat = seats.getByName("A1")
        got = await _run(lab, seat.claim("ann"))
        if got is not True:
            raise Fail(f"the first claim of a free seat returned {got!r}, not True.",
                       "claim(user) returns True when the user got the seat, False otherwise.")
        charges = await _run(lab, bank.charges())
        if charges != [["ann", PRICE]]:
            raise Fail(f"after ann's claim the payment service holds {charges!r}; expected "
                       f"one charge [['ann', {PRICE}]].",
                       f"Charge the winner once: `await self.env.PAYMENTS.getByName('bank')"
                       f".charge(user, {PRICE})`.")
        owner = await _run(lab, seat.owner())
        if owner != "ann":
            raise Fail(f"owner() returned {owner!r} after ann's claim.",
                       "owner() returns the user who holds the seat, or None.")
        again = await _run(lab, seat.claim("bob"))
        charges = await _run(lab, bank.charges())
        if again is not False or len(charges) != 1:
            raise Fail(f"a second claim (bob's) of the taken seat returned {again!r} and the "
                       f"payment service now holds {charges!r}.",
                       TAKEN_HINT)


def _judge(results: list[tuple[bool, object]], users: list[str], owner: object,
           charges: list[list[object]]) -> tuple[str, str] | None:
    """None if the outcome is acceptable, else what went wrong and the hint that names it."""
    winners = [u for u, (ok, v) in zip(users, results, strict=True) if ok and v is True]
    failed = [u for u, (ok, _) in zip(users, results, strict=True) if not ok]
    paid = [c[0] for c in charges]
    if len(winners) > 1:
        who = (f"both {winners[0]} and {winners[1]}" if len(winners) == 2
               else f"all of {', '.join(winners)}")
        return (f"{who} were told they got the seat (owner() says "
                f"{owner!r}); the payment service charged {paid}.", DOUBLE_HINT)
    if len(paid) != len(set(paid)) or any(p not in winners for p in paid):
        return (f"the winner(s) {winners} but the payment service charged {paid}: someone paid "
                "without getting the seat, or paid twice.", PAID_HINT)
    if winners and owner != winners[0]:
        return (f"{winners[0]} was told they got the seat, but owner() says {owner!r}.",
                "owner() returns the user whose claim returned True.")
    if not winners and not failed:
        return (f"nobody got the free seat (every claim returned False; owner() = {owner!r}).",
                "The first claim of a free seat must win.")
    return None


async def _two_at_once(cls: type) -> None:
    lab, seats, bank = _lab(cls)
    async with lab:
        seat = seats.getByName("A1")
        users = ["ann", "bob"]
        results = await _run(lab, gather_outcomes(*(seat.claim(u) for u in users)))
        owner = await _run(lab, seats.getByName("A1").owner())
        charges = await _run(lab, bank.charges())
        judged = _judge(results, users, owner, charges)
        if judged:
            problem, hint = judged
            raise Fail("ann and bob claimed seat A1 at the same time: " + problem, hint)


#: Every schedule of this many claims is explored (small enough to take well under a second).
EXHAUSTIVE_CLAIMANTS = ("ann", "bob")


async def _every_schedule(cls: type) -> str:
    """Two claims under every schedule the gates allow (durable_lab.explore, exhaustive)."""
    users = list(EXHAUSTIVE_CLAIMANTS)
    hints: list[str] = []

    async def sold_once(lab: Lab, outcomes: list[Any]) -> Any:
        results = [(not isinstance(o, (Failed, Unfinished)), o) for o in outcomes]
        owner = await lab.env.SEATS.getByName("A1").owner()
        charges = await lab.env.PAYMENTS.getByName("bank").charges()
        judged = _judge(results, users, owner, charges)
        if judged is None:
            return True
        hints.append(judged[1])
        return judged[0]

    result = await explore_every_schedule(
        {"PAYMENTS": Payments, "SEATS": cls},
        lambda env: [env.SEATS.getByName("A1").claim(u) for u in users],
        invariant=sold_once, max_schedules=2000, time_limit=20, stop_at_first=True,
        progress=False)
    example = result.counterexample
    if example is not None:
        steps = "\n".join(f"  {i:>2}. {step}" for i, step in enumerate(example.steps, 1))
        raise Fail(f"the check explored the schedules of {len(users)} claims; this schedule of "
                   f"{len(example.steps)} steps breaks it:\n{steps}\nResult: {example.reason}",
                   (hints[-1] if hints else DOUBLE_HINT) + " To play this schedule yourself: "
                   "durable_lab.explore(...) gives it as result.counterexample "
                   "(docs/explore.md).")
    if result.complete:
        return (f"all {result.schedules} schedules of {len(users)} claims hold (every order the "
                "gates allow, explored exhaustively).")
    return (f"{result.schedules} schedules of {len(users)} claims hold ({result.stopped}).")


async def _adversarial(cls: type) -> str:
    users = list(CLAIMANTS)
    for seed in range(ADVERSARIAL_SCHEDULES):
        lab, seats, bank = _lab(cls, seed)
        async with lab:
            seat = seats.getByName("A1")
            run = await explore(lab, partial(_claims, seat, users), seed)
            fresh = seats.getByName("A1")
            owner = await _run(lab, fresh.owner())
            charges = await _run(lab, bank.charges())
            judged = _judge(run.outcomes, users, owner, charges)
            if judged:
                problem, hint = judged
                raise Fail(
                    f"the check played scheduler (seed {seed}): it paused the lab, sent "
                    f"{len(users)} claims, and took legal transitions at random:\n"
                    f"{run.schedule_text()}\n"
                    f"Result: {problem}",
                    hint + " To watch this schedule, run lab.pause(), send the claims, "
                    "and take the same choices with lab.choose(i).")
    return (f"{ADVERSARIAL_SCHEDULES} random schedules of {len(users)} claims: never two "
            "winners, never a double charge.")


async def _payment_fails(cls: type) -> str:
    lab, seats, bank = _lab(cls)
    async with lab:
        seat = seats.getByName("A1")
        lab.faults.fail_calls(bank, times=1)
        first = (await _run(lab, gather_outcomes(seat.claim("ann"))))[0]
        charges = await _run(lab, bank.charges())
        if first[0] and first[1] is True:
            raise Fail("the payment call failed (the network lost it), yet claim('ann') "
                       f"returned True; the payment service holds {charges!r}.",
                       "If the payment fails, the claim must fail too: let the error propagate "
                       "(or return False) instead of catching it and carrying on.")
        retry = seats.getByName("A1")  # (a fresh stub)
        second = (await _run(lab, gather_outcomes(retry.claim("bob"))))[0]
        owner = await _run(lab, seats.getByName("A1").owner())
        if not (second[0] and second[1] is True and owner == "bob"):
            how = second[1] if second[0] else f"raised {second[1]!r}"
            raise Fail(f"ann's payment failed, so the seat should be free again; but bob's "
                       f"claim then returned {how} and owner() says {owner!r}.",
                       "If you reserve the seat before paying, undo the reservation when the "
                       "payment fails: `try: await ...charge(...) except Exception: "
                       "self.ctx.storage.delete('owner'); raise`.")
        if isinstance(first[1], DurableObjectError) and first[1].durableObjectReset:
            return ("ann's claim failed with a reset (blockConcurrencyWhile's callback raised, "
                    "so the object was reset) and the seat stayed free: correct, if heavy-handed.")
    return ""


async def _evicted(cls: type) -> None:
    lab, seats, bank = _lab(cls)
    async with lab:
        seat = seats.getByName("A1")
        await _run(lab, seat.claim("ann"))
        await lab.evict(seat)
        owner = await _run(lab, seat.owner())
        again = await _run(lab, gather_outcomes(seat.claim("bob")))
        charges = await _run(lab, bank.charges())
        if owner != "ann" or again[0] != (True, False) or len(charges) != 1:
            told = again[0][1] if again[0][0] else f"raised {again[0][1]!r}"
            raise Fail(f"ann bought the seat; the object was evicted from memory; then owner() "
                       f"said {owner!r}, bob's claim returned {told}, and the payment service "
                       f"holds {charges!r}.",
                       FIELD_HINT if owner != "ann" or again[0] != (True, False) else TAKEN_HINT)


async def check_seat(cls: type) -> CheckResult:
    """Exercise 02: ``claim(user)`` sells the one seat exactly once; ``owner()``.

    The winner is charged with ``await self.env.PAYMENTS.getByName("bank").charge(user, 10)``.
    """
    return await run_check(
        "02", "one seat, one payment", cls,
        [Scenario("one claim: the seat is sold and paid once", _one_claim),
         Scenario("two claims at the same time", _two_at_once),
         Scenario("every schedule of two claims", _every_schedule),
         Scenario("you are not the scheduler any more: "
                  f"{ADVERSARIAL_SCHEDULES} adversarial schedules", _adversarial),
         Scenario("the sale survives an eviction", _evicted),
         Scenario("the payment call fails", _payment_fails)],
        methods=("claim", "owner"),
        praise="No schedule sells the seat twice, and a failed payment leaves it free. You now "
               "know exactly what the input gate covers (storage) and what it does not "
               "(everything else you await).")
