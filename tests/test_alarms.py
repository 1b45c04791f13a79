"""Alarms: one per object, durable, delivered through the input gate, retried with backoff."""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
from typing import Any, ClassVar

import pytest

from durable_lab import DurableObject, DurableObjectResetError, Lab, ManualClock


class Reminder(DurableObject):
    runs: ClassVar[list[Any]] = []
    fail_times = 0

    async def schedule_in(self, seconds):
        when = self.env.clock_ms() + seconds * 1000
        self.ctx.storage.setAlarm(when)
        return when

    async def schedule_at(self, when):
        self.ctx.storage.setAlarm(when)

    async def cancel(self):
        self.ctx.storage.deleteAlarm()

    async def get_alarm(self):
        return await self.ctx.storage.getAlarm()

    async def alarm(self, alarm_info):
        type(self).runs.append({
            "retryCount": alarm_info.retryCount,
            "isRetry": alarm_info.isRetry,
            "getAlarm": await self.ctx.storage.getAlarm(),
        })
        self.ctx.storage.put("fired", len(type(self).runs))
        if type(self).fail_times > 0:
            type(self).fail_times -= 1
            raise RuntimeError("handler failed")

    async def fired(self):
        return await self.ctx.storage.get("fired")


@pytest.fixture(autouse=True)
def fresh():
    Reminder.runs = []
    Reminder.fail_times = 0


def clock_ms(lab):
    return lambda: lab.clock.now() * 1000


@pytest.fixture
async def manual_lab(tmp_path):
    lab = Lab(tmp_path / "alarms", clock="manual", seed=3)
    lab.env.clock_ms = clock_ms(lab)
    yield lab
    await lab.close()


async def test_alarm_fires_at_its_time_and_getalarm_is_none_inside(manual_lab):
    stub = manual_lab.bind("R", Reminder).getByName("a")
    when = await stub.schedule_in(10)
    assert await stub.get_alarm() == when
    manual_lab.clock.advance(9.9)
    await manual_lab.wait_idle()
    assert Reminder.runs == []
    manual_lab.clock.advance(0.2)
    await manual_lab.wait_idle()
    assert Reminder.runs == [{"retryCount": 0, "isRetry": False, "getAlarm": None}]
    assert await stub.get_alarm() is None  # deleted after a successful run
    assert await stub.fired() == 1


async def test_a_new_alarm_replaces_the_old_and_delete_cancels(manual_lab):
    stub = manual_lab.bind("R", Reminder).getByName("b")
    await stub.schedule_in(5)
    later = await stub.schedule_in(20)
    assert await stub.get_alarm() == later
    manual_lab.clock.advance(10)
    await manual_lab.wait_idle()
    assert Reminder.runs == []
    await stub.cancel()
    manual_lab.clock.advance(60)
    await manual_lab.wait_idle()
    assert Reminder.runs == []


async def test_past_time_fires_at_once_and_bad_times_are_refused(manual_lab):
    stub = manual_lab.bind("R", Reminder).getByName("c")
    await stub.schedule_at(1)  # 1 ms after the epoch: long past
    manual_lab.clock.advance(0)
    await manual_lab.wait_idle()
    assert len(Reminder.runs) == 1
    with pytest.raises(TypeError, match="alarm time <= 0"):
        await stub.schedule_at(0)
    with pytest.raises(TypeError, match="epoch milliseconds"):
        await stub.schedule_at("tomorrow")


async def test_a_past_time_fires_at_once_whatever_the_clock_reads(tmp_path):
    """setAlarm clamps a past time to now in epoch ms; back in seconds, now * 1000 / 1000 can
    come out one rounding step after now (about 1 start time in 85): it still fires at once."""
    start = next(t for t in (1_733_456_789.0 + k * 0.0137 for k in range(10_000))
                 if t * 1000.0 / 1000.0 > t)
    lab = Lab(tmp_path / "lab", clock=ManualClock(start))
    try:
        stub = lab.bind("R", Reminder).getByName("rounded")
        await stub.schedule_at(1)
        lab.clock.advance(0)
        await lab.wait_idle()
        assert len(Reminder.runs) == 1
    finally:
        await lab.close()


async def test_datetime_is_accepted(manual_lab):
    stub = manual_lab.bind("R", Reminder).getByName("dt")
    when = dt.datetime.fromtimestamp(manual_lab.clock.now() + 30, tz=dt.UTC)
    await stub.schedule_at(when)
    assert await stub.get_alarm() == pytest.approx(when.timestamp() * 1000)


async def test_failing_handler_is_retried_with_doubling_backoff_then_succeeds(manual_lab):
    Reminder.fail_times = 2
    stub = manual_lab.bind("R", Reminder).getByName("retry")
    start = manual_lab.clock.now()
    await stub.schedule_in(0)
    await manual_lab.wait_idle()
    times = [0.0] * len(Reminder.runs)  # a due alarm fires without waiting for advance()
    for _ in range(200):  # step time in small increments and note when each attempt ran
        before = len(Reminder.runs)
        manual_lab.clock.advance(0.05)
        await manual_lab.wait_idle()
        if len(Reminder.runs) > before:
            times.append(manual_lab.clock.now() - start)
        if len(Reminder.runs) == 3:
            break
    assert [r["retryCount"] for r in Reminder.runs] == [0, 1, 2]
    assert [r["isRetry"] for r in Reminder.runs] == [False, True, True]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert 2.0 <= gaps[0] <= 2.0 * 1.25 + 0.1
    assert 4.0 <= gaps[1] <= 4.0 * 1.25 + 0.1
    assert await stub.get_alarm() is None


async def test_alarm_is_abandoned_after_six_retries():
    lab = Lab(storage="memory", clock="auto")
    lab.env.clock_ms = clock_ms(lab)
    try:
        Reminder.fail_times = 100
        stub = lab.bind("R", Reminder).getByName("doomed")
        start = lab.clock.now()
        await stub.schedule_in(0)
        for _ in range(50):
            await asyncio.sleep(0.01)
            if len(Reminder.runs) >= 7 and lab.alarms.scheduled == {}:
                break
        assert [r["retryCount"] for r in Reminder.runs] == [0, 1, 2, 3, 4, 5, 6]
        elapsed = lab.clock.now() - start
        assert 2 + 4 + 8 + 16 + 32 + 64 <= elapsed <= (2 + 4 + 8 + 16 + 32 + 64) * 1.25 + 1
        assert await stub.get_alarm() is None
    finally:
        await lab.close()


async def test_alarm_survives_eviction_and_a_lab_restart(tmp_path):
    lab = Lab(tmp_path / "restart", clock="manual")
    lab.env.clock_ms = clock_ms(lab)
    ns = lab.bind("R", Reminder)
    stub = ns.getByName("durable")
    when = await stub.schedule_in(30)
    assert await lab.evict(stub) is True
    await lab.close()

    reopened = Lab(tmp_path / "restart", clock="manual")
    try:
        reopened.bind("R", Reminder)
        await reopened.wait_idle()
        assert reopened.alarms.pending() == {("R", stub.id.toString()): when}
        reopened.clock.advance(31)
        await reopened.wait_idle()
        assert len(Reminder.runs) == 1
    finally:
        await reopened.close()


async def test_alarm_handler_waits_at_the_input_gate(manual_lab):
    class Busy(DurableObject):
        log: ClassVar[list[str]] = []

        async def long_section(self):
            async def cs():
                self.log.append("cs-start")
                await asyncio.sleep(0.02)
                self.log.append("cs-end")
            self.ctx.storage.setAlarm(1)
            await self.ctx.blockConcurrencyWhile(cs)
            self.log.append("caller-end")

        async def alarm(self, info):
            self.log.append("alarm")

    stub = manual_lab.bind("B", Busy).getByName("gate")
    call = stub.long_section()
    await asyncio.sleep(0.005)
    manual_lab.clock.advance(1)  # the alarm is due while the critical section runs
    await call
    await manual_lab.wait_idle()
    assert Busy.log == ["cs-start", "cs-end", "caller-end", "alarm"]


async def test_set_alarm_needs_an_alarm_handler(memory_lab):
    class NoHandler(DurableObject):
        async def try_it(self):
            self.ctx.storage.setAlarm(10**13)

    with pytest.raises(TypeError, match="must have an alarm\\(\\) handler"):
        await memory_lab.bind("N", NoHandler).getByName("x").try_it()


async def test_alarm_from_a_failed_turn_never_fires(manual_lab):
    stub = manual_lab.bind("R", Reminder).getByName("lost")
    manual_lab.fail_next_commit(stub)
    with pytest.raises(DurableObjectResetError):
        await stub.schedule_in(1)
    manual_lab.clock.advance(5)
    await manual_lab.wait_idle()
    assert Reminder.runs == []
