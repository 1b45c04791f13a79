"""Stepping: pause, list the legal transitions, choose them one by one."""

from __future__ import annotations

import asyncio

import pytest

from durable_lab import DurableObject, Lab
from durable_lab.events import DeliveryFinished, ReplyReleased


class Counter(DurableObject):
    async def increment(self):
        n = (await self.ctx.storage.get("n")) or 0
        self.ctx.storage.put("n", n + 1)
        return n + 1

    async def value(self):
        return (await self.ctx.storage.get("n")) or 0


@pytest.fixture
async def paused_lab():
    lab = Lab(storage="memory", seed=1)
    lab.pause()
    yield lab
    await lab.close()


async def test_paused_lab_holds_deliveries_until_stepped(paused_lab):
    stub = paused_lab.bind("C", Counter).getByName("x")
    call = stub.increment()
    await paused_lab.scheduler.settle()
    assert not call.done()
    kinds = [c.kind for c in paused_lab.choices()]
    assert kinds == ["constructor"]  # no delivery may enter before the constructor ran
    steps = 0
    while not call.done():
        assert await paused_lab.step() is not None
        steps += 1
    assert call.result() == 1
    assert steps == 5  # constructor, admit, flush, commit, reply


async def test_the_gate_offers_only_one_holder_at_a_time(paused_lab):
    stub = paused_lab.bind("C", Counter).getByName("x")
    calls = [stub.increment(), stub.increment()]
    await paused_lab.step()  # the constructor
    choices = paused_lab.choices()
    assert [c.kind for c in choices] == ["admit", "admit"]  # either may go first
    second = choices[1].delivery
    await paused_lab.choose(1)  # the learner picks the second call
    # Its read held the gate, so its whole get-then-put ran before anyone else got in; now
    # its reply waits and the other call may be admitted.
    after = paused_lab.choices()
    assert sorted(c.kind for c in after) == ["admit", "flush"]
    # Its reply is held behind its flush and commit, which are steps too.
    while not any(c.kind == "reply" for c in paused_lab.choices()):
        await paused_lab.choose(next(c.index for c in paused_lab.choices() if c.kind != "admit"))
    reply = next(c for c in paused_lab.choices() if c.kind == "reply")
    assert reply.delivery == second
    while not all(c.done() for c in calls):
        assert await paused_lab.step() is not None
    assert sorted(c.result() for c in calls) == [1, 2]  # no schedule can lose an update


async def test_any_order_of_choices_keeps_the_counter_right():
    """Exhaustively try the learner's choices: with the gates on, nothing loses an update."""
    import itertools

    for pattern in itertools.product([0, -1], repeat=6):
        lab = Lab(storage="memory")
        lab.pause()
        stub = lab.bind("C", Counter).getByName("x")
        calls = [stub.increment() for _ in range(3)]
        moves = iter(pattern)
        for _ in range(100):
            options = lab.choices()
            if not options:
                await lab.scheduler.settle()
                options = lab.choices()
                if not options:
                    break
            pick = next(moves, 0)
            await lab.choose(pick % len(options))
        assert sorted(c.result() for c in calls) == [1, 2, 3], pattern
        await lab.close()


async def test_step_until_an_event_type(paused_lab):
    stub = paused_lab.bind("C", Counter).getByName("x")
    call = stub.increment()
    event = await paused_lab.step_until(DeliveryFinished)
    assert isinstance(event, DeliveryFinished) and event.ok
    assert not call.done()  # the reply is still held
    released = await paused_lab.step_until(ReplyReleased)
    assert released is not None
    await paused_lab.step_until(lambda e: False)  # runs out of transitions
    assert call.result() == 1


async def test_breakpoint_on_reply_pauses_a_running_lab():
    lab = Lab(storage="memory")
    try:
        stub = lab.bind("C", Counter).getByName("x")
        point = lab.break_on("reply", object="C:x")
        call = stub.increment()
        await lab.scheduler.settle()
        assert lab.paused and not call.done()
        assert [c.kind for c in lab.choices()] == ["reply"]
        point.remove()
        lab.resume()
        assert await call == 1
    finally:
        await lab.close()


async def test_resume_lets_everything_through(paused_lab):
    stub = paused_lab.bind("C", Counter).getByName("x")
    calls = [stub.increment() for _ in range(5)]
    await paused_lab.scheduler.settle()
    paused_lab.resume()
    assert sorted(await asyncio.gather(*calls)) == [1, 2, 3, 4, 5]


async def test_choose_out_of_range_lists_the_choices(paused_lab):
    stub = paused_lab.bind("C", Counter).getByName("x")
    stub.increment()
    with pytest.raises(IndexError, match="the choices now are"):
        await paused_lab.choose(7)
    paused_lab.resume()
    await paused_lab.wait_idle()


def test_break_on_unknown_kind_is_refused():
    lab = Lab(storage="memory")
    with pytest.raises(ValueError, match="kind must be one of"):
        lab.break_on("teleport")
