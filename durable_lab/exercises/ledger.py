"""Exercise 03: a ledger that never acknowledges a deposit it might lose (the output gate)."""

from __future__ import annotations

from ..check import CounterModel, History, linearizable
from ..errors import DurableObjectError
from ..events import FlushStarted
from ..lab import Lab
from ..workload import run_workload
from ._core import CheckResult, Fail, Scenario, first_lines, run_check

__all__ = ["CHAOS_ACCOUNTS", "CHAOS_CLIENTS", "CHAOS_DEPOSITS", "CHAOS_FAIL_ONE_IN",
           "check_ledger"]

#: The chaos scenario: this many deposits from this many clients over this many accounts,
#: while one commit in CHAOS_FAIL_ONE_IN fails. Lesson 03's text quotes these numbers
#: (tests/test_exercise_texts.py keeps them in step).
CHAOS_DEPOSITS = 40
CHAOS_CLIENTS = 3
CHAOS_ACCOUNTS = 2
CHAOS_FAIL_ONE_IN = 5
_CHAOS = (f"{CHAOS_DEPOSITS} deposits from {CHAOS_CLIENTS} clients while 1 commit in "
          f"{CHAOS_FAIL_ONE_IN} fails")

UNCONFIRMED_HINT = (
    "allowUnconfirmed=True lets the reply leave before the write is durable: fast, but if the "
    "commit then fails the caller was already told 'done'. A ledger's callers rely on that "
    "answer, so drop allowUnconfirmed: the output gate then holds the reply until the commit "
    "lands, and a failed commit turns the reply into an error instead of a lie.")


FIELD_HINT = (
    "After a failed commit the object is reset: the constructor runs again and every field "
    "starts over, while storage holds what was committed. Your class answered from a field "
    "(like self.total) instead of from storage. Read the balance from storage in every "
    "deposit: `balance = (await self.ctx.storage.get('balance')) or 0`.")

SHARED_HINT = (
    "Each account is its own object with its own storage. A class attribute (`balances = {}` "
    "in the class body) or a module-level variable is shared by every object in this Python "
    "process (on Cloudflare they would not even run on the same machine). Keep the balance in "
    "self.ctx.storage.")

AWAIT_HINT = (
    "Some client was told a balance that storage never held. Between reading the balance and "
    "writing it back, await nothing but storage: a timer, a call to another object or sync() "
    "opens the input gate, another deposit reads the same old balance, and one deposit is lost.")


async def _adds_up(cls: type) -> None:
    async with Lab(storage="memory", seed=1) as lab:
        ns = lab.bind("LEDGER", cls)
        stub = ns.getByName("acct-1")
        got = [await stub.deposit(10), await stub.deposit(5)]
        balance = await stub.balance()
        if got != [10, 15] or balance != 15:
            raise Fail(f"deposit(10) then deposit(5) returned {got} and balance() {balance!r}; "
                       "expected [10, 15] and 15.",
                       "deposit(amount) adds to the stored balance and returns the new "
                       "balance; balance() returns it (0 for a new account).")
        other = await ns.getByName("acct-2").deposit(7)
        if other != 7:
            raise Fail(f"acct-1 received 15; then the first deposit(7) to acct-2 returned "
                       f"{other!r} instead of 7: the two accounts share their balance.",
                       SHARED_HINT)


async def _no_false_ack(cls: type) -> None:
    async with Lab(storage="memory", seed=1) as lab:
        ns = lab.bind("LEDGER", cls)
        stub = ns.getByName("acct-1")
        await stub.deposit(10)
        await lab.wait_idle()  # deposit(10) is committed, whatever the class does
        lab.faults.fail_next_commit(stub)
        try:
            answer = await stub.deposit(5)
        except DurableObjectError:
            answer = None
        except Exception as exc:
            answer = exc
        await lab.wait_idle()  # let the failed commit and the reset happen
        fresh = ns.getByName("acct-1")  # a fresh stub: the old one is broken
        balance = await fresh.balance()
        if answer is not None and not isinstance(answer, Exception) and balance != 15:
            unconfirmed = await _unconfirmed(cls)
            raise Fail(f"the commit of deposit(5) failed, yet the caller was answered "
                       f"{answer!r}, and a fresh stub then reads balance() = {balance!r}: "
                       "a false acknowledgment.",
                       UNCONFIRMED_HINT if unconfirmed else
                       "The reply left before the write was committed. Does your class write "
                       "somewhere other than ctx.storage (a field, a class attribute)?")
        if balance != 10 and answer is None:
            raise Fail(f"deposit(5)'s commit failed and the caller got an error (good), but "
                       f"the balance is now {balance!r} instead of 10.",
                       "After a failed commit the object restarts from what was committed. "
                       "Keep the balance only in storage, not in fields.")
        after = await fresh.deposit(1)
        if balance == 10 and after != 11:
            raise Fail(f"deposit(5)'s commit failed and the caller got an error (good); the "
                       f"balance read 10; then deposit(1) returned {after!r} instead of 11.",
                       FIELD_HINT)


async def _one_deposit_events(cls: type) -> list[object]:
    """The events of one deposit on a fresh lab: do its writes hold the reply (``gated``)?"""
    async with Lab(storage="memory", seed=1) as lab:
        stub = lab.bind("LEDGER", cls).getByName("probe")
        await stub.balance()
        rec = lab.record()
        await stub.deposit(1)
        await lab.wait_idle()
        rec.close()
        return list(rec.events)


async def _chaos(cls: type) -> str:
    async with Lab(storage="memory", seed=7, record=False) as lab:
        ns = lab.bind("LEDGER", cls)
        lab.faults.fail_commits(probability=1 / CHAOS_FAIL_ONE_IN)
        history = History()
        result = await run_workload(ns, method="deposit", clients=CHAOS_CLIENTS,
                                    calls=CHAOS_DEPOSITS, objects=CHAOS_ACCOUNTS,
                                    args=lambda i, rng: (rng.choice([1, 2, 5, 10]),), seed=3,
                                    history=history)
        lab.faults.clear()
        for name in result.names:
            token = history.invoke("auditor", name, "balance")
            history.complete(token, await ns.getByName(name).balance())
        verdict = linearizable(history, CounterModel(increment={"deposit"}, read={"balance"}))
        if verdict.status == "violation":
            raise Fail(
                f"{_CHAOS}: the answers the clients got cannot all be true.\n"
                + first_lines(verdict.explain(), 6),
                UNCONFIRMED_HINT if await _unconfirmed(cls) else AWAIT_HINT)
        failed = len(result.failed_calls)
        if not verdict.ok:  # "unknown": too many failed calls to decide; no violation found
            return (f"{failed} of {CHAOS_DEPOSITS} deposits failed; the history checker found "
                    "no violation.")
        return (f"{failed} of {CHAOS_DEPOSITS} deposits failed with an error, and every answer "
                "the clients got is consistent with one ledger (the history checker agrees).")


async def _unconfirmed(cls: type) -> bool:
    """Did a deposit write with allowUnconfirmed (a flush the output gate does not wait for)?"""
    return any(isinstance(e, FlushStarted) and not e.gated
               for e in await _one_deposit_events(cls))


async def check_ledger(cls: type) -> CheckResult:
    """Exercise 03: ``deposit(amount)`` returns the new balance only once it is durable."""
    return await run_check(
        "03", "no false acknowledgments", cls,
        [Scenario("deposits add up", _adds_up),
         Scenario("a commit fails: the caller hears an error, not 'done'", _no_false_ack),
         Scenario(_CHAOS, _chaos)],
        methods=("deposit", "balance"),
        praise="Every 'done' your ledger says is durable. That is the output gate's promise, "
               "and it is why you rarely want allowUnconfirmed for money.")
