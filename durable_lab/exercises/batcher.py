"""Exercise 05: a batcher driven by an alarm (alarms, eviction, retries, at-least-once)."""

from __future__ import annotations

from ..alarms import INITIAL_BACKOFF
from ..events import CommitDone, CommitFailed
from ..lab import Lab
from ._core import CheckResult, Fail, Scenario, advance, run_check, settle, source_of
from .helpers import Outbox

__all__ = ["BATCH_SECONDS", "TRICKLE_EVERY", "TRICKLE_ITEMS", "check_batcher"]

#: A batch is sent this many seconds (lab time) after its first item arrived.
BATCH_SECONDS = 10
#: The trickle scenario: one item every TRICKLE_EVERY seconds, TRICKLE_ITEMS of them.
TRICKLE_EVERY = 3
TRICKLE_ITEMS = 6


def _lab() -> Lab:
    lab = Lab(storage="memory", seed=1, clock="manual")
    lab.bind("OUTBOX", Outbox)
    return lab


async def _delivered(lab: Lab) -> list[list[object]]:
    batches = await lab.env.OUTBOX.getByName("outbox").batches()
    return [list(items) for _, items in batches if items]


def _flat(batches: list[list[object]]) -> list[object]:
    return [item for batch in batches for item in batch]


async def _add(lab: Lab, stub: object, *items: object) -> None:
    for item in items:
        await stub.add(item)  # type: ignore[attr-defined]
    await settle(lab)


async def _one_batch(cls: type) -> None:
    lab = _lab()
    async with lab:
        stub = lab.bind("BATCHER", cls).getByName("b")
        await _add(lab, stub, "a", "b", "c")
        await advance(lab, BATCH_SECONDS - 1)
        early = await _delivered(lab)
        if early:
            raise Fail(f"the outbox already received {early} less than {BATCH_SECONDS} s after "
                       "the first item.",
                       "Do not send in add(): set an alarm for "
                       f"{BATCH_SECONDS} s later (`self.ctx.storage.setAlarm(durable_lab.now() "
                       f"* 1000 + {BATCH_SECONDS * 1000})`) and send from alarm().")
        await advance(lab, 4)
        got = await _delivered(lab)
        if got != [["a", "b", "c"]]:
            raise Fail(f"three items added at t=0; at t={BATCH_SECONDS + 3} s the outbox holds "
                       f"{got} instead of one batch ['a', 'b', 'c'].",
                       "In alarm(), read every pending item, send them in ONE call "
                       "`await self.env.OUTBOX.getByName('outbox').deliver(items, batch_id=...)`"
                       ", then remove them. Use durable_lab.now() (lab time) for the alarm, "
                       "not time.time().")


async def _trickle(cls: type) -> None:
    lab = _lab()
    async with lab:
        stub = lab.bind("BATCHER", cls).getByName("b")
        for i in range(TRICKLE_ITEMS):
            await _add(lab, stub, f"t{i * TRICKLE_EVERY}")
            await advance(lab, TRICKLE_EVERY)
        got = await _delivered(lab)
        end = TRICKLE_ITEMS * TRICKLE_EVERY
        if not got or got[0][0] != "t0":
            raise Fail(f"one item every {TRICKLE_EVERY} s for {end} s: the first item (t=0) "
                       f"should have left at t={BATCH_SECONDS}, but at t={end} the outbox "
                       f"holds {got}.",
                       "An object has ONE alarm, and setAlarm() replaces it: setting it on "
                       f"every add() moves it to {BATCH_SECONDS} s after the LATEST item, so a "
                       "steady trickle never lets it fire. Set it only when none is set: "
                       "`if await self.ctx.storage.getAlarm() is None: ...setAlarm(...)`.")


async def _evicted(cls: type) -> None:
    lab = _lab()
    async with lab:
        stub = lab.bind("BATCHER", cls).getByName("b")
        await _add(lab, stub, "a", "b")
        await lab.evict(stub)
        await _add(lab, stub, "c")
        await advance(lab, BATCH_SECONDS + 4)
        got = _flat(await _delivered(lab))
        if sorted(map(str, got)) != ["a", "b", "c"]:
            raise Fail(f"added a and b, the object was evicted, then added c; the outbox "
                       f"received {got}.",
                       "Pending items must live in storage: a field (self.pending = []) is "
                       "gone after an eviction, because the constructor runs again.")


async def _outbox_down(cls: type) -> None:
    lab = _lab()
    async with lab:
        stub = lab.bind("BATCHER", cls).getByName("b")
        await _add(lab, stub, "a", "b")
        lab.faults.fail_calls(lab.env.OUTBOX.getByName("outbox"), times=1)
        await advance(lab, BATCH_SECONDS + 12)
        got = _flat(await _delivered(lab))
        if sorted(map(str, got)) != ["a", "b"]:
            source = source_of(cls)
            hint = ("The first deliver() call failed, so alarm() raised and the runtime "
                    f"retried it {INITIAL_BACKOFF:g} s later. The retry must still find the "
                    "items: remove them only AFTER deliver() succeeded.")
            if "except" in source:
                hint += (" And do not swallow the error with try/except: an alarm handler "
                         "that raises is retried, one that returns is done.")
            raise Fail(f"the outbox was unreachable once; after the retry it holds {got} "
                       "instead of ['a', 'b'].", hint)


async def _add_during_send(cls: type) -> None:
    lab = _lab()
    async with lab:
        stub = lab.bind("BATCHER", cls).getByName("b")
        await _add(lab, stub, "a", "b")
        lab.clock.advance(BATCH_SECONDS + Outbox.DELAY / 2)  # type: ignore[attr-defined]
        await lab.scheduler.settle()  # the alarm is now waiting for the outbox
        await _add(lab, stub, "c")
        await advance(lab, 2 * BATCH_SECONDS + 6)
        got = _flat(await _delivered(lab))
        if sorted(map(str, got)) != ["a", "b", "c"]:
            raise Fail("a and b were on their way to the outbox (alarm() was awaiting "
                       f"deliver()) when c was added; in the end the outbox holds {got}.",
                       "Awaiting deliver() opens the input gate, so add('c') runs in the "
                       "middle of your alarm(). Afterwards, remove only the items you sent "
                       "(e.g. one key per item, item:000001, and delete exactly those keys), "
                       "and make sure c gets an alarm of its own.")


async def _retry_after_send(cls: type) -> None:
    lab = _lab()
    async with lab:
        ns = lab.bind("BATCHER", cls)
        stub = ns.getByName("b")
        await _add(lab, stub, "a", "b")
        state = {"armed": False, "failed": False}

        def fail_the_cleanup(event: object) -> None:
            # The outbox has durably accepted the batch: now make the batcher's next commit
            # (its clean-up after the send) fail, so the alarm runs again.
            if (isinstance(event, CommitDone) and event.object == "OUTBOX:outbox"
                    and not state["armed"]):
                state["armed"] = True
                lab.faults.fail_next_commit("BATCHER:b")
            if isinstance(event, CommitFailed) and event.object == "BATCHER:b":
                state["failed"] = True

        sub = lab.subscribe(fail_the_cleanup)
        try:
            for _ in range(2 * (BATCH_SECONDS + 5)):
                if state["failed"]:
                    break
                await advance(lab, 0.5)
        finally:
            sub.close()
            lab.faults.clear()
        # Between the failed clean-up and the retry, one more item arrives.
        await _add(lab, ns.getByName("b"), "c")
        await advance(lab, 2 * BATCH_SECONDS + 10)
        got = _flat(await _delivered(lab))
        if sorted(map(str, got)) != ["a", "b", "c"]:
            raise Fail("the outbox accepted the batch [a, b], then the batcher's commit right "
                       "after (its clean-up) failed; c was added, and the alarm ran again. "
                       f"In the end the outbox holds {got}: some items arrived twice, or "
                       "never.",
                       "Alarms are at-least-once: alarm() can run again after its side "
                       "effects happened. Make the send idempotent: store the batch BEFORE you "
                       "send it, with an id (e.g. put 'inflight' = {'id': n, 'keys': [...], "
                       "'items': [...]}), send deliver(items, batch_id=n), then delete the keys "
                       "and 'inflight'. A retry finds 'inflight' and re-sends exactly that batch "
                       "with the same id (the outbox ignores ids it has seen); items added "
                       "meanwhile wait for the next batch.")


async def check_batcher(cls: type) -> CheckResult:
    """Exercise 05: ``add(item)`` queues; ``alarm()`` sends a batch ``BATCH_SECONDS`` later."""
    return await run_check(
        "05", "a batcher on an alarm", cls,
        [Scenario(f"three items leave as one batch, {BATCH_SECONDS} s later", _one_batch),
         Scenario("a steady trickle of items does not starve the batch", _trickle),
         Scenario("pending items survive an eviction", _evicted),
         Scenario("the outbox is down once: the retry delivers", _outbox_down),
         Scenario("an item added while a batch is being sent is not lost", _add_during_send),
         Scenario("a retry after a successful send: nothing twice, nothing lost",
                  _retry_after_send)],
        methods=("add", "alarm"),
        praise="Your batcher keeps its work in storage, sets its one alarm once, cleans up only "
               "what was sent, and survives being run twice. Alarms are at-least-once; your "
               "code is exactly-once where it matters.")
