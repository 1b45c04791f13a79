"""What each exercise's text and hints say is what its check measures (issue 9).

The numbers a lesson quotes about its check come from the constants the check runs with, so a
change to one without the other fails here. Checked against the lessons as
scripts/build_lessons.py builds them from course/.
"""

from __future__ import annotations

import re
import sqlite3

import pytest
from notebook_sources import exercise_source, generate, load_build, subject_from

from durable_lab.exercises import (
    CHECKS,
    batcher,
    bulk,
    chat,
    contention,
    counter,
    leaderboard,
    ledger,
    placement,
    ratelimit,
    seats,
)
from durable_lab.exercises.helpers import Exporter

build = load_build()
LESSONS = build.lessons()


def lesson_text(key: str) -> str:
    """The markdown of the lesson that holds exercise ``key``, whitespace collapsed."""
    for lesson in LESSONS.values():
        if key in lesson.exercises:
            return " ".join(" ".join(c.source for c in lesson.cells
                                     if c.kind == "markdown").split())
    raise KeyError(key)


def subject(key: str, source: str):
    """A class from source, findable by the checks' hints as a notebook cell's is."""
    return subject_from(key, source, "exercise text")


LIMITER = subject("09", exercise_source("09", "solution"))

QUOTED = {
    "01": [f"then on slow storage ({counter.SLOW_COMMITS[0] * 1000:g} ms, then "
           f"{counter.SLOW_COMMITS[1]:g} s of lab time per write"],
    "02": [f"every schedule of {len(seats.EXHAUSTIVE_CLAIMANTS)} claims",
           f"{seats.ADVERSARIAL_SCHEDULES} random legal schedules of {len(seats.CLAIMANTS)} "
           "claims;"],
    "03": [f"runs {ledger.CHAOS_DEPOSITS} deposits from {ledger.CHAOS_CLIENTS} clients while 1 "
           f"commit in {ledger.CHAOS_FAIL_ONE_IN} fails (over {ledger.CHAOS_ACCOUNTS} accounts)"],
    "05": [f"`BATCH_SECONDS = {batcher.BATCH_SECONDS}` s after the first item"],
    "06a": [f"a slow exporter ({Exporter.DELAY:g} s of lab time"],
    "10": [f"posts {placement.MEMBER_POSTS} messages per room",
           f"p95 within **{placement.BUDGET_MS} ms**"],
    "09": [f"{ratelimit.ADVERSARIAL_SCHEDULES} adversarial schedules",
           f"{ratelimit.CALLS} calls over {ratelimit.CALLS * LIMITER.WINDOW / 4 / 60:g} minutes",
           f"`LIMIT = {LIMITER.LIMIT}` calls per sliding `WINDOW = {LIMITER.WINDOW}`"],
}


@pytest.mark.parametrize("key", sorted(QUOTED))
def test_the_lesson_quotes_the_numbers_its_check_runs_with(key):
    text = lesson_text(key)
    for phrase in QUOTED[key]:
        assert phrase in text, f"exercise {key}: the lesson should say {phrase!r}"


def test_the_old_mismatches_are_gone():
    assert "60 deposits from 4 clients" not in lesson_text("03")
    assert "each item becomes its own commit" not in bulk.AWAIT_HINT


async def test_the_capstone_runs_as_many_scenarios_as_the_lesson_says():
    result = await CHECKS["09"](LIMITER)
    words = {6: "six", 7: "seven", 8: "eight", 9: "nine"}
    assert f"It runs {words[len(result.outcomes)]} scenarios" in lesson_text("09")


async def test_the_chaos_scenario_reports_the_numbers_it_ran():
    result = await CHECKS["03"](subject("03", exercise_source("03", "starter")))
    chaos = [o for o in result.outcomes if "clients" in o.name]
    assert chaos and chaos[0].name == (
        f"{ledger.CHAOS_DEPOSITS} deposits from {ledger.CHAOS_CLIENTS} clients while 1 commit "
        f"in {ledger.CHAOS_FAIL_ONE_IN} fails")
    assert chaos[0].name in chaos[0].what  # the starter fails it, with the same numbers


async def test_the_bulk_hint_says_what_was_measured_when_a_loop_syncs_every_tenth_item():
    # The issue's case: "50 items took 5 commits", then a hint saying "each item becomes its
    # own commit".
    every_tenth = subject("04", '''
        class Store(DurableObject):
            async def save_all(self, items):
                for i, (key, value) in enumerate(items.items()):
                    self.ctx.storage.put(key, value)
                    if i % 10 == 9:
                        await self.ctx.storage.sync()
                return len(items)

            async def load_all(self):
                return dict(await self.ctx.storage.list())
    ''')
    result = await CHECKS["04"](every_tenth)
    one = [o for o in result.failures if "one commit" in o.name]
    assert one, str(result)
    assert f"saving {bulk.BULK_ITEMS} items took 5 commits" in one[0].what
    assert f"your {bulk.BULK_ITEMS} items went out as 5 commits" in one[0].hint
    assert "each item" not in one[0].hint
    assert "await self.ctx.storage.sync()" in one[0].hint


def test_the_sql_hint_runs_against_the_starters_table():
    create = re.search(r'"(CREATE TABLE[^"]+)"', exercise_source("07", "starter"))
    example = re.search(r"sql\.exec\('([^']+)', (.+?)\)`", leaderboard.BINDINGS_HINT)
    assert create and example, leaderboard.BINDINGS_HINT
    db = sqlite3.connect(":memory:")
    db.execute(create.group(1))
    bindings = example.group(2).split(", ")
    db.execute(example.group(1), ["O'Brien"] * len(bindings))  # raises if a column is wrong


def test_the_sort_hint_runs_against_the_starters_table():
    create = re.search(r'"(CREATE TABLE[^"]+)"', exercise_source("07", "starter"))
    example = re.search(r"`(SELECT [^`]+ORDER BY[^`]+LIMIT \?)`", leaderboard.SORT_HINT)
    assert create and example, leaderboard.SORT_HINT
    db = sqlite3.connect(":memory:")
    db.execute(create.group(1))
    db.executemany("INSERT INTO scores VALUES (?, ?)", [("ann", 3), ("bob", 9), ("cat", 5)])
    assert db.execute(example.group(1), [2]).fetchall() == [("bob", 9), ("cat", 5)]


async def test_the_history_hint_asks_only_for_what_the_check_measures():
    # The history scenario sends HISTORY_MESSAGES lines and never tests a 50-line cap, so its
    # hint may not demand one.
    result = await CHECKS["08"](subject("08", exercise_source("08", "starter")))
    history = [o for o in result.failures if "history" in o.name]
    assert history, str(result)
    assert f"ann sent {chat.HISTORY_MESSAGES} messages" in history[0].what
    assert "50" not in history[0].hint


def test_scenario_texts_use_the_constants_they_run_with():
    import inspect

    source = inspect.getsource(contention)
    assert "five users" not in source and "{len(USERS)} users posted" in source
    assert "retried it {INITIAL_BACKOFF:g} s later" in inspect.getsource(batcher)


def test_every_generated_lesson_with_an_exercise_is_covered():
    exercised = {key for lesson in LESSONS.values() for key in lesson.exercises}
    assert exercised == set(CHECKS)
    assert len([g for g in generate() if g.lesson]) == len(LESSONS)
