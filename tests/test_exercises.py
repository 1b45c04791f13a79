"""Every check against its shipped solution (passes) and typical wrong answers (fails, with
the right hint). Starters and solutions are the modules in course/starters and course/solutions
(scripts/build_lessons.py puts them into the lessons and the solution notebooks)."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import pytest
from notebook_sources import exercise_source, exercise_subject, load_build, subject_from

import durable_lab
from durable_lab import DurableObject, Response, WebSocketPair
from durable_lab.exercises import CHECKS, CheckResult, check, check_counter
from durable_lab.exercises._core import Fail, Scenario, run_check

EXERCISES = sorted(load_build().exercises())
STARTERS = {key: exercise_source(key, "starter") for key in EXERCISES}
SOLUTIONS = {key: exercise_source(key, "solution") for key in EXERCISES}


def load(key: str, source: str) -> Any:
    """Run a starter/solution text (after a lesson's imports) and return its subject."""
    return subject_from(key, source)


def define(key: str, source: str) -> Any:
    """A wrong answer written inline in this file, with the same imports as a notebook."""
    return load(key, source)


def failed(result: CheckResult) -> dict[str, str]:
    """{scenario name: what happened + hint} of the failed scenarios."""
    return {o.name: f"{o.what}\n{o.hint}" for o in result.failures}


def assert_fails(result: CheckResult, scenario: str, *hint_words: str) -> None:
    __tracebackhide__ = True
    assert not result.passed, str(result)
    matches = [text for name, text in failed(result).items() if scenario in name]
    assert matches, f"expected scenario {scenario!r} to fail:\n{result}"
    for word in hint_words:
        assert word in matches[0], f"expected {word!r} in the feedback of {scenario!r}:\n{result}"


# -- every shipped solution passes, every shipped starter fails ---------------------------


@pytest.mark.parametrize("key", EXERCISES)
async def test_the_shipped_solution_passes(key):
    result = await CHECKS[key](exercise_subject(key, "solution"))
    assert result.passed, str(result)
    assert result.score == 1.0
    assert "scenarios pass" in str(result) or "it passes" in str(result)


STARTER_FAILS = {
    "00": ("survives an eviction", "storage"),
    "01": ("model='none'", "asyncio.Lock"),
    "02": ("two claims at the same time", "OPENS the input gate"),
    "03": ("a commit fails", "allowUnconfirmed"),
    "04": ("50 items are one commit", "sync()"),
    "05": ("steady trickle", "setAlarm() replaces"),
    "06a": ("not stuck behind a slow export", "blockConcurrencyWhile"),
    "06b": ("spread over objects", "One object for everything"),
    "07": ("O'Brien", "bindings"),
    "08": ("after hibernation", "getWebSockets"),
    "09": ("the window slides", "durable_lab.now()"),
    "10": ("within 50 ms", "One object for everyone"),
}


@pytest.mark.parametrize("key", EXERCISES)
async def test_the_shipped_starter_fails_with_its_hint(key):
    assert set(STARTER_FAILS) == set(EXERCISES)
    result = await CHECKS[key](exercise_subject(key, "starter"))
    scenario, word = STARTER_FAILS[key]
    assert_fails(result, scenario, word)
    assert "Not there yet" in str(result)


# -- typical wrong answers, per exercise ----------------------------------------------------


async def test_00_shared_class_attribute_is_named():
    cls = define("00", '''
        class MyCounter(DurableObject):
            counts = {}
            async def increment(self, by=1):
                MyCounter.counts["n"] = MyCounter.counts.get("n", 0) + by
                return MyCounter.counts["n"]
            async def value(self):
                return MyCounter.counts.get("n", 0)
    ''')
    assert_fails(await check_counter(cls), "each name is its own counter", "class attribute")


async def test_00_a_timer_between_read_and_write_loses_updates():
    cls = define("00", SOLUTIONS["00"].replace(
        'self.ctx.storage.put("n", n + by)',
        'await durable_lab.sleep(0.001)\n        self.ctx.storage.put("n", n + by)', 1))
    assert_fails(await check_counter(cls), "10 increments at once", "lost", "open it")


async def test_00_ignoring_by_is_reported():
    cls = define("00", SOLUTIONS["00"].replace("n + by", "n + 1"))
    assert_fails(await check_counter(cls), "it counts", "`by`")


async def test_01_a_lock_made_per_call_keeps_nobody_out():
    cls = define("01", '''
        class LockedCounter(DurableObject):
            async def increment(self, by=1):
                async with asyncio.Lock():
                    n = (await self.ctx.storage.get("n")) or 0
                    await self.ctx.storage.put("n", n + by)
                    return n + by
            async def value(self):
                return (await self.ctx.storage.get("n")) or 0
    ''')
    assert_fails(await CHECKS["01"](cls), "model='none'", "new lock for every call")


async def test_02_reserving_without_undo_keeps_a_failed_buyers_seat():
    cls = define("02", SOLUTIONS["02"].replace(
        "self.ctx.storage.delete(\"owner\")         # the payment failed: free the seat again",
        "pass"))
    result = await CHECKS["02"](cls)
    assert_fails(result, "the payment call fails", "undo the reservation")
    assert [o.passed for o in result.outcomes[:3]] == [True, True, True]


async def test_02_every_schedule_of_two_claims_is_explored_and_said():
    solved = await CHECKS["02"](define("02", SOLUTIONS["02"]))
    every = next(o for o in solved.outcomes if o.name == "every schedule of two claims")
    assert every.passed and re.search(r"all \d+ schedules of 2 claims hold", every.note), every
    naive = define("02", '''
        class Seat(DurableObject):
            async def claim(self, user):
                if await self.ctx.storage.get("owner") is not None:
                    return False
                await self.env.PAYMENTS.getByName("bank").charge(user, 10)
                self.ctx.storage.put("owner", user)
                return True
            async def owner(self):
                return await self.ctx.storage.get("owner")
    ''')
    assert_fails(await CHECKS["02"](naive), "two claims at the same time")
    failed = next(o for o in (await CHECKS["02"](naive)).outcomes
                  if o.name == "every schedule of two claims")
    assert not failed.passed
    assert re.search(r"this schedule of \d+ steps breaks it", failed.what), failed


async def test_02_block_concurrency_while_passes_and_says_it_reset():
    cls = define("02", '''
        class Seat(DurableObject):
            async def claim(self, user):
                async def buy():
                    if await self.ctx.storage.get("owner") is not None:
                        return False
                    await self.env.PAYMENTS.getByName("bank").charge(user, 10)
                    self.ctx.storage.put("owner", user)
                    return True
                return await self.ctx.blockConcurrencyWhile(buy)
            async def owner(self):
                return await self.ctx.storage.get("owner")
    ''')
    result = await CHECKS["02"](cls)
    assert result.passed, str(result)
    assert "reset" in result.outcomes[-1].note


async def test_02_the_adversarial_scenario_prints_a_replayable_schedule():
    result = await CHECKS["02"](load("02", STARTERS["02"]))
    text = failed(result)["you are not the scheduler any more: 25 adversarial schedules"]
    assert "seed 0" in text and "admit delivery" in text and "lab.choose(i)" in text


async def test_03_a_balance_kept_in_a_field_is_caught():
    cls = define("03", '''
        class Ledger(DurableObject):
            def __init__(self, ctx, env):
                super().__init__(ctx, env)
                self.total = 0
            async def deposit(self, amount):
                self.total += amount
                self.ctx.storage.put("balance", self.total)
                return self.total
            async def balance(self):
                return (await self.ctx.storage.get("balance")) or 0
    ''')
    result = await CHECKS["03"](cls)
    assert not result.passed, str(result)


async def test_04_a_sleep_between_puts_is_named():
    cls = define("04", SOLUTIONS["04"].replace(
        "self.ctx.storage.put(key, value)   # all in one turn: one batch, one commit",
        "self.ctx.storage.put(key, value)\n            await durable_lab.sleep(0)"))
    assert_fails(await CHECKS["04"](cls), "one commit", "a sleep")
    assert_fails(await CHECKS["04"](cls), "never a mix", "half-saved")


async def test_05_deleting_after_the_send_but_everything_loses_late_items():
    cls = define("05", '''
        class Batcher(DurableObject):
            async def add(self, item):
                pending = (await self.ctx.storage.get("pending")) or []
                pending.append(item)
                self.ctx.storage.put("pending", pending)
                if await self.ctx.storage.getAlarm() is None:
                    self.ctx.storage.setAlarm(durable_lab.now() * 1000 + 10_000)
            async def alarm(self, alarm_info):
                pending = (await self.ctx.storage.get("pending")) or []
                if pending:
                    await self.env.OUTBOX.getByName("outbox").deliver(pending)
                    self.ctx.storage.delete("pending")
    ''')
    result = await CHECKS["05"](cls)
    assert_fails(result, "added while a batch is being sent", "opens the input gate")
    assert_fails(result, "nothing twice, nothing lost", "batch_id")
    passed = {o.name for o in result.outcomes if o.passed}
    assert any("trickle" in name for name in passed)
    assert any("outbox is down" in name for name in passed)


async def test_05_a_batch_id_without_storing_the_batch_first_loses_a_late_item():
    cls = define("05", '''
        class Batcher(DurableObject):
            async def add(self, item):
                seq = (await self.ctx.storage.get("seq")) or 0
                self.ctx.storage.put("seq", seq + 1)
                self.ctx.storage.put(f"item:{seq:06}", item)
                if await self.ctx.storage.getAlarm() is None:
                    self.ctx.storage.setAlarm(durable_lab.now() * 1000 + 10_000)
            async def alarm(self, alarm_info):
                items = await self.ctx.storage.list(prefix="item:")
                if not items:
                    return
                batch = (await self.ctx.storage.get("batch")) or 1
                await self.env.OUTBOX.getByName("outbox").deliver(list(items.values()),
                                                                  batch_id=batch)
                self.ctx.storage.delete(list(items))
                self.ctx.storage.put("batch", batch + 1)
    ''')
    result = await CHECKS["05"](cls)
    assert_fails(result, "nothing twice, nothing lost", "'inflight'", "['a', 'b']")
    assert sum(o.passed for o in result.outcomes) == 5


async def test_05_items_in_a_field_are_lost_on_eviction():
    cls = define("05", '''
        class Batcher(DurableObject):
            def __init__(self, ctx, env):
                super().__init__(ctx, env)
                self.pending = []
            async def add(self, item):
                self.pending.append(item)
                if await self.ctx.storage.getAlarm() is None:
                    self.ctx.storage.setAlarm(durable_lab.now() * 1000 + 10_000)
            async def alarm(self, alarm_info):
                items, self.pending = self.pending, []
                await self.env.OUTBOX.getByName("outbox").deliver(items)
    ''')
    assert_fails(await CHECKS["05"](cls), "survive an eviction", "in storage")


async def test_05_swallowing_the_send_error_is_named():
    cls = define("05", SOLUTIONS["05"].replace(
        '''        await self.env.OUTBOX.getByName("outbox").deliver(inflight["items"],
                                                          batch_id=inflight["id"])''',
        '''        try:
            await self.env.OUTBOX.getByName("outbox").deliver(inflight["items"],
                                                              batch_id=inflight["id"])
        except Exception:
            pass'''))
    assert_fails(await CHECKS["05"](cls), "outbox is down", "do not swallow")


async def test_06b_routing_by_user_splits_a_room():
    route = define("06b", '''
        def route(env, room, user):
            return env.ROOMS.getByName(user)
    ''')
    result = await CHECKS["06b"](route)
    assert_fails(result, "sees the same messages", "route by the room")
    assert_fails(result, "spread over objects", "Fewer objects than rooms")


async def test_06b_refuses_an_async_route_kindly():
    async def route(env, room, user):
        return env.ROOMS.getByName(room)

    result = await CHECKS["06b"](route)
    assert_fails(result, "right shape", "plain def")


async def test_10_one_object_per_room_without_hints_fails_only_for_travellers():
    route = define("10", '''
        def route(env, room, user):
            return env.ROOMS.getByName(room)
    ''')
    result = await CHECKS["10"](route)
    assert_fails(result, "created by a traveller", "FIRST message", "locationHint=home")
    assert [o.passed for o in result.outcomes] == [True, True, False, True]


async def test_10_routing_by_region_is_fast_but_merges_rooms():
    route = define("10", '''
        def route(env, room, user):
            home = room.split("/")[0]
            return env.ROOMS.getByName(home, locationHint=home)
    ''')
    result = await CHECKS["10"](route)
    assert_fails(result, "spread over objects", "Fewer objects than rooms")
    assert [o.passed for o in result.outcomes] == [True, True, True, False]


async def test_10_routing_by_user_splits_a_room_and_a_hint_needs_a_real_region():
    by_user = define("10", '''
        def route(env, room, user):
            return env.ROOMS.getByName(user)
    ''')
    assert_fails(await CHECKS["10"](by_user), "sees the same messages", "route by the room")
    bad_hint = define("10", '''
        def route(env, room, user):
            return env.ROOMS.getByName(room, locationHint=room)
    ''')
    assert_fails(await CHECKS["10"](bad_hint), "sees the same messages",
                 "invalid locationHint 'weur/techno'")


async def test_07_an_unsorted_top_and_a_plain_create_table():
    cls = define("07", SOLUTIONS["07"].replace(
        "ORDER BY total DESC, player ", "").replace("IF NOT EXISTS ", ""))
    result = await CHECKS["07"](cls)
    assert_fails(result, "sorted and cut", "ORDER BY")
    assert_fails(result, "survive an eviction", "IF NOT EXISTS")


async def test_08_names_kept_in_a_field_are_lost_after_hibernation():
    cls = define("08", '''
        class ChatRoom(DurableObject):
            def __init__(self, ctx, env):
                super().__init__(ctx, env)
                self.names = {}
            async def fetch(self, request):
                name = parse_qs(urlparse(request.url).query).get("name", ["anon"])[0]
                client, server = WebSocketPair()
                self.ctx.acceptWebSocket(server)
                self.names[server] = name
                return Response(None, status=101, web_socket=client)
            async def webSocketMessage(self, ws, message):
                for other in self.ctx.getWebSockets():
                    other.send(f"{self.names.get(ws, '?')}: {message}")
            async def history(self):
                return []
    ''')
    assert_fails(await CHECKS["08"](cls), "after hibernation", "serializeAttachment")


async def test_09_typical_wrong_limiters():
    fixed = define("09", '''
        class RateLimiter(DurableObject):
            async def allow(self):
                window = int(durable_lab.now() // 60)
                state = (await self.ctx.storage.get("state")) or [window, 0]
                if state[0] != window:
                    state = [window, 0]
                if state[1] >= 5:
                    return False
                self.ctx.storage.put("state", [state[0], state[1] + 1])
                return True
    ''')
    assert_fails(await CHECKS["09"](fixed), "the window slides", "fixed window")
    unconfirmed = define("09", SOLUTIONS["09"].replace(
        'self.ctx.storage.put("times", recent)',
        'self.ctx.storage.put("times", recent, allowUnconfirmed=True)'))
    assert_fails(await CHECKS["09"](unconfirmed), "every other commit fails", "allowUnconfirmed")
    unpruned = define("09", SOLUTIONS["09"].replace(
        '''self.ctx.storage.put("times", recent)''',
        '''self.ctx.storage.put("times", times + [now] if allowed else times)'''))
    assert_fails(await CHECKS["09"](unpruned), "storage stays bounded", "Drop the times")
    wall = define("09", SOLUTIONS["09"].replace("durable_lab.now()",
                                                      "__import__('time').time()"))
    assert_fails(await CHECKS["09"](wall), "the window slides", "durable_lab.now()")
    racy = define("09", SOLUTIONS["09"].replace(
        "allowed = len(recent) < self.LIMIT",
        "await durable_lab.sleep(0.01)\n        allowed = len(recent) < self.LIMIT"))
    result = await CHECKS["09"](racy)
    assert_fails(result, "a burst of concurrent calls", "input gate")
    assert_fails(result, "adversarial schedules", "scheduler")


# -- the machinery ---------------------------------------------------------------------------


async def test_a_result_prints_marks_and_serialises():
    result = await check_counter(load("00", STARTERS["00"]))
    text = str(result)
    assert text.startswith("Exercise 00")
    assert "✓" in text and "✗" in text and "What happened:" in text and "Hint:" in text
    data = result.to_dict()
    assert data["passed"] is False and 0 < data["score"] < 1
    assert '"exercise": "00"' in result.to_json()
    with pytest.raises(AssertionError, match="Exercise 00"):
        result.assert_passed()
    assert repr(result) == text


async def test_check_by_exercise_number():
    result = await check("0", load("00", SOLUTIONS["00"]))
    assert result.passed
    with pytest.raises(KeyError, match="no exercise"):
        await check("42", object)


@pytest.mark.parametrize(("subject", "words"), [
    (object(), "the class itself"),
    (int, "does not subclass DurableObject"),
    (type("NoMethods", (DurableObject,), {}), "has no increment(), value()"),
])
async def test_the_wrong_kind_of_subject_gets_a_kind_explanation(subject, words):
    result = await check_counter(subject)
    assert not result.passed
    assert words in str(result)


async def test_an_async_constructor_is_refused_with_the_fix():
    class Bad(DurableObject):
        async def __init__(self, ctx, env):
            pass

        async def increment(self, by=1):
            return 1

        async def value(self):
            return 1

    result = await check_counter(Bad)
    assert "blockConcurrencyWhile" in str(result)


async def test_a_forgotten_await_is_explained():
    class NoAwait(DurableObject):
        async def increment(self, by=1):
            n = self.ctx.storage.get("n") or 0
            self.ctx.storage.put("n", n + by)
            return n + by

        async def value(self):
            return 0

    result = await check_counter(NoAwait)
    assert "forget an await" in str(result)


async def test_a_stuck_scenario_times_out_with_a_hint():
    async def stuck(cls):
        await asyncio.Event().wait()

    async def fine(cls):
        return "note"

    result = await run_check("xx", "test", DurableObject,
                             [Scenario("stuck", stuck), Scenario("fine", fine)], timeout=0.05)
    assert [o.passed for o in result.outcomes] == [False, True]
    assert "did not finish" in result.outcomes[0].what
    assert "durable_lab.sleep" in result.outcomes[0].hint
    assert result.outcomes[1].note == "note"


async def test_a_scenario_failure_carries_what_and_hint():
    async def fails(cls):
        raise Fail("it broke", "fix it")

    result = await run_check("xx", "test", DurableObject, [Scenario("one", fails)])
    assert failed(result) == {"one": "it broke\nfix it"}
    assert "it passes" not in str(result)


def test_every_check_is_documented_and_async():
    import inspect

    for key, function in CHECKS.items():
        assert inspect.iscoroutinefunction(function), key
        assert function.__doc__, key
    assert durable_lab.exercises.__doc__ and "check_rate_limiter" in durable_lab.exercises.__doc__


def test_imports_used_by_inline_wrong_answers_exist():
    assert Response and WebSocketPair  # the notebooks' imports, used by exercise 08
