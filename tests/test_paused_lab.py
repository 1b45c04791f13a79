"""A paused lab speaks and agrees with itself (issue 9): a call made while paused says in the cell
that it waits, and ``lab.choices()`` lists what ``lab.step()`` takes, right after a clock jump.

The note is ordinary output (issue 17, item 9): printed on stdout, so Jupyter shows plain text
under the cell, not the red stderr box of an error or a logged warning."""

from __future__ import annotations

import asyncio

import pytest

import durable_lab
from durable_lab import DurableObject, Lab


class Napper(DurableObject):
    async def nap(self, seconds=1):
        await durable_lab.sleep(seconds)
        self.ctx.storage.put("woke", seconds)
        return seconds

    async def ping(self):
        return "pong"


PAUSED_WORDS = ("the lab is paused: NAP:a.ping() waits until you press Play or Step "
                "(lab.resume() / await lab.step())")


class PausedNotes:
    """The "the lab is paused" lines printed so far (on stdout), and all of stderr."""

    def __init__(self, capsys: pytest.CaptureFixture[str]) -> None:
        self.capsys = capsys
        self.lines: list[str] = []
        self.stderr = ""

    def __call__(self) -> list[str]:
        out, err = self.capsys.readouterr()
        self.lines += [line for line in out.splitlines() if "the lab is paused" in line]
        self.stderr += err
        return self.lines


@pytest.fixture
def paused_notes(capsys: pytest.CaptureFixture[str]) -> PausedNotes:
    return PausedNotes(capsys)


async def test_a_call_made_while_paused_says_once_per_pause_that_it_waits(paused_notes):
    async with Lab(storage="memory") as lab:
        stub = lab.bind("NAP", Napper).getByName("a")
        assert await stub.ping() == "pong"
        assert paused_notes() == []  # running freely: no word
        lab.pause()
        first = stub.ping()
        second = stub.ping()
        assert paused_notes() == [PAUSED_WORDS]  # once, not once per call
        assert paused_notes.stderr == ""  # ordinary output: nothing on stderr, no warning
        lab.resume()
        assert await asyncio.gather(first, second) == ["pong", "pong"]
        lab.pause()  # a new pause: a new note
        third = stub.nap(0)
        assert paused_notes()[1:] == [PAUSED_WORDS.replace("ping", "nap")]
        lab.resume()
        assert await third == 0


async def test_calls_between_objects_while_paused_print_nothing(paused_notes):
    class Caller(DurableObject):
        async def call(self):
            return await self.env.NAP.getByName("b").ping()

    async with Lab(storage="memory") as lab:
        lab.bind("NAP", Napper)
        caller = lab.bind("CALLER", Caller).getByName("x")
        lab.pause()
        reply = caller.call()
        assert len(paused_notes()) == 1  # the learner's own call
        while not reply.done():
            if await lab.step() is None:
                await asyncio.sleep(0)
        assert reply.result() == "pong"
        assert len(paused_notes()) == 1  # CALLER:x -> NAP:b was object code: no note


async def test_choices_after_a_clock_advance_list_what_step_takes():
    async with Lab(storage="memory", clock="manual") as lab:
        stub = lab.bind("NAP", Napper).getByName("a")
        call = stub.nap(1)
        await asyncio.sleep(0.01)  # now asleep on the lab clock
        lab.pause()
        assert lab.choices() == []  # nothing can happen before the timer fires
        assert lab.clock.advance(1) == 1
        choices = lab.choices()  # same cell, no await in between
        assert [c.description for c in choices] == ["resume delivery 1 at NAP:a"]
        first = choices[0]
        taken = await lab.step()
        assert taken is not None
        assert (taken.kind, taken.object, taken.delivery, taken.description) == (
            first.kind, first.object, first.delivery, first.description)
        lab.resume()
        assert await call == 1


async def steps_after_two_timers(*, look: bool) -> list[str]:
    """Two naps whose timers fire in the other order than the naps began; step through."""
    async with Lab(storage="memory", clock="manual") as lab:
        nap = lab.bind("NAP", Napper)
        long, short = nap.getByName("long").nap(2), nap.getByName("short").nap(1)
        await asyncio.sleep(0.01)
        lab.pause()
        lab.clock.advance(2)
        if look:
            assert [c.description for c in lab.choices()] == [
                "resume delivery 2 at NAP:short", "resume delivery 1 at NAP:long"]
        taken = []
        while (choice := await lab.step()) is not None:
            taken.append(choice.description)
        lab.resume()
        assert await asyncio.gather(long, short) == [2, 1]
        return taken


async def test_looking_at_the_choices_does_not_change_what_happens():
    # The continuations queue in the order their timers fired, whether or not choices() ran.
    looked, not_looked = await steps_after_two_timers(look=True), await steps_after_two_timers(
        look=False)
    assert looked == not_looked
    assert looked[:2] == ["resume delivery 2 at NAP:short", "resume delivery 1 at NAP:long"]


async def test_running_freely_a_sleep_resumes_as_before():
    async with Lab(storage="memory", clock="manual") as lab:
        stub = lab.bind("NAP", Napper).getByName("a")
        rec = lab.record()
        call = stub.nap(1)
        await asyncio.sleep(0.01)
        lab.clock.advance(1)
        assert rec.kinds()[-1] == "TurnEnded"  # nothing queued at the gate inside advance()
        assert await call == 1
        assert "DeliveryResumed" in rec.kinds()


async def test_code_that_pauses_its_own_lab_to_play_scheduler_can_keep_quiet(paused_notes):
    async with Lab(storage="memory") as lab:
        stub = lab.bind("NAP", Napper).getByName("a")
        lab.scheduler.note_paused_calls = False
        lab.pause()
        reply = stub.ping()
        lab.resume()
        assert await reply == "pong"
    assert paused_notes() == []


async def test_an_exercise_check_playing_scheduler_prints_no_paused_note(paused_notes):
    from durable_lab.exercises import check_seat

    class Seat(DurableObject):
        async def claim(self, user):
            if await self.ctx.storage.get("owner") is not None:
                return False
            self.ctx.storage.put("owner", user)
            await self.env.PAYMENTS.getByName("bank").charge(user, 10)
            return True

        async def owner(self):
            return await self.ctx.storage.get("owner")

    result = await check_seat(Seat)
    assert any("adversarial" in o.name for o in result.outcomes)
    assert paused_notes() == []
