"""Wrong solutions each lesson warns about, and the hint that must name their mistake (issue 17).

Every exercise gets at least three wrong classes (or routes), each a mistake its lesson talks
about: a field instead of storage, a lock made per call, sorting in Python instead of
``ORDER BY ... LIMIT``, a put not awaited without gates, ``blockConcurrencyWhile`` around
everything, a read before a write across an await, ... Each must fail the named scenario, and
the feedback (what happened + hint) must contain the words that name its mistake. A few right
solutions that look like wrong ones (a field loaded from storage, ``await put()``, a critical
section around the snapshot only) must pass, so the checks are not fooled the other way round.
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass
from typing import Any

import pytest
from notebook_sources import exercise_source, load_build, subject_from

from durable_lab.exercises import CHECKS, CheckResult

KEYS = sorted(load_build().exercises())
STARTERS = {key: exercise_source(key, "starter") for key in KEYS}
SOLUTIONS = {key: exercise_source(key, "solution") for key in KEYS}


def subject(key: str, source: str) -> Any:
    """The class (or route) defined by ``source``, with the notebooks' imports, findable by
    ``inspect`` as a notebook cell's is."""
    return subject_from(key, source, "wrong solution")


def edit(key: str, old: str, new: str, *, source: str | None = None) -> str:
    """The shipped solution (or ``source``) with ``old`` replaced by ``new``; ``old`` must be
    there, so a change to the solutions cannot silently turn a wrong answer into a right one."""
    text = SOLUTIONS[key] if source is None else source
    assert old in text, f"{old!r} is not in the source of exercise {key}"
    return text.replace(old, new, 1)


@dataclass(frozen=True)
class Wrong:
    key: str
    mistake: str  # what the learner got wrong, as the lesson names it
    source: str
    scenario: str  # a part of the name of the scenario that must fail
    words: tuple[str, ...]  # what its feedback must say

    @property
    def id(self) -> str:
        return f"{self.key}: {self.mistake}"


COUNTER_FIELD_WRITE_THROUGH = '''
class MyCounter(DurableObject):
    def __init__(self, ctx, env):
        super().__init__(ctx, env)
        self.count = 0

    async def increment(self, by=1):
        self.count += by
        self.ctx.storage.put("n", self.count)     # written through: storage is right ...
        return self.count                          # ... until the constructor runs again

    async def value(self):
        return (await self.ctx.storage.get("n")) or 0
'''

LOCKED = '''
class LockedCounter(DurableObject):
    def __init__(self, ctx, env):
        super().__init__(ctx, env)
        self.lock = asyncio.Lock()

    async def increment(self, by=1):
        BODY

    async def value(self):
        return (await self.ctx.storage.get("n")) or 0
'''


def locked(body: str) -> str:
    return LOCKED.replace("BODY", textwrap.indent(textwrap.dedent(body).strip(), " " * 8).strip())


SEAT_IN_A_FIELD = '''
class Seat(DurableObject):
    def __init__(self, ctx, env):
        super().__init__(ctx, env)
        self.holder = None

    async def claim(self, user):
        if self.holder is not None:
            return False
        self.holder = user
        try:
            await self.env.PAYMENTS.getByName("bank").charge(user, 10)
        except Exception:
            self.holder = None
            raise
        return True

    async def owner(self):
        return self.holder
'''

SORTED_IN_PYTHON = '''rows = self.sql.exec("SELECT player, total FROM scores").toArray()
        return sorted(rows, key=lambda row: -row["total"])[:n]'''

TOP_OF_THE_SOLUTION = '''return self.sql.exec(
            "SELECT player, total FROM scores ORDER BY total DESC, player LIMIT ?", n).toArray()'''

WRONG = [
    # -- 00 · a counter that remembers ---------------------------------------------------------
    Wrong("00", "the count in a field (the starter)", STARTERS["00"],
          "survives an eviction", ("returned 0 instead of 2", "Fields like self.count")),
    Wrong("00", "a field written through to storage", COUNTER_FIELD_WRITE_THROUGH,
          "survives an eviction",
          ("next increment() returned 1 instead of 3", "started over at 0", "wrote that wrong "
           "count back")),
    Wrong("00", "a class attribute shared by every counter", '''
        class MyCounter(DurableObject):
            counts = {}
            async def increment(self, by=1):
                MyCounter.counts["n"] = MyCounter.counts.get("n", 0) + by
                return MyCounter.counts["n"]
            async def value(self):
                return MyCounter.counts.get("n", 0)
        ''', "each name is its own counter", ("share their count", "class attribute")),
    Wrong("00", "a timer between the read and the write",
          edit("00", 'self.ctx.storage.put("n", n + by)',
               'await durable_lab.sleep(0.01)\n        self.ctx.storage.put("n", n + by)'),
          "increments at once", ("lost", "an await on a timer")),
    # -- 01 · a counter without gates ----------------------------------------------------------
    Wrong("01", "no lock (the starter)", STARTERS["01"], "model='none'",
          ("asyncio.Lock()", "from the get to the put")),
    Wrong("01", "a lock made per call", '''
        class LockedCounter(DurableObject):
            async def increment(self, by=1):
                async with asyncio.Lock():
                    n = (await self.ctx.storage.get("n")) or 0
                    await self.ctx.storage.put("n", n + by)
                    return n + by
            async def value(self):
                return (await self.ctx.storage.get("n")) or 0
        ''', "model='none'", ("new lock for every call",)),
    Wrong("01", "a put not awaited inside the lock", locked('''
        async with self.lock:
            n = (await self.ctx.storage.get("n")) or 0
            self.ctx.storage.put("n", n + by)
            return n + by
        '''), "model='none'", ("storage taking 5 ms per write", "await the put inside it")),
    Wrong("01", "a timer instead of awaiting the put", locked('''
        async with self.lock:
            n = (await self.ctx.storage.get("n")) or 0
            self.ctx.storage.put("n", n + by)
            await durable_lab.sleep(0.1)        # "give the write time to land"
            return n + by
        '''), "model='none'", ("storage taking 2000 ms per write",
                               "wait for a timer instead of for the write")),
    Wrong("01", "the lock released before the put", locked('''
        async with self.lock:
            n = (await self.ctx.storage.get("n")) or 0
        await self.ctx.storage.put("n", n + by)
        return n + by
        '''), "model='none'", ("released before the put",)),
    Wrong("01", "the read before the lock is taken", locked('''
        n = (await self.ctx.storage.get("n")) or 0
        async with self.lock:
            await self.ctx.storage.put("n", n + by)
        return n + by
        '''), "model='none'", ("reads the count before it takes the lock",)),
    Wrong("01", "blockConcurrencyWhile, which has no gate to close here", '''
        class LockedCounter(DurableObject):
            async def increment(self, by=1):
                async def critical():
                    n = (await self.ctx.storage.get("n")) or 0
                    await self.ctx.storage.put("n", n + by)
                    return n + by
                return await self.ctx.blockConcurrencyWhile(critical)
            async def value(self):
                return (await self.ctx.storage.get("n")) or 0
        ''', "model='none'", ("no input gate to close",)),
    Wrong("01", "the count in a field (no await, so no race, but no storage)", '''
        class LockedCounter(DurableObject):
            def __init__(self, ctx, env):
                super().__init__(ctx, env)
                self.count = 0
            async def increment(self, by=1):
                self.count += by
                return self.count
            async def value(self):
                return self.count
        ''', "survives an eviction", ("[0, 1] instead of [2, 3]", "lives only in memory")),
    # -- 02 · one seat, one payment ------------------------------------------------------------
    Wrong("02", "read, pay, then write (the starter)", STARTERS["02"],
          "two claims at the same time", ("both ann and bob", "OPENS the input gate")),
    Wrong("02", "paying before looking at the seat", '''
        class Seat(DurableObject):
            async def claim(self, user):
                await self.env.PAYMENTS.getByName("bank").charge(user, 10)
                if await self.ctx.storage.get("owner") is not None:
                    return False
                self.ctx.storage.put("owner", user)
                return True
            async def owner(self):
                return await self.ctx.storage.get("owner")
        ''', "one claim", ("charge nobody", "before you pay")),
    Wrong("02", "checking again after the payment (too late)", '''
        class Seat(DurableObject):
            async def claim(self, user):
                if await self.ctx.storage.get("owner") is not None:
                    return False
                await self.env.PAYMENTS.getByName("bank").charge(user, 10)
                if await self.ctx.storage.get("owner") is not None:
                    return False                # read again: but bob has paid already
                self.ctx.storage.put("owner", user)
                return True
            async def owner(self):
                return await self.ctx.storage.get("owner")
        ''', "two claims at the same time",
          ("paid without getting the seat", "checking again after paying is too late")),
    Wrong("02", "reserving without undoing it when the payment fails",
          edit("02", 'self.ctx.storage.delete("owner")         # the payment failed: free the '
                     'seat again', "pass"),
          "the payment call fails", ("undo the reservation",)),
    Wrong("02", "the owner in a field", SEAT_IN_A_FIELD, "survives an eviction",
          ("bob's claim returned True", "fields are lost when the object is evicted")),
    # -- 03 · no false acknowledgments ---------------------------------------------------------
    Wrong("03", "allowUnconfirmed (the starter)", STARTERS["03"], "a commit fails",
          ("a false acknowledgment", "allowUnconfirmed=True lets the reply leave")),
    Wrong("03", "the balance in a field, written through", '''
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
        ''', "a commit fails", ("deposit(1) returned 1 instead of 11", "answered from a field")),
    Wrong("03", "a class attribute shared by every account", '''
        class Ledger(DurableObject):
            balances = {}
            async def deposit(self, amount):
                Ledger.balances["b"] = Ledger.balances.get("b", 0) + amount
                self.ctx.storage.put("balance", Ledger.balances["b"])
                return Ledger.balances["b"]
            async def balance(self):
                return (await self.ctx.storage.get("balance")) or 0
        ''', "deposits add up", ("share their balance", "class attribute")),
    Wrong("03", "an audit call between the read and the write",
          edit("03", 'self.ctx.storage.put("balance", balance + amount)',
               'await durable_lab.sleep(0.01)                 # "log it to the audit service"\n'
               '        self.ctx.storage.put("balance", balance + amount)'),
          "clients while 1 commit", ("cannot all be true", "await nothing but storage")),
    # -- 04 · n writes, one commit -------------------------------------------------------------
    Wrong("04", "sync() after every put (the starter)", STARTERS["04"], "one commit",
          ("took 50 commits", "await self.ctx.storage.sync()")),
    Wrong("04", "a sleep after every put",
          edit("04", "self.ctx.storage.put(key, value)   # all in one turn: one batch, one commit",
               "self.ctx.storage.put(key, value)\n            await durable_lab.sleep(0)"),
          "one commit", ("a sleep", "commits, each one all or nothing on its own")),
    Wrong("04", "sync() every tenth item", '''
        class Store(DurableObject):
            async def save_all(self, items):
                for i, (key, value) in enumerate(items.items()):
                    self.ctx.storage.put(key, value)
                    if i % 10 == 9:
                        await self.ctx.storage.sync()
                return len(items)
            async def load_all(self):
                return dict(await self.ctx.storage.list())
        ''', "never a mix", ("half-saved", "await self.ctx.storage.sync()")),
    # -- 05 · a batcher on an alarm ------------------------------------------------------------
    Wrong("05", "setAlarm() on every add (the starter)", STARTERS["05"], "steady trickle",
          ("setAlarm() replaces", "getAlarm() is None")),
    Wrong("05", "deleting the items before sending them",
          edit("05", "        self.ctx.storage.setAlarm(durable_lab.now() * 1000 + 10_000)    "
                     "# 10 s from now",
               "        if await self.ctx.storage.getAlarm() is None:\n"
               "            self.ctx.storage.setAlarm(durable_lab.now() * 1000 + 10_000)",
               source=STARTERS["05"]),
          "outbox is down", ("holds [] instead of ['a', 'b']",
                             "remove them only AFTER deliver() succeeded")),
    Wrong("05", "pending items in a field", '''
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
        ''', "survive an eviction", ("self.pending = []", "in storage")),
    Wrong("05", "deleting every pending item after the send", '''
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
        ''', "added while a batch is being sent", ("opens the input gate", "remove only the items "
                                                   "you sent")),
    # -- 06a · no head-of-line blocking --------------------------------------------------------
    Wrong("06a", "blockConcurrencyWhile around snapshot and upload (the starter)",
          STARTERS["06a"], "not stuck", ("did not answer until it was done",
                                                "inside blockConcurrencyWhile")),
    Wrong("06a", "blockConcurrencyWhile around the upload only", edit(
        "06a", "await self.env.EXPORTER.getByName(\"x\").upload(snapshot)   # slow: the gate "
               "is open",
        "await self.ctx.blockConcurrencyWhile(\n"
        "            lambda: self.env.EXPORTER.getByName(\"x\").upload(snapshot))"),
        "not stuck", ("inside blockConcurrencyWhile", "OUTSIDE any critical section")),
    Wrong("06a", "an asyncio.Lock held across the upload", '''
        class Profile(DurableObject):
            def __init__(self, ctx, env):
                super().__init__(ctx, env)
                self.lock = asyncio.Lock()
            async def update(self, field, value):
                async with self.lock:
                    self.ctx.storage.put(f"field:{field}", value)
            async def get(self):
                async with self.lock:
                    rows = await self.ctx.storage.list(prefix="field:")
                return {key.removeprefix("field:"): value for key, value in rows.items()}
            async def export(self):
                async with self.lock:
                    rows = await self.ctx.storage.list(prefix="field:")
                    snapshot = {k.removeprefix("field:"): v for k, v in rows.items()}
                    await self.env.EXPORTER.getByName("x").upload(snapshot)
                return "exported"
        ''', "not stuck", ("No blockConcurrencyWhile here", "an asyncio.Lock")),
    # -- 06b · shard by the unit of consistency ------------------------------------------------
    Wrong("06b", "one object for everything (the starter)", STARTERS["06b"],
          "spread over objects", ("went to 1 object(s)", "One object for everything")),
    Wrong("06b", "one object per user", '''
        def route(env, room, user):
            return env.ROOMS.getByName(user)
        ''', "sees the same messages", ("saw 1 message(s)", "route by the room")),
    Wrong("06b", "rooms hashed into three shards", '''
        def route(env, room, user):
            return env.ROOMS.getByName(f"shard-{sum(map(ord, room)) % 3}")
        ''', "spread over objects", ("went to 3 object(s)", "Fewer objects than rooms")),
    # -- 07 · a leaderboard in SQL -------------------------------------------------------------
    Wrong("07", "values pasted into SQL (the starter)", STARTERS["07"], "O'Brien",
          ("SqlError", "Pass values as bindings")),
    Wrong("07", "top(n) sorted and cut in Python", edit("07", TOP_OF_THE_SOLUTION,
                                                        SORTED_IN_PYTHON),
          "sorted and cut by SQL", ("ran `SELECT player, total FROM scores`", "handed it 5 rows",
                                    "the sorting and cutting happened in Python")),
    Wrong("07", "ORDER BY without LIMIT, cut in Python", edit(
        "07", TOP_OF_THE_SOLUTION,
        'return self.sql.exec("SELECT player, total FROM scores ORDER BY total DESC")'
        '.toArray()[:n]'),
          "sorted and cut by SQL", ("ORDER BY total DESC`, which handed it 5 rows",
                                    "Let SQL sort and cut")),
    Wrong("07", "no ORDER BY at all", edit("07", "ORDER BY total DESC, player ", ""),
          "sorted and cut by SQL", ("expected bob 9, eve 7, cat 5", "ORDER BY total DESC LIMIT ?")),
    Wrong("07", "CREATE TABLE without IF NOT EXISTS", edit("07", "IF NOT EXISTS ", ""),
          "survive an eviction", ("already exists", "CREATE TABLE IF NOT EXISTS")),
    # -- 08 · a chat room that hibernates ------------------------------------------------------
    Wrong("08", "sockets kept in a field (the starter)", STARTERS["08"], "after hibernation",
          ("ann received nothing", "broadcast to `self.ctx.getWebSockets()`")),
    Wrong("08", "names kept in a field", edit(
        "08", "line = f\"{ws.deserializeAttachment()['name']}: {message}\"",
        "line = f\"{self.__dict__.get('names', {}).get(ws, '?')}: {message}\"").replace(
        "server.serializeAttachment({\"name\": name})",
        "self.__dict__.setdefault(\"names\", {})[server] = name"),
          "after hibernation", ("the sender's name was lost", "serializeAttachment")),
    Wrong("08", "the history kept in a field", edit(
        "08", '''        count = (await self.ctx.storage.get("count")) or 0
        self.ctx.storage.put("count", count + 1)
        self.ctx.storage.put(f"msg:{count:06}", line)
''', '''        self.__dict__.setdefault("lines", []).append(line)
''').replace('''        rows = await self.ctx.storage.list(prefix="msg:", reverse=True, limit=50)
        return list(reversed(list(rows.values())))''',
        '''        return self.__dict__.get("lines", [])'''),
          "history survives an eviction", ("returned [] instead of", "Store each line in "
                                           "storage")),
    Wrong("08", "line numbers counted in a field", edit(
        "08", '''        count = (await self.ctx.storage.get("count")) or 0
        self.ctx.storage.put("count", count + 1)
''', '''        count = self.__dict__.setdefault("count", 0)
        self.count = count + 1
'''), "history survives an eviction", ("'back again' overwrote the first line",
                                           "Keep the count in storage")),
    # -- 09 · the rate limiter -----------------------------------------------------------------
    Wrong("09", "a count in a field (the starter)", STARTERS["09"], "window slides",
          ("(expected True)", "The window slides")),
    Wrong("09", "a fixed window", '''
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
        ''', "window slides", ("fixed window",)),
    Wrong("09", "a timer between the read and the write", edit(
        "09", "allowed = len(recent) < self.LIMIT",
        "await durable_lab.sleep(0.01)\n        allowed = len(recent) < self.LIMIT"),
          "burst of concurrent calls", ("were allowed instead of 5", "opens the input gate")),
    Wrong("09", "allowUnconfirmed on the times", edit(
        "09", 'self.ctx.storage.put("times", recent)',
        'self.ctx.storage.put("times", recent, allowUnconfirmed=True)'),
          "every other commit fails", ("callers were told True", "allowUnconfirmed")),
    # -- 10 · place each room near its members -------------------------------------------------
    Wrong("10", "one object for the world (the starter)", STARTERS["10"], "within 50 ms",
          ("over the budget", "One object for everyone")),
    Wrong("10", "one object per room, no location hint", '''
        def route(env, room, user):
            return env.ROOMS.getByName(room)
        ''', "created by a traveller", ("FIRST message", "locationHint=home")),
    Wrong("10", "one object per region", '''
        def route(env, room, user):
            home = room.split("/")[0]
            return env.ROOMS.getByName(home, locationHint=home)
        ''', "spread over objects", ("10 rooms went to 5 object(s)", "the room is the shard key")),
    Wrong("10", "one object per user", '''
        def route(env, room, user):
            return env.ROOMS.getByName(user)
        ''', "sees the same messages", ("route by the room",)),
]


def feedback(result: CheckResult, scenario: str) -> str:
    matches = [f"{o.what}\n{o.hint}" for o in result.failures if scenario in o.name]
    assert matches, f"expected the scenario {scenario!r} to fail:\n{result}"
    return matches[0]


@pytest.mark.parametrize("wrong", WRONG, ids=[w.id for w in WRONG])
async def test_a_wrong_solution_fails_with_the_hint_that_names_its_mistake(wrong):
    result = await CHECKS[wrong.key](subject(wrong.key, wrong.source))
    assert not result.passed, f"{wrong.id} passed the check:\n{result}"
    text = feedback(result, wrong.scenario)
    for words in wrong.words:
        assert words in text, f"{wrong.id}: expected {words!r} in the feedback:\n{text}"


def test_every_exercise_has_at_least_three_wrong_solutions():
    mistakes: dict[str, set[str]] = {}
    for wrong in WRONG:
        mistakes.setdefault(wrong.key, set()).add(wrong.mistake)
    assert set(mistakes) == set(CHECKS)
    assert {key: len(m) for key, m in mistakes.items() if len(m) < 3} == {}


# -- right solutions that look like wrong ones ---------------------------------------------------

RIGHT = {
    "00: a field loaded from storage before any call": ("00", '''
        class MyCounter(DurableObject):
            def __init__(self, ctx, env):
                super().__init__(ctx, env)
                self.count = 0
                async def load():
                    self.count = (await ctx.storage.get("n")) or 0
                ctx.blockConcurrencyWhile(load)       # no call runs before the field is loaded
            async def increment(self, by=1):
                self.count += by
                self.ctx.storage.put("n", self.count)
                return self.count
            async def value(self):
                return self.count
        '''),
    "04: await put() (it does not end the turn)": ("04", edit(
        "04", "self.ctx.storage.put(key, value)   # all in one turn: one batch, one commit",
        "await self.ctx.storage.put(key, value)")),
    "06a: blockConcurrencyWhile around the snapshot only": ("06a", edit(
        "06a", "snapshot = await self.get()", "snapshot = await self.ctx.blockConcurrencyWhile("
        "self.get)")),
    "07: ORDER BY ... LIMIT without a tie-break": ("07", edit(
        "07", "ORDER BY total DESC, player LIMIT ?", "ORDER BY total DESC LIMIT ?")),
}


@pytest.mark.parametrize("name", sorted(RIGHT))
async def test_a_right_solution_that_looks_wrong_passes(name):
    key, source = RIGHT[name]
    result = await CHECKS[key](subject(key, source))
    assert result.passed, f"{name}:\n{result}"
