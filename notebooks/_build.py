"""Writes the lesson notebooks and their solutions from the text below.

Run ``python notebooks/_build.py`` (``--check`` only reports notebooks that are out of date).

The notebooks are committed without outputs; this script is their source. Each lesson is a
list of cells: ``md(...)`` for text, ``code(...)`` for code. ``STARTERS`` and ``SOLUTIONS``
hold each exercise's starter class (shipped in the lesson, deliberately wrong or incomplete) and
its solution (in ``notebooks/solutions/``); ``tests/test_exercises.py`` runs every check against
both, so the shipped solutions are known to pass and the starters known to fail.
"""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent

# Cells are plain tuples until they are written, so that tests can import STARTERS and
# SOLUTIONS from this file without nbformat installed.
Cell = tuple[str, str, tuple[str, ...]]


def md(text: str) -> Cell:
    return ("markdown", textwrap.dedent(text).strip(), ())


def code(text: str, *tags: str) -> Cell:
    return ("code", textwrap.dedent(text).strip(), tags)


# -- claims: every sentence about a panel is a test ---------------------------------------------
#
# Where the prose says what a panel or an output shows ("a rising row of dots", "the tags
# column", "MAILBOX (2)"), a ``claim(...)`` follows that text in the lesson list. A claim is not
# a cell of the learner's notebook: ``notebook()`` leaves it out. tests/test_lesson_claims.py
# runs each lesson headless with the claims put back in, each as a hidden code cell right where
# it stands, so it runs in the lesson's own kernel after the cells above it and before the cells
# below; a false claim fails the test with its sentence. The browser lesson test waits for the
# ``page`` text of the claims that have one (tests/browser/test_lessons_browser.py).


class Claim(tuple):  # a 3-tuple like a Cell, so code that unpacks cells still works
    """What a lesson says a panel or an output shows, and how to check it.

    ``says``: words of the lesson (of the three cells just above the claim), quoted exactly;
    ``check``: Python run in the lesson's kernel at that point; it asserts, with a message
    naming what the panel showed instead. Helpers from tests/claim_kit.py are in scope
    (``await settled(lab)``, ``text_of(panel)``, ``panel_of(lab, kind)``, ...);
    ``output``: a regular expression the output of the code cell just above must match;
    ``page``: (CSS selector, regular expression): in a real browser, an element matching the
    selector must show text matching the expression at some moment after that cell ran.
    """

    __slots__ = ()

    def __new__(cls, says: str, check: str, output: str, page: tuple[str, str] | None) -> Claim:
        return super().__new__(cls, ("claim", check, (says, output, page)))

    @property
    def says(self) -> str:
        return self[2][0]

    @property
    def check(self) -> str:
        return self[1]

    @property
    def output(self) -> str:
        return self[2][1]

    @property
    def page(self) -> tuple[str, str] | None:
        return self[2][2]


def claim(says: str, check: str = "", *, output: str = "",
          page: tuple[str, str] | None = None) -> Claim:
    """A claim of the lesson about a panel or an output (see ``Claim``)."""
    if not (check.strip() or output):
        raise ValueError(f"claim {says!r}: give a check, an output pattern or both")
    return Claim(" ".join(says.split()), textwrap.dedent(check).strip(), output, page)


SHOW = '''
from durable_lab.tour import describe

def show(events, *, only=None):
    """Print the events in plain words, one per line (gate bookkeeping left out)."""
    for e in events:
        line = describe(e)
        if line and (only is None or e.object in only):
            print(f"{e.object:<18} {line}")
'''

# ---------------------------------------------------------------------------------------------
# Starters (shipped in the lessons) and solutions (notebooks/solutions), per exercise.
# ---------------------------------------------------------------------------------------------

STARTERS: dict[str, str] = {}
SOLUTIONS: dict[str, str] = {}

STARTERS["00"] = '''
class MyCounter(DurableObject):
    def __init__(self, ctx, env):
        super().__init__(ctx, env)
        self.count = 0                      # <- lives in memory only

    async def increment(self, by=1):
        self.count += by
        return self.count

    async def value(self):
        return self.count
'''
SOLUTIONS["00"] = '''
class MyCounter(DurableObject):
    async def increment(self, by=1):
        n = (await self.ctx.storage.get("n")) or 0    # a read: the input gate stays closed
        self.ctx.storage.put("n", n + by)             # no await needed; committed after the turn
        return n + by                                 # the reply waits for that commit

    async def value(self):
        return (await self.ctx.storage.get("n")) or 0
'''

STARTERS["01"] = '''
class LockedCounter(DurableObject):
    async def increment(self, by=1):
        n = (await self.ctx.storage.get("n")) or 0
        await self.ctx.storage.put("n", n + by)
        return n + by

    async def value(self):
        return (await self.ctx.storage.get("n")) or 0
'''
SOLUTIONS["01"] = '''
class LockedCounter(DurableObject):
    def __init__(self, ctx, env):
        super().__init__(ctx, env)
        self.lock = asyncio.Lock()      # one lock per object: every call for this id comes here

    async def increment(self, by=1):
        async with self.lock:           # what the input gate does for you under model="gates"
            n = (await self.ctx.storage.get("n")) or 0
            await self.ctx.storage.put("n", n + by)   # without gates, wait for the write
            return n + by

    async def value(self):
        return (await self.ctx.storage.get("n")) or 0
'''

STARTERS["02"] = '''
class Seat(DurableObject):
    async def claim(self, user):
        owner = await self.ctx.storage.get("owner")
        if owner is not None:
            return False
        # Awaiting another object: the input gate opens.
        await self.env.PAYMENTS.getByName("bank").charge(user, 10)
        self.ctx.storage.put("owner", user)
        return True

    async def owner(self):
        return await self.ctx.storage.get("owner")
'''
SOLUTIONS["02"] = '''
class Seat(DurableObject):
    async def claim(self, user):
        if await self.ctx.storage.get("owner") is not None:
            return False
        self.ctx.storage.put("owner", user)          # reserve first: read and write in one turn
        try:
            await self.env.PAYMENTS.getByName("bank").charge(user, 10)
        except Exception:
            self.ctx.storage.delete("owner")         # the payment failed: free the seat again
            raise
        return True

    async def owner(self):
        return await self.ctx.storage.get("owner")
'''

STARTERS["03"] = '''
class Ledger(DurableObject):
    async def deposit(self, amount):
        balance = (await self.ctx.storage.get("balance")) or 0
        # "allowUnconfirmed makes it faster" -- but what does the caller hear if the commit fails?
        self.ctx.storage.put("balance", balance + amount, allowUnconfirmed=True)
        return balance + amount

    async def balance(self):
        return (await self.ctx.storage.get("balance")) or 0
'''
SOLUTIONS["03"] = '''
class Ledger(DurableObject):
    async def deposit(self, amount):
        balance = (await self.ctx.storage.get("balance")) or 0
        self.ctx.storage.put("balance", balance + amount)   # confirmed: the reply waits for it
        return balance + amount

    async def balance(self):
        return (await self.ctx.storage.get("balance")) or 0
'''

STARTERS["04"] = '''
class Store(DurableObject):
    async def save_all(self, items):
        for key, value in items.items():
            self.ctx.storage.put(key, value)
            await self.ctx.storage.sync()      # "make sure each one is saved"
        return len(items)

    async def load_all(self):
        return dict(await self.ctx.storage.list())
'''
SOLUTIONS["04"] = '''
class Store(DurableObject):
    async def save_all(self, items):
        for key, value in items.items():
            self.ctx.storage.put(key, value)   # all in one turn: one batch, one commit
        return len(items)                      # the reply waits for that commit

    async def load_all(self):
        return dict(await self.ctx.storage.list())
'''

STARTERS["05"] = '''
class Batcher(DurableObject):
    async def add(self, item):
        pending = (await self.ctx.storage.get("pending")) or []
        pending.append(item)
        self.ctx.storage.put("pending", pending)
        self.ctx.storage.setAlarm(durable_lab.now() * 1000 + 10_000)    # 10 s from now
        return len(pending)

    async def alarm(self, alarm_info):
        pending = (await self.ctx.storage.get("pending")) or []
        if not pending:
            return
        self.ctx.storage.delete("pending")
        await self.env.OUTBOX.getByName("outbox").deliver(pending)
'''
SOLUTIONS["05"] = '''
class Batcher(DurableObject):
    async def add(self, item):
        seq = (await self.ctx.storage.get("seq")) or 0
        self.ctx.storage.put("seq", seq + 1)
        self.ctx.storage.put(f"item:{seq:06}", item)           # one key per item
        if await self.ctx.storage.getAlarm() is None:          # ONE alarm: set it only once
            self.ctx.storage.setAlarm(durable_lab.now() * 1000 + 10_000)
        return seq + 1

    async def alarm(self, alarm_info):
        inflight = await self.ctx.storage.get("inflight")
        if inflight is None:                                   # a new batch (not a retry)
            items = await self.ctx.storage.list(prefix="item:", limit=100)
            if not items:
                return
            batch = (await self.ctx.storage.get("batch")) or 1
            inflight = {"id": batch, "keys": list(items), "items": list(items.values())}
            self.ctx.storage.put("inflight", inflight)         # stored before the send
            self.ctx.storage.put("batch", batch + 1)
        # The same batch_id on a retry: the outbox drops the duplicate (idempotent send).
        await self.env.OUTBOX.getByName("outbox").deliver(inflight["items"],
                                                          batch_id=inflight["id"])
        self.ctx.storage.delete(inflight["keys"])              # only what was sent
        self.ctx.storage.delete("inflight")
        rest = await self.ctx.storage.list(prefix="item:", limit=1)
        if rest and await self.ctx.storage.getAlarm() is None:  # items added during the send
            self.ctx.storage.setAlarm(durable_lab.now() * 1000 + 10_000)
'''

STARTERS["06a"] = '''
class Profile(DurableObject):
    async def update(self, field, value):
        self.ctx.storage.put(f"field:{field}", value)

    async def get(self):
        rows = await self.ctx.storage.list(prefix="field:")
        return {key.removeprefix("field:"): value for key, value in rows.items()}

    async def export(self):
        async def snapshot_and_upload():        # "keep everyone out while we export, to be safe"
            snapshot = await self.get()
            await self.env.EXPORTER.getByName("x").upload(snapshot)
        await self.ctx.blockConcurrencyWhile(snapshot_and_upload)
        return "exported"
'''
SOLUTIONS["06a"] = '''
class Profile(DurableObject):
    async def update(self, field, value):
        self.ctx.storage.put(f"field:{field}", value)

    async def get(self):
        rows = await self.ctx.storage.list(prefix="field:")
        return {key.removeprefix("field:"): value for key, value in rows.items()}

    async def export(self):
        snapshot = await self.get()          # one read: a consistent snapshot, gate closed
        await self.env.EXPORTER.getByName("x").upload(snapshot)   # slow: the gate is open
        return "exported"
'''

STARTERS["06b"] = '''
def route(env, room, user):
    return env.ROOMS.getByName("global")     # one object for the whole chat service
'''
SOLUTIONS["06b"] = '''
def route(env, room, user):
    return env.ROOMS.getByName(room)         # one object per room: the unit of consistency
'''

STARTERS["07"] = '''
class Leaderboard(DurableObject):
    def __init__(self, ctx, env):
        super().__init__(ctx, env)
        self.sql = ctx.storage.sql
        self.sql.exec("CREATE TABLE IF NOT EXISTS scores(player TEXT PRIMARY KEY, total INTEGER)")

    async def add_score(self, player, points):
        rows = self.sql.exec(f"SELECT total FROM scores WHERE player = '{player}'").toArray()
        total = (rows[0]["total"] if rows else 0) + points
        self.sql.exec(f"INSERT OR REPLACE INTO scores VALUES ('{player}', {total})")
        return total

    async def top(self, n):
        rows = self.sql.exec("SELECT player, total FROM scores").toArray()
        return rows[:n]
'''
SOLUTIONS["07"] = '''
class Leaderboard(DurableObject):
    def __init__(self, ctx, env):
        super().__init__(ctx, env)
        self.sql = ctx.storage.sql
        self.sql.exec("CREATE TABLE IF NOT EXISTS scores(player TEXT PRIMARY KEY, total INTEGER)")

    async def add_score(self, player, points):
        self.sql.exec(
            "INSERT INTO scores(player, total) VALUES (?, ?) "
            "ON CONFLICT(player) DO UPDATE SET total = total + excluded.total",
            player, points)
        return self.sql.exec("SELECT total FROM scores WHERE player = ?", player).one().total

    async def top(self, n):
        return self.sql.exec(
            "SELECT player, total FROM scores ORDER BY total DESC, player LIMIT ?", n).toArray()
'''

STARTERS["08"] = '''
class ChatRoom(DurableObject):
    def __init__(self, ctx, env):
        super().__init__(ctx, env)
        self.sockets = []          # <- who is in the room, kept in memory
        self.names = {}

    async def fetch(self, request):
        name = parse_qs(urlparse(request.url).query).get("name", ["anon"])[0]
        client, server = WebSocketPair()
        self.ctx.acceptWebSocket(server)
        self.sockets.append(server)
        self.names[server] = name
        return Response(None, status=101, web_socket=client)

    async def webSocketMessage(self, ws, message):
        line = f"{self.names.get(ws, '?')}: {message}"
        for other in self.sockets:
            other.send(line)

    async def history(self):
        return []
'''
SOLUTIONS["08"] = '''
class ChatRoom(DurableObject):
    async def fetch(self, request):
        name = parse_qs(urlparse(request.url).query).get("name", ["anon"])[0]
        client, server = WebSocketPair()
        self.ctx.acceptWebSocket(server)
        server.serializeAttachment({"name": name})       # survives hibernation with the socket
        return Response(None, status=101, web_socket=client)

    async def webSocketMessage(self, ws, message):
        line = f"{ws.deserializeAttachment()['name']}: {message}"
        count = (await self.ctx.storage.get("count")) or 0
        self.ctx.storage.put("count", count + 1)
        self.ctx.storage.put(f"msg:{count:06}", line)
        for other in self.ctx.getWebSockets():          # the runtime keeps the sockets
            other.send(line)                             # held until the line is committed

    async def history(self):
        rows = await self.ctx.storage.list(prefix="msg:", reverse=True, limit=50)
        return list(reversed(list(rows.values())))
'''

STARTERS["09"] = '''
class RateLimiter(DurableObject):
    LIMIT = 5          # calls ...
    WINDOW = 60        # ... per sliding 60 seconds

    def __init__(self, ctx, env):
        super().__init__(ctx, env)
        self.calls = 0

    async def allow(self):
        self.calls += 1
        return self.calls <= self.LIMIT
'''
SOLUTIONS["09"] = '''
class RateLimiter(DurableObject):
    LIMIT = 5
    WINDOW = 60

    async def allow(self):
        now = durable_lab.now()                          # lab time (on Cloudflare: time.time())
        times = (await self.ctx.storage.get("times")) or []
        recent = [t for t in times if t > now - self.WINDOW]   # drop what left the window
        allowed = len(recent) < self.LIMIT
        if allowed:
            recent.append(now)
        if recent != times:
            self.ctx.storage.put("times", recent)        # confirmed: True is durable when sent
        return allowed
'''

STARTERS["10"] = '''
def route(env, room, user):
    return env.ROOMS.getByName("global")     # one chat object for the whole world
'''
SOLUTIONS["10"] = '''
def route(env, room, user):
    home = room.split("/")[0]                # rooms are named "<home region>/<topic>"
    # Shard key: the room (the unit of consistency). Location: its home region, whoever
    # creates it. Only the call that creates the object reads the hint; passing it on every
    # call costs nothing and means no traveller can place the room far from its members.
    return env.ROOMS.getByName(room, locationHint=home)
'''

CHECK_OF = {"00": "check_counter", "01": "check_locked_counter", "02": "check_seat",
            "03": "check_ledger", "04": "check_bulk_save", "05": "check_batcher",
            "06a": "check_profile", "06b": "check_router", "07": "check_leaderboard",
            "08": "check_chat_room", "09": "check_rate_limiter", "10": "check_placement"}
SUBJECT_OF = {"00": "MyCounter", "01": "LockedCounter", "02": "Seat", "03": "Ledger",
              "04": "Store", "05": "Batcher", "06a": "Profile", "06b": "route",
              "07": "Leaderboard", "08": "ChatRoom", "09": "RateLimiter", "10": "route"}
IMPORTS = '''
import asyncio
from urllib.parse import parse_qs, urlparse

import durable_lab
from durable_lab import DurableObject, Lab, Response, WebSocketPair
'''


#: The first cell of a lesson: the imports, and the live panels (widgets/, docs/panels.md).
LESSON_IMPORTS = IMPORTS + """import widgets                        # the live panels: docs/panels.md
"""


def exercise_cells(key: str, intro: str) -> list[Cell]:
    """The exercise block of a lesson: the task, the starter class, the check."""
    return [
        md(intro),
        code(STARTERS[key].strip() + f"\n\n\nfrom durable_lab.exercises import {CHECK_OF[key]}\n"
             f"await {CHECK_OF[key]}({SUBJECT_OF[key]})"),
    ]

# ---------------------------------------------------------------------------------------------
# 00 · the five-minute tour
# ---------------------------------------------------------------------------------------------

L00 = [
    md("""
    # 00 · A five-minute tour of Durable Objects

    **Covers:** what a Durable Object is (one instance per id, its own storage), the input gate,
    write coalescing and the output gate, each shown on a counter.
    **You will be able to:** write a Durable Object class, call it through a stub, and read
    the runtime's event timeline to see what it did.
    **Scenario:** a page-view counter, in an in-memory lab (`Lab(storage="memory", seed=1)`),
    so every run prints the same timeline.

    Each section asks you to **predict** first. Write your guess down (or say it out loud),
    then run the cell.
    """),
    code(IMPORTS + SHOW),
    md("""
    ## A Durable Object is a class, and every name gets exactly one instance

    `lab.bind("COUNTER", Counter)` makes a *binding* (on Cloudflare: `env.COUNTER`).
    `getByName("page-1")` gives a *stub*: a handle on the one object called `page-1`. Calls
    through the stub are messages to that object; it runs them one at a time, with its own
    storage.
    """),
    code('''
    class Counter(DurableObject):
        async def increment(self, by=1):
            n = (await self.ctx.storage.get("n")) or 0
            self.ctx.storage.put("n", n + by)
            return n + by

        async def value(self):
            return (await self.ctx.storage.get("n")) or 0


    lab = Lab(storage="memory", seed=1)
    COUNTER = lab.bind("COUNTER", Counter)
    page = COUNTER.getByName("page-1")
    print(await page.increment(), await page.increment(), await page.value())
    '''),
    md("""
    ## 1. Two increments at the same time

    **Predict:** two clients call `increment()` at the same moment. Each reads `n`, then writes
    `n + 1`. What do they get back: `[1, 1]` or `[1, 2]`?
    """),
    code('''
    page2 = COUNTER.getByName("page-2")          # a fresh counter: its first read goes to storage
    rec = lab.record()
    print(await asyncio.gather(page2.increment(), page2.increment()))
    rec.close()
    show(rec.events)
    '''),
    md("""
    `[1, 2]`: no update is lost. Look for *"awaits storage: gate
    stays CLOSED"*: while the first call waits for its read, the **input gate** keeps the second
    out, so read and write of one call are never split by another call.
    """),
    claim("awaits storage: gate stays CLOSED",
          output=r"^\[1, 2\]\n[\s\S]*call \d+ awaits storage: gate stays CLOSED"),
    md("""
    ## 2. A timer between read and write

    **Predict:** the same counter, but it waits 10 ms (lab time) between the read and the write,
    as code that calls an API would. Two calls at once: `[1, 2]` again?
    """),
    code('''
    class SlowCounter(Counter):
        async def increment(self, by=1):
            n = (await self.ctx.storage.get("n")) or 0
            await durable_lab.sleep(0.01)    # a non-storage await: a timer, a fetch, an object
            self.ctx.storage.put("n", n + by)
            return n + by


    slow = lab.bind("SLOW", SlowCounter).getByName("page-1")
    rec = lab.record()
    print(await asyncio.gather(slow.increment(), slow.increment()))
    rec.close()
    show(rec.events)
    print("value:", await slow.value())
    '''),
    md("""
    `[1, 1]`: one increment is **lost**. *"awaits io: gate OPENS"*: awaiting anything that is
    not storage lets the next call in. "Single-threaded" does not mean "no races". Lesson 02 is
    all about this.
    """),
    claim("awaits io: gate OPENS", output=r"\[1, 1\][\s\S]*awaits io: gate OPENS[\s\S]*value: 1"),
    md("""
    ## 3. A hundred writes in one call

    **Predict:** a call does 100 `put()`s in a loop, each one awaited. How many commits
    (transactions) reach storage: 100, or fewer?
    """),
    code('''
    class Bulk(DurableObject):
        async def write_many(self, count):
            for i in range(count):
                await self.ctx.storage.put(f"item:{i}", i)
            return count


    bulk = lab.bind("BULK", Bulk).getByName("b")
    rec = lab.record()
    await bulk.write_many(100)
    rec.close()
    print("commits:", sum(e.kind == "CommitDone" for e in rec.events))
    '''),
    md("""
    **One.** Writes made in the same turn are *coalesced* into one atomic batch; `await put()`
    does not even end the turn. Lesson 04 measures what that saves.
    """),
    claim("**One.**", output=r"(?m)^commits: 1$"),
    md("""
    ## 4. A commit that fails

    **Predict:** we make the next commit of `page-1` fail, then call `increment()`. Does the
    caller get a number back (the write "happened"), or an error?
    """),
    code('''
    lab.faults.fail_next_commit(page)
    rec = lab.record()
    try:
        print("reply:", await page.increment())
    except Exception as exc:
        print("the caller got an error:", exc)
    rec.close()
    show(rec.events)
    fresh = COUNTER.getByName("page-1")          # the old stub is broken after a reset
    print("a new stub reads:", await fresh.value())
    '''),
    md("""
    The reply was **held** by the output gate until the commit, the commit failed, and the
    caller got an error instead of a false "done". The object restarted from what was committed.
    Lesson 03 is about this promise.
    """),
    claim("The reply was **held** by the output gate until the commit, the commit failed",
          output=r"^the caller got an error[\s\S]*reply to call \d+ HELD by the output gate"
                 r"[\s\S]*commit #\d+ FAILED[\s\S]*a new stub reads: 2"),
    md("""
    ## Optional: the panels

    If the course panels are installed (`pip install durable_lab[widgets]`), this shows a live
    dashboard of the lab: gates, queues, commits. Without them the cell just says so; everything
    in the lessons works without it. The next cell then sends a few seconds of traffic (four
    clients, mostly to one hot counter) so there is something to watch: mailbox chips, the gate
    opening and closing, batches flying to storage, replies held and released. Try **Pause** and
    **Step +1** while it runs.
    """),
    code('''
    try:
        import widgets
    except ImportError:
        print("The panels are not installed: the lessons print timelines instead.")
        widgets = None
    if widgets is not None and hasattr(widgets, "dashboard"):
        display(lab.dashboard(COUNTER.getByName("hot")))
    '''),
    code('''
    from durable_lab.workload import run_workload

    result = await run_workload(COUNTER, method="increment", clients=4, per_client=30, rate=10,
                                objects=3, names=["hot", "warm", "cold"], distribution="hot",
                                seed=1)
    print(result.summary())
    '''),
    claim("mailbox chips, the gate opening and closing, batches flying to storage, replies held "
          "and released", '''
    await settled(lab)
    board = panel_of(lab, "dashboard")
    lanes = column(board.timeline.gate_spans, "lane")
    for lane in ("input gate", "commit", "output gate"):
        assert lane in lanes, f"no {lane!r} span on the dashboard's timeline: {set(lanes)}"
    hot = board.object_view.state
    assert hot.label == "COUNTER:hot" and hot.finished >= 30 and hot.commits >= 1, hot
    assert "✓ ok" in text_of(board.object_view), text_of(board.object_view)[:300]
    ''', page=(".dl-releasedbox", r"✓ ok")),
    *exercise_cells("00", """
    ## Exercise 00 · a counter that remembers

    `MyCounter` below keeps its count in a field (`self.count`). Run the cell: the check runs
    your class through hidden scenarios (two names, an eviction and the increments after it,
    concurrent calls) and says what happens. Then fix the class so that every scenario passes:
    the count must live in `self.ctx.storage`, per object. (Writing a field through to storage
    is not enough: after an eviction the field starts over, and the check increments again.)
    """),
    md("""
    ---
    The lab stays open, so you can keep experimenting and its panels stay live. When you are
    done, `await lab.close()` closes it (every panel then says **LAB CLOSED**); restarting the
    kernel ends it too (each panel then says *Kernel restarted* and how to go on).
    """),
    md("""
    **Next:** [01 · ownership, ids and stubs](01_ownership_ids_stubs.ipynb): why one owner per
    id is the whole trick.
    """),
]
# ---------------------------------------------------------------------------------------------
# 01 · ownership, ids and stubs
# ---------------------------------------------------------------------------------------------

L01 = [
    md("""
    # 01 · Ownership, ids and stubs

    **Covers:** ids (`idFromName`, `newUniqueId`, `idFromString`), stubs, the one-owner rule,
    and what goes wrong without it: the same counter run "sync everywhere" (`model="none"`:
    a plain asyncio key-value client, no gates) loses updates, and the history checker
    (`durable_lab.check`) proves it.
    **You will be able to:** get a stub for an object, explain why all calls for one id reach
    one instance, and use `lost_updates` / `linearizable` to judge a run.
    **Scenario:** a counter hit by ten clients at once, in three memory labs with `seed=1`.
    """),
    code(LESSON_IMPORTS + '''
from durable_lab.check import linearizable, lost_updates


class Counter(DurableObject):
    async def increment(self, by=1):
        n = (await self.ctx.storage.get("n")) or 0
        await self.ctx.storage.put("n", n + by)
        return n + by

    async def value(self):
        return (await self.ctx.storage.get("n")) or 0
'''),
    md("""
    ## Ids: a name always means the same object

    **Predict:** `idFromName("room-1")` twice: the same id or two ids? And in a *second* lab?
    """),
    code('''
    lab = Lab(storage="memory", seed=1)
    COUNTER = lab.bind("COUNTER", Counter)
    a, b = COUNTER.idFromName("room-1"), COUNTER.idFromName("room-1")
    print(a == b, str(a)[:16], "...")

    other = Lab(storage="memory", seed=1)
    print("another lab, same name:", other.bind("COUNTER", Counter).idFromName("room-1") == a)
    await other.close()

    u = COUNTER.newUniqueId()
    print("a unique id has no name:", u.name, "| it prints as", len(str(u)), "hex digits")
    print("and parses back:", COUNTER.idFromString(str(u)) == u)
    '''),
    md("""
    Ids made from a name are derived from it (an HMAC, as in workerd), so every Worker anywhere
    computes the same id for `room-1` and reaches the same object.

    ## A stub does not start the object; the first call does

    **Predict:** after `COUNTER.get(id)` but before any call, is there a live instance?
    """),
    claim("every Worker anywhere computes the same id for `room-1`",
          output=r"^True [0-9a-f]{16} \.\.\.\nanother lab, same name: True\n"),
    code('''
    stub = COUNTER.get(a)
    print([(o.label, o.state) for o in await lab.objects()])
    await stub.increment()
    print([(o.label, o.state, o.incarnations) for o in await lab.objects()])
    '''),
    claim("A stub does not start the object; the first call does",
          output=r"^\[\('COUNTER:room-1', 'not started'\)\]\n\[\('COUNTER:room-1', 'idle', 1\)\]"),
    md("""
    ## See it: one cell per object

    The fleet view draws one cell per object the lab has seen, coloured by its queue.
    **Predict:** we call `room-2`, `room-3`, `room-1` and `room-2` again. How many cells?
    """),
    code('''
    fleet = widgets.fleet(lab)          # hover a cell: its queue, calls in flight, resets
    fleet
    '''),
    code('''
    for name in ("room-2", "room-3", "room-1", "room-2"):
        await COUNTER.getByName(name).increment()
    print([(o.label, o.incarnations) for o in await lab.objects()])
    '''),
    md("""
    Three cells, not four: every call for `room-2` reached the one instance of `room-2`, wherever
    the caller was. A name is the address of exactly one object.

    ## One object, several lives

    An instance is not the object: it can be dropped from memory (evicted) and a new one
    constructed on the next call, with the same id and the same storage. **Predict:** after an
    eviction, what does the object view's *incarnation* say, and what does the counter return?
    """),
    claim("Three cells, not four", '''
    await settled(lab)
    labels = sorted(column(fleet.source, "label"))
    assert labels == ["COUNTER:room-1", "COUNTER:room-2", "COUNTER:room-3"], labels
    assert "3 objects" in text_of(fleet), text_of(fleet)
    ''', page=(".dl-fleet", r"^3 objects")),
    code('''
    view = widgets.object_view(lab, stub)   # the object of room-1, large
    view
    '''),
    code('''
    await lab.evict(stub)                   # drop the instance from memory
    print("after eviction:", await stub.increment())   # a new instance, the same storage
    print([(o.label, o.incarnations) for o in await lab.objects() if o.name == "room-1"])
    '''),
    md("""
    Incarnation 2, and the count went on from storage: memory is a cache of the object, storage
    is the object. (Lesson 05 comes back to this.)
    """),
    claim("Incarnation 2, and the count went on from storage", '''
    await settled(lab)
    assert view.state.incarnation == 2, view.state
    assert "incarnation 2" in text_of(view), text_of(view)[:200]
    ''', output=r"after eviction: 3\b", page=(".dl-objectview", r"incarnation 2\b")),
    md("""
    ## Ten clients, one counter, three runtimes

    `Lab(model=...)` runs the *same class* under different rules:

    - `"gates"`: Cloudflare's (input gate, output gate, coalescing);
    - `"none"`: "sync everywhere": every `get` is a round trip to storage, every `put` its own
      commit, nothing keeps requests apart. This is what a fleet of stateless workers talking to
      a shared key-value store looks like;
    - `"serial"`: one request at a time, start to finish.

    **Predict:** ten `increment()` calls at once under each model. Where does the counter end?
    """),
    code('''
    for model in ("gates", "none", "serial"):
        run = Lab(storage="memory", seed=1, model=model, record=True)
        counter = run.bind("COUNTER", Counter).getByName("x")
        results = await asyncio.gather(*(counter.increment() for _ in range(10)))
        print(f"{model:>6}: replies {sorted(results)} -> value {await counter.value()}")
        await run.close()
    '''),
    md("""
    Without gates, most increments read the same old value and overwrite each other.

    ## The history checker

    `Lab(record=True)` keeps every client call; `lost_updates` finds increments that returned
    the same value, and `linearizable` asks: *could one copy of the counter, answering one call
    at a time, have given these answers?*
    """),
    claim("Without gates, most increments read the same old value and overwrite each other",
          output=r"gates: replies \[1, 2, 3, 4, 5, 6, 7, 8, 9, 10\] -> value 10\n"
                 r"\s*none: replies \[1, 1, 1, [^\]]*\] -> value [1-5]\n"
                 r"serial: replies \[1, 2, 3, 4, 5, 6, 7, 8, 9, 10\] -> value 10"),
    code('''
    run = Lab(storage="memory", seed=1, model="none", record=True)
    counter = run.bind("COUNTER", Counter).getByName("x")
    await asyncio.gather(*(counter.increment() for _ in range(10)))
    print(lost_updates(run.history()))
    print()
    print(linearizable(run.history()))
    await run.close()
    '''),
    code('''
    run = Lab(storage="memory", seed=1, model="gates", record=True)
    counter = run.bind("COUNTER", Counter).getByName("x")
    await asyncio.gather(*(counter.increment() for _ in range(10)))
    print(linearizable(run.history()))
    await run.close()
    '''),
    md("""
    **Why it works with gates:** every call for `x` reaches **one** instance, in one place, so
    that instance can decide the order. A stateless Worker fleet has no such place: the
    key-value store sees interleaved reads and writes from many machines.
    """),
    claim("**Why it works with gates:**", output=r"^Linearizable: all 10 calls"),
    *exercise_cells("01", """
    ## Exercise 01 · a counter without gates

    Make `LockedCounter` lose no update **even under `model="none"`**. There is no input gate
    there, so you have to build one: an `asyncio.Lock` per object, held from the read to the
    write. (This works only because all calls for one id reach one instance: the one-owner
    rule at work.) The check sends 10 increments at once on instant storage, then on slow
    storage (5 ms, then 2 s of lab time per write: only an awaited put is sure to have landed),
    and evicts the object once.
    """),
    md("""
    ---
    The lab stays open, so you can keep experimenting and its panels stay live. When you are
    done, `await lab.close()` closes it (every panel then says **LAB CLOSED**); restarting the
    kernel ends it too (each panel then says *Kernel restarted* and how to go on).
    """),
    md("**Next:** [02 · the input gate](02_input_gate.ipynb): what it blocks, and what not."),
]
# ---------------------------------------------------------------------------------------------
# 02 · the input gate
# ---------------------------------------------------------------------------------------------

L02 = [
    md("""
    # 02 · The input gate: what it blocks, and what it does not

    **Covers:** turns; storage reads keep the gate closed; awaits of timers and of other objects
    open it; you as the scheduler (`lab.pause()`, `lab.choices()`, `lab.choose(i)`);
    `blockConcurrencyWhile` and its cost.
    **You will be able to:** predict where another request can slip into your handler, find a
    schedule that breaks a handler, and fix it by ordering writes or with
    `blockConcurrencyWhile`.
    **Scenario:** counters and a one-seat ticket sale, on memory labs with a manual clock
    (`clock="manual"`): lab time moves only when we say so.
    """),
    code(LESSON_IMPORTS + SHOW + '''

class Counter(DurableObject):
    async def increment(self):
        n = (await self.ctx.storage.get("n")) or 0       # storage read: gate stays closed
        self.ctx.storage.put("n", n + 1)
        return n + 1

    async def increment_after_io(self):
        n = (await self.ctx.storage.get("n")) or 0
        await durable_lab.sleep(1)                       # a timer: the gate opens
        self.ctx.storage.put("n", n + 1)
        return n + 1

    async def value(self):
        return (await self.ctx.storage.get("n")) or 0
'''),
    md("""
    ## Be the scheduler

    `lab.pause()` stops the runtime before every *transition* (a call admitted by the gate, a
    continuation resuming, a flush, a commit, a reply). `lab.choices()` lists the ones the gates
    allow **now**; `await lab.choose(i)` takes one.

    **Predict:** two `increment()` calls are queued on a paused lab. After the constructor runs,
    how many calls may the gate admit? And once you admit one, can you squeeze the other in
    between its read and its write?
    """),
    code('''
    lab = Lab(storage="memory", seed=1, clock="manual")
    COUNTER = lab.bind("COUNTER", Counter)
    stub = COUNTER.getByName("a")

    lab.pause()
    board = widgets.watch(lab, stub, scheduler=True)
    calls = [asyncio.ensure_future(stub.increment()) for _ in range(2)]
    await lab.step()                    # the constructor
    board
    '''),
    md("""
    The panel on the right lists what `lab.choices()` returns: the transitions the gates allow
    **now**, one button each. **Click `1: admit delivery 2 ...`** to admit the second call first
    (or run the next cell, which does the same from code), and watch the object view and the
    timeline: the *input gate* lane turns red while the call runs. Before you click, the object
    view shows both calls waiting in its *Mailbox (2)*, the gate OPEN, the running turn idle.
    """),
    claim("the object view shows both calls waiting in its *Mailbox (2)*, the gate OPEN", '''
    await settled(lab)
    shown = text_of(board.object_view)
    assert "Mailbox (2)" in shown, shown[:300]
    state = board.object_view.state
    assert state.gate_open and state.running is None, shown[:300]
    ''', page=(".dl-objectview[data-object='COUNTER:a'] .dl-mailbox",
               r"(?:MAILBOX|Mailbox) \(2\)")),
    claim("one button each", '''
    await settled(lab)
    labels = [b.description for b in board.scheduler.buttons.children]
    assert len(labels) == len(lab.choices()) >= 2, (labels, lab.choices())
    assert labels[1].startswith("1: admit delivery 2"), labels
    '''),
    code('''
    options = lab.choices()
    if len(options) > 1 and options[1].kind == "admit":
        await lab.choose(1)             # what clicking button 1 does: admit the second call
    print(lab.choices())
    '''),
    md("""
    The second call ran its whole read-then-write in one go: while its read was in flight the
    gate offered **nobody** else. Take the remaining steps in any order you like, by clicking or
    with the next cell; the answer is always `[1, 2]` in some order.
    """),
    claim("The second call ran its whole read-then-write in one go", '''
    await settled(lab)
    tl = board.timeline
    labels = column(tl.gate_spans, "label") + column(tl.open_gate_spans, "label")
    lanes = column(tl.gate_spans, "lane") + column(tl.open_gate_spans, "lane")
    assert ("input gate", "#2") in set(zip(lanes, labels)), list(zip(lanes, labels))
    ''', output=r"^\[\[0\] admit delivery 1 at COUNTER:a, \[1\] start the flush of COUNTER:a"),
    code('''
    while not all(c.done() for c in calls):
        options = lab.choices()
        print("taking", options[-1])
        await lab.choose(len(options) - 1)    # always the newest option: try 0 instead
    lab.resume()
    print([c.result() for c in calls])
    '''),
    claim("the answer is always `[1, 2]` in some order", output=r"(?m)^\[(1, 2|2, 1)\]$"),
    md("""
    ## Now with a timer between read and write

    **Predict:** the same game with `increment_after_io()`, which awaits `durable_lab.sleep(1)`
    between its read and its write. Can you make both calls return 1?
    """),
    code('''
    other = COUNTER.getByName("b")
    board.select(other)                       # the panel above follows b now
    lab.pause()
    calls = [asyncio.ensure_future(other.increment_after_io()) for _ in range(2)]
    await lab.step()                          # constructor
    await lab.choose(0)                       # call 1 reads 0, then sleeps: the gate opens
    print(lab.choices())                      # call 2 may be admitted now (deliveries are
                                              # numbered across the whole lab)
    await lab.choose(0)                       # call 2 reads 0 too, then sleeps
    lab.clock.advance(1)                      # both timers fire
    lab.resume()
    print(await asyncio.gather(*calls), "value:", await other.value())
    '''),
    md("""
    Both returned 1: a lost update, produced on purpose (on the timeline above: two *awaiting io*
    lanes side by side while the gate lane is empty). The gate holds only while the object
    waits for **its own storage**; a timer, a `fetch`, a call to another object or
    `storage.sync()` all let the next request in.

    ## Watch the gate close, in slow motion

    At full speed a whole call takes a few microseconds: no screen can show the gate closed.
    `watch(..., speed=3)` puts the lab in slow motion: three transitions a second, and the
    events of each played back one at a time.

    **Predict:** three increments arrive at once. While one of them runs, is the gate open or
    closed? Where do the other two wait?
    """),
    claim("two *awaiting io* lanes side by side while the gate lane is empty", '''
    await settled(lab)
    seg = board.timeline.segments.data
    io = [(l, r) for k, l, r in zip(seg["kind"], seg["left"], seg["right"]) if k == "awaiting io"]
    assert len(io) == 2 and max(l for l, _ in io) < min(r for _, r in io), io
    both = (max(l for l, _ in io), min(r for _, r in io))
    gates = board.timeline.gate_spans.data
    closed = [(l, r) for lane, l, r in zip(gates["lane"], gates["left"], gates["right"])
              if lane == "input gate"]
    free = [x + 0.5 for x in range(int(both[0]), int(both[1]))
            if not any(l <= x + 0.5 <= r for l, r in closed)]
    assert free, f"the input gate lane is closed all the time both wait {both}: {closed}"
    ''', output=r"(?m)^\[1, 1\] value: 1$"),
    code('''
    slow = Lab(storage="memory", seed=1)
    slow_counter = slow.bind("COUNTER", Counter).getByName("slow")
    slow_view = widgets.watch(slow, slow_counter, speed=3)   # Play/Pause/speed at the top
    slow_view
    '''),
    code('''
    print(await asyncio.gather(*(slow_counter.increment() for _ in range(3))))
    slow_view.full_speed()              # back to full speed
    '''),
    md("""
    Each call closed the gate (**CLOSED**, held by its delivery) from admission to its last line,
    storage read included, while the others waited in the mailbox. The red spans on the
    timeline's *input gate* lane stay after the run, one per call: hover them to see who held
    the gate. At full speed the same spans are drawn, just a few events wide.

    ## `blockConcurrencyWhile`: close the gate across any await

    **Predict:** wrapping read-sleep-write in `blockConcurrencyWhile` fixes the counter. What
    does it cost when 5 calls arrive at once and each sleeps 1 s (lab time)?
    """),
    claim("The red spans on the timeline's *input gate* lane stay after the run, one per call", '''
    await settled(slow)
    gates = slow_view.timeline.gate_spans.data
    held = [label for lane, label in zip(gates["lane"], gates["label"]) if lane == "input gate"]
    calls = sorted(label for label in held if label.startswith("#"))
    assert len(calls) == 3 and len(set(calls)) == 3, f"input-gate spans: {held}"
    holders = [d for lane, d in zip(gates["lane"], gates["detail"]) if lane == "input gate"]
    assert sum(d.startswith("closed by delivery") for d in holders) == 3, holders
    assert slow_view.object_view.state.finished == 3, slow_view.object_view.state
    ''', output=r"\[1, 2, 3\]",
          page=(".dl-objectview .dl-gatebox", r"CLOSED\s*held by delivery \d")),
    code('''
    class BlockingCounter(Counter):
        async def increment_after_io(self):
            async def critical():
                n = (await self.ctx.storage.get("n")) or 0
                await durable_lab.sleep(1)
                self.ctx.storage.put("n", n + 1)
                return n + 1
            return await self.ctx.blockConcurrencyWhile(critical)


    for cls in (Counter, BlockingCounter):
        timed = Lab(storage="memory", seed=1, clock="auto")     # auto: jumps to the next timer
        s = timed.bind("C", cls).getByName("x")
        start = timed.clock.now()
        results = await asyncio.gather(*(s.increment_after_io() for _ in range(5)))
        print(f"{cls.__name__:>15}: {sorted(results)}, value {await s.value()}, "
              f"took {timed.clock.now() - start:.0f} s of lab time")
        await timed.close()
    '''),
    md("""
    Correct, but five times slower: nothing else enters the object while the critical section
    waits. Usually the better fix is to **order your code**: do the read and the write in one
    turn (no non-storage await in between), and the slow I/O before or after.

    ## A real case: selling the last seat

    `Payments` is a ready-made object standing for a payment API; `charge()` takes 50 ms of lab
    time. **Predict:** ann and bob claim seat A1 at the same moment with the class below. Who
    gets it, and who pays?
    """),
    claim("Correct, but five times slower",
          output=r"Counter: \[1, 1, 1, 1, 1\], value 1, took 1 s[\s\S]*"
                 r"BlockingCounter: \[1, 2, 3, 4, 5\], value 5, took 5 s"),
    code('''
    from durable_lab.exercises import Payments

    class NaiveSeat(DurableObject):
        async def claim(self, user):
            if await self.ctx.storage.get("owner") is not None:
                return False
            await self.env.PAYMENTS.getByName("bank").charge(user, 10)
            self.ctx.storage.put("owner", user)
            return True

    shop = Lab(storage="memory", seed=1, clock="auto")
    shop.bind("PAYMENTS", Payments)
    seat = shop.bind("SEATS", NaiveSeat).getByName("A1")
    print(await asyncio.gather(seat.claim("ann"), seat.claim("bob")))
    print("charged:", await shop.env.PAYMENTS.getByName("bank").charges())
    await shop.close()
    '''),
    *exercise_cells("02", """
    ## Exercise 02 · one seat, one payment

    Fix `Seat` so that the seat is sold once and only the winner pays, whatever the schedule.
    The check also plays scheduler (25 random legal schedules of 3 claims), evicts the object
    after a sale, and makes the payment call fail once: a failed payment must leave the seat
    free for the next buyer.
    """),
    md("""
    ---
    The lab stays open, so you can keep experimenting and its panels stay live. When you are
    done, `await lab.close()` closes it (every panel then says **LAB CLOSED**); restarting the
    kernel ends it too (each panel then says *Kernel restarted* and how to go on).
    """),
    md("**Next:** [03 · the output gate](03_output_gate.ipynb): no false acknowledgments."),
]
# ---------------------------------------------------------------------------------------------
# 03 · the output gate
# ---------------------------------------------------------------------------------------------

L03 = [
    md("""
    # 03 · The output gate: no false acknowledgments

    **Covers:** replies held until the writes before them are committed; a failed commit turns
    the held reply into an error and resets the object; the naive model acknowledging writes it
    then loses; `allowUnconfirmed` and what it trades away.
    **You will be able to:** say when a caller hears "done", inject a storage failure with
    `lab.faults`, and decide when `allowUnconfirmed` is acceptable.
    **Scenario:** a bank account, on memory labs with `seed=1`.
    """),
    code(LESSON_IMPORTS + SHOW + '''

class Account(DurableObject):
    async def deposit(self, amount):
        balance = (await self.ctx.storage.get("balance")) or 0
        self.ctx.storage.put("balance", balance + amount)
        return balance + amount

    async def deposit_fast(self, amount):
        balance = (await self.ctx.storage.get("balance")) or 0
        self.ctx.storage.put("balance", balance + amount, allowUnconfirmed=True)
        return balance + amount

    async def balance(self):
        return (await self.ctx.storage.get("balance")) or 0
'''),
    md("""
    ## When does the caller hear "done"?

    **Predict:** the handler returns right after an un-awaited `put()`. Does the reply reach the
    caller before the commit, or after?
    """),
    code('''
    lab = Lab(storage="memory", seed=1, commit_latency=0.3)   # each commit takes 0.3 s
    ACCOUNTS = lab.bind("ACCOUNTS", Account)
    acct = ACCOUNTS.getByName("alice")
    view = widgets.watch(lab, "ACCOUNTS:alice")   # by label: it follows every instance
    view
    '''),
    code('''
    rec = lab.record()
    print(await acct.deposit(100))
    rec.close()
    show(rec.events)
    '''),
    md("""
    *finished → reply HELD → commit durable → reply released.* The handler was done before the
    commit, but the caller only hears about it once the write is durable. In the panel: the
    reply sat in *Replies held by the output gate* for the 0.3 s the commit took (the purple
    span on the *output gate* lane, over the blue *commit* span), then went out green.

    ## Break the storage

    **Predict:** we make the next commit fail and deposit 50. What does the caller get, and what
    is the balance afterwards?
    """),
    claim("*finished → reply HELD → commit durable → reply released.*",
          output=r"finished[\s\S]*reply to call \d+ HELD[\s\S]*commit #\d+ durable[\s\S]*"
                 r"reply to call \d+ released"),
    claim("the purple span on the *output gate* lane, over the blue *commit* span", '''
    await settled(lab)
    gates = view.timeline.gate_spans.data
    spans = {lane: (l, r) for lane, l, r in zip(gates["lane"], gates["left"], gates["right"])}
    assert "output gate" in spans and "commit" in spans, gates
    (hl, hr), (cl, cr) = spans["output gate"], spans["commit"]
    assert hl <= cl and hr >= cr, f"output gate {spans['output gate']}, commit {spans['commit']}"
    assert "✓ ok" in text_of(view.object_view), text_of(view.object_view)[:300]
    '''),
    code('''
    lab.faults.fail_next_commit(acct)
    rec = lab.record()
    try:
        print("reply:", await acct.deposit(50))
    except Exception as exc:
        print(f"the caller got {type(exc).__name__}: {exc}")
        print("durableObjectReset =", exc.durableObjectReset)
    rec.close()
    show(rec.events)
    '''),
    code('''
    try:
        await acct.balance()
    except Exception as exc:
        print("the old stub is broken:", exc)
    acct = ACCOUNTS.getByName("alice")            # a new stub reaches a fresh instance
    print("balance:", await acct.balance())
    '''),
    md("""
    No false "done": the held reply became an error (the red **✗ ERROR** chip under
    *Released*, and the red *batch FAILED* in *Storage*), the object reset to what was
    committed (100: the banner says how many writes were lost), and the stub that saw the
    reset is broken for good (make a new one). On the timeline, the failed commit is drawn in red
    on the *commit* lane.

    ## The same failure without gates

    **Predict:** the same class, the same failure, under `model="none"`.
    """),
    claim("the red **✗ ERROR** chip under *Released*, and the red *batch FAILED* in *Storage*", '''
    await settled(lab)
    shown = text_of(view.object_view)
    assert "✗ ERROR" in shown and "FAILED" in shown, shown[:400]
    ''', output=r"balance: 100", page=(".dl-releasedbox", r"✗ ERROR")),
    claim("the banner says how many writes were lost", r'''
    await settled(lab)
    import re
    banner = view.object_view.state.last_reset
    assert re.search(r"\b1 \w+ write\(s\) lost", banner), f"the banner says: {banner!r}"
    assert banner in text_of(view.object_view), text_of(view.object_view)[:300]
    ''', page=(".dl-objectview .dl-reset", r"\b1 \w+ write\(s\) lost")),
    claim("the failed commit is drawn in red on the *commit* lane", '''
    await settled(lab)
    gates = view.timeline.gate_spans.data
    commits = [f"{k} {d} {label}" for lane, k, d, label in zip(gates["lane"], gates["kind"],
                                                              gates["detail"], gates["label"])
               if lane == "commit"]
    assert any("fail" in c.lower() for c in commits), f"commit spans: {commits}"
    marks = view.timeline.markers.data
    assert False in list(marks["ok"]), marks
    '''),
    code('''
    naive = Lab(storage="memory", seed=1, model="none")
    n_acct = naive.bind("ACCOUNTS", Account).getByName("alice")
    await n_acct.deposit(100)
    naive.faults.fail_next_commit(n_acct)
    print("reply:", await n_acct.deposit(50))
    await naive.wait_idle()
    print("balance:", await n_acct.balance())
    await naive.close()
    '''),
    md("""
    The caller was told 150; storage says 100. That is a **false acknowledgment**, and the
    output gate exists to make it impossible.

    ## `allowUnconfirmed=True`: opting out

    **Predict:** `deposit_fast` passes `allowUnconfirmed=True`. With the same failure, what does
    the caller hear?
    """),
    claim("The caller was told 150; storage says 100", output=r"reply: 150\s+balance: 100"),
    code('''
    fast = ACCOUNTS.getByName("bob")
    await fast.deposit_fast(100)
    await lab.wait_idle()
    lab.faults.fail_next_commit(fast)
    print("reply:", await fast.deposit_fast(50))
    await lab.wait_idle()
    print("balance:", await ACCOUNTS.getByName("bob").balance())
    '''),
    md("""
    Fast, and wrong when storage fails: the object still resets, but the caller has already been
    told 150. Use it only for writes whose loss nobody acts on (a "last seen" timestamp, a
    cache), never for money, tickets or rate limits.
    """),
    claim("the caller has already been told 150", output=r"reply: 150\s+balance: 100"),
    *exercise_cells("03", """
    ## Exercise 03 · no false acknowledgments

    `Ledger` was "optimised" with `allowUnconfirmed`. The check fails a commit (and deposits
    again after it), then runs 40 deposits from 3 clients while 1 commit in 5 fails (over 2
    accounts), and asks the history checker whether the balances the clients were told can all
    be true. Fix it.
    """),
    md("""
    ---
    The lab stays open, so you can keep experimenting and its panels stay live. When you are
    done, `await lab.close()` closes it (every panel then says **LAB CLOSED**); restarting the
    kernel ends it too (each panel then says *Kernel restarted* and how to go on).
    """),
    md("**Next:** [04 · write coalescing](04_write_coalescing.ipynb): n writes, one commit."),
]

# ---------------------------------------------------------------------------------------------
# 04 · write coalescing
# ---------------------------------------------------------------------------------------------

L04 = [
    md("""
    # 04 · Write coalescing: n writes, one commit

    **Covers:** writes of one turn form one atomic batch; `await put()` does not end the turn;
    `sync()` does; what each commit costs (`Lab(commit_latency=...)`), measured with
    `lab.record()`.
    **You will be able to:** predict how many commits a handler makes, measure it, and write
    bulk updates that are atomic and fast.
    **Scenario:** a handler writing n keys, with each commit costing 5 ms of lab time
    (`commit_latency=0.005`, `clock="auto"`), so the numbers are the same on every machine.
    """),
    code(LESSON_IMPORTS + '''

class Writer(DurableObject):
    # Every call writes new values (call number 1, 2, 3, ...): a put() of the value a key
    # already holds changes nothing, so the cache drops it and it is never committed.
    def __init__(self, ctx, env):
        super().__init__(ctx, env)
        self.calls = 0

    def new_value(self):
        self.calls += 1
        return self.calls

    async def one_turn(self, n):
        v = self.new_value()
        for i in range(n):
            self.ctx.storage.put(f"k{i}", v)         # all in one turn
        return n

    async def awaited_puts(self, n):
        v = self.new_value()
        for i in range(n):
            await self.ctx.storage.put(f"k{i}", v)   # await put(): still the same turn
        return n

    async def sync_each(self, n):
        v = self.new_value()
        for i in range(n):
            self.ctx.storage.put(f"k{i}", v)
            await self.ctx.storage.sync()            # wait for the commit: ends the turn
        return n


async def measure(method, n):
    """Commits and lab-time latency of one call of Writer.<method>(n)."""
    lab = Lab(storage="memory", seed=1, clock="auto", commit_latency=0.005)
    stub = lab.bind("W", Writer).getByName("w")
    await stub.one_turn(0)                            # construct it first
    rec = lab.record()
    start = lab.clock.now()
    await getattr(stub, method)(n)
    elapsed = lab.clock.now() - start
    rec.close()
    commits = sum(e.kind == "CommitDone" for e in rec.events)
    await lab.close()
    return commits, elapsed
'''),
    md("""
    **Predict:** for n = 10, how many commits does each method make?
    `one_turn`: ___ `awaited_puts`: ___ `sync_each`: ___
    """),
    code('''
    for method in ("one_turn", "awaited_puts", "sync_each"):
        commits, elapsed = await measure(method, 10)
        print(f"{method:>13}: {commits:>2} commits, {elapsed * 1000:5.0f} ms")
    '''),
    md("""
    A `put()` changes the in-memory cache at once and returns an already-finished awaitable, so
    awaiting it does not end the turn. `sync()` waits for storage: the turn ends, the batch is
    committed, and the next write starts a new batch. (Each call writes new values, the number
    of the call: a `put()` of the value a key already holds changes nothing, and the cache drops
    it. Rewriting the same values would commit nothing at all.)

    ## Watch a batch form

    **Predict:** `one_turn(12)` on a lab whose commits take half a second, in slow motion. How
    many keys are pending at most? How many batches fly to storage? When does the reply go?
    """),
    claim("`sync()` waits for storage: the turn ends, the batch is committed, and the next "
          "write starts a new batch",
          output=r"one_turn:\s+1 commits[\s\S]*awaited_puts:\s+1 commits[\s\S]*"
                 r"sync_each:\s+10 commits"),
    code('''
    watched = Lab(storage="memory", seed=1, commit_latency=0.5)
    writer = watched.bind("W", Writer).getByName("w")
    batch_view = widgets.watch(watched, writer, storage=True, speed=3)
    batch_view
    '''),
    code('''
    print(await writer.one_turn(12))
    batch_view.full_speed()
    '''),
    md("""
    Twelve keys turned orange in *Pending writes* within one turn, left the cache together as
    **one** batch (blue, 12 keys), and the reply waited under the output gate until that batch
    landed. The storage inspector shows each key with its value and the batch it went in.

    ## Latency against n

    **Predict:** how does the latency of each method grow with n?
    """),
    claim("left the cache together as **one** batch (blue, 12 keys), and the reply waited under "
          "the output gate until that batch landed", '''
    await settled(watched)
    gates = batch_view.timeline.gate_spans.data
    spans = [(lane, l, r, d) for lane, l, r, d in zip(gates["lane"], gates["left"],
                                                      gates["right"], gates["detail"])]
    commits = [s for s in spans if s[0] == "commit"]
    assert len(commits) == 1 and ": 12 key(s)" in commits[0][3], commits
    held = [s for s in spans if s[0] == "output gate"]
    assert held and held[0][1] <= commits[0][1] and held[0][2] >= commits[0][2], (held, commits)
    state = batch_view.object_view.state
    assert state.last_batch is not None and state.last_batch[1:] == (12, True), state.last_batch
    '''),
    claim("The storage inspector shows each key with its value and the batch it went in", '''
    await settled(watched)
    rows = batch_view.storage.rows()
    assert sorted(k for k, _ in rows) == sorted(f"k{i}" for i in range(12)), rows
    assert len({ks.batch for _, ks in rows}) == 1 and rows[0][1].batch, rows
    shown = text_of(batch_view.storage)
    assert all(f"k{i} 1 committed batch" in shown for i in range(12)), shown
    ''', page=(".dl-storage-inspector", r"k11 1 committed batch \d")),
    code('''
    print(f"{'n':>5} | {'one_turn':>14} | {'sync_each':>16}")
    print("-" * 43)
    for n in (1, 10, 50, 100):
        c1, t1 = await measure("one_turn", n)
        c2, t2 = await measure("sync_each", n)
        print(f"{n:>5} | {c1:>3} commit {t1 * 1000:4.0f} ms | {c2:>3} commits {t2 * 1000:4.0f} ms")
    '''),
    md("""
    Flat against linear: the whole turn costs one commit. The metrics panel shows the same on a
    live lab: every dot is one call, latency against the writes it made.
    """),
    claim("Flat against linear", output=r"100 \|\s+1 commit\s+5 ms \|\s+100 commits\s+500 ms"),
    code('''
    live = Lab(storage="memory", seed=1, commit_latency=0.005)
    live_writer = live.bind("W", Writer).getByName("w")
    live_metrics = widgets.metrics(live)
    live_metrics
    '''),
    code('''
    for n in (1, 2, 5, 10, 20, 40):
        for _ in range(3):
            await live_writer.one_turn(n)       # the flat row of dots
            await live_writer.sync_each(n)      # the rising one: a commit per write
    '''),
    claim("the rising one: a commit per write", '''
    await settled(live)
    dots = live_metrics.latency.data
    points = list(zip(dots["method"], dots["writes"], dots["ms"]))
    assert len(points) == 36, f"{len(points)} dots for 36 calls"
    rising = {n: max(ms for m, w, ms in points if m == "sync_each" and w == n)
              for n in (1, 2, 5, 10, 20, 40)}
    flat = max(ms for m, w, ms in points if m == "one_turn")
    assert rising[40] > 2 * rising[5] > 2 * rising[1] and rising[40] >= 40 * 5, rising
    assert flat < rising[40] / 4, (flat, rising)
    assert "latency of 36 recent calls" in text_of(live_metrics), text_of(live_metrics)
    '''),
    md("""
    Two rows of dots: `one_turn` stays flat whatever n is, `sync_each` climbs by a commit per
    write. The batch-size histogram (log scale) shows both kinds of commits: many one-key
    commits from `sync_each` and a few big ones from `one_turn`.

    And the batch is **atomic**: either
    all n keys are stored or none, which `sync_each` gives up as well (a failure after key 3
    leaves a half-written state).

    **Predict:** does the *reply* of `one_turn` wait for the commit, even though the handler
    never awaited anything? (Lesson 03 says ...)
    """),
    claim("many one-key commits from `sync_each` and a few big ones from `one_turn`", '''
    await settled(live)
    bars = dict(zip(live_metrics.batches.data["bin"], live_metrics.batches.data["count"]))
    assert bars["1"] >= 3 * (1 + 2 + 5 + 10 + 20 + 40), bars
    assert bars["17-64"] == 6 and bars["9-16"] == 3, bars
    '''),
    code('''
    lab = Lab(storage="memory", seed=1, clock="auto", commit_latency=0.005)
    stub = lab.bind("W", Writer).getByName("w")
    rec = lab.record()
    await stub.one_turn(3)
    rec.close()
    print([e.kind for e in rec.events if e.kind in ("DeliveryFinished", "ReplyHeld",
                                                     "CommitDone", "ReplyReleased")])
    '''),
    claim("does the *reply* of `one_turn` wait for the commit",
          output=r"\['DeliveryFinished', 'ReplyHeld', 'CommitDone', 'ReplyReleased'\]"),
    *exercise_cells("04", """
    ## Exercise 04 · n writes, one commit

    `Store.save_all(items)` must store a whole dict atomically, in one commit. The starter
    "makes sure" each item is saved. Run the check, read what it measured, and fix it.
    """),
    md("""
    ---
    The lab stays open, so you can keep experimenting and its panels stay live. When you are
    done, `await lab.close()` closes it (every panel then says **LAB CLOSED**); restarting the
    kernel ends it too (each panel then says *Kernel restarted* and how to go on).
    """),
    md("**Next:** [05 · alarms and the object lifecycle](05_alarms_lifecycle.ipynb)."),
]
# ---------------------------------------------------------------------------------------------
# 05 · alarms and the object lifecycle
# ---------------------------------------------------------------------------------------------

L05 = [
    md("""
    # 05 · Alarms and the object lifecycle

    **Covers:** eviction (`lab.evict`, `Lab(idle_timeout=...)`): the constructor runs again and
    fields start over, storage stays; alarms (`setAlarm`, one per object, durable); retries with
    backoff when the handler fails (`lab.faults.fail_next_alarm`); at-least-once delivery.
    **You will be able to:** tell in-memory state from durable state, schedule work with an
    alarm, and write an alarm handler that is safe to run twice.
    **Scenario:** a session object and a reminder, on memory labs with a manual clock
    (`clock="manual"`, time moves with `lab.clock.advance(s)`) or an auto clock
    (`clock="auto"`: jumps to the next timer, so a minute of retries takes no time).
    """),
    code(LESSON_IMPORTS + SHOW),
    md("""
    ## Eviction: memory is a cache, storage is the truth

    Cloudflare evicts objects that have been idle for a while (70-140 s in production, 10 s in
    local workerd). **Predict:** `visit()` counts in a field *and* in storage. After an eviction,
    what do the two counts say?
    """),
    code('''
    class Session(DurableObject):
        def __init__(self, ctx, env):
            super().__init__(ctx, env)
            self.in_memory = 0
            print("  constructor runs")

        async def visit(self):
            self.in_memory += 1
            stored = (await self.ctx.storage.get("visits")) or 0
            self.ctx.storage.put("visits", stored + 1)
            return {"in_memory": self.in_memory, "stored": stored + 1}


    lab = Lab(storage="memory", seed=1, clock="manual", idle_timeout=10)
    session = lab.bind("SESSIONS", Session).getByName("ada")
    session_view = widgets.watch(lab, "SESSIONS:ada", storage=True)
    session_view
    '''),
    md("""
    The panel follows `SESSIONS:ada` across instances: its header shows the *incarnation* and
    whether an instance is live or evicted; the storage inspector shows what survives.
    """),
    code('''
    print(await session.visit())
    print(await session.visit())
    await lab.evict(session)
    print("-- evicted --")
    print(await session.visit())
    '''),
    claim("its header shows the *incarnation* and whether an instance is live or evicted; the "
          "storage inspector shows what survives", '''
    await settled(lab)
    state = session_view.object_view.state
    assert (state.incarnation, state.status) == (2, "live"), state
    assert "incarnation 2" in text_of(session_view.object_view), text_of(session_view)[:200]
    assert "visits 3 committed" in text_of(session_view.storage), text_of(session_view.storage)
    ''', output=r"-- evicted --\s+constructor runs\s+\{'in_memory': 1, 'stored': 3\}"),
    md("""
    **Predict:** with `idle_timeout=10`, does the object survive 5 s of silence? 15 s?
    """),
    code('''
    rec = lab.record()
    lab.clock.advance(5)
    await lab.wait_idle()
    print(await session.visit())
    lab.clock.advance(15)
    await lab.wait_idle()
    print(await session.visit())
    rec.close()
    print([e.reason for e in rec.events if e.kind == "InstanceEvicted"])
    print([(o.label, o.state, o.incarnations) for o in await lab.objects()])
    '''),
    md("""
    ## Alarms: one wake-up call per object

    `self.ctx.storage.setAlarm(ms)` asks the runtime to call `alarm(alarm_info)` at that time
    (epoch milliseconds; `durable_lab.now()` is the lab clock in seconds). The alarm is written
    like any other storage write: durable, committed with the turn.

    **Predict:** we set an alarm 30 s ahead, then evict the object. Does the alarm still fire?
    """),
    code('''
    class Reminder(DurableObject):
        async def remind_in(self, seconds, text):
            self.ctx.storage.put("text", text)
            self.ctx.storage.setAlarm(durable_lab.now() * 1000 + seconds * 1000)

        async def alarm(self, alarm_info):
            text = await self.ctx.storage.get("text")
            print(f"  t={durable_lab.now() - T0:5.1f}s  alarm! {text!r} "
                  f"(retryCount={alarm_info.retryCount})")
            self.ctx.storage.put("fired", True)


    T0 = lab.clock.now()
    reminder = lab.bind("REMINDERS", Reminder).getByName("ada")
    reminder_view = widgets.watch(lab, "REMINDERS:ada")   # watch the alarm arrive
    reminder_view
    '''),
    code('''
    await reminder.remind_in(30, "stand up")
    await lab.evict(reminder)
    for _ in range(4):
        lab.clock.advance(10)
        await lab.wait_idle()
        print(f"t={lab.clock.now() - T0:4.0f}s")
    '''),
    md("""
    It fired at t=30 s, on a fresh instance: in the panel, an `alarm` delivery arrived in the
    mailbox of incarnation 2 (the timeline lane of that delivery is labelled `alarm`). An object has **one** alarm: `setAlarm` again
    *replaces* it (remember that for the exercise).

    ## When the handler fails: retries

    **Predict:** the alarm handler throws twice. When does it run again, and how many times?
    """),
    claim("It fired at t=30 s, on a fresh instance: in the panel, an `alarm` delivery arrived "
          "in the mailbox of incarnation 2", '''
    await settled(lab)
    state = reminder_view.object_view.state
    assert state.incarnation == 2, state
    seg = reminder_view.timeline.segments.data
    alarms = {d for d, m in zip(seg["delivery"], seg["method"]) if m == "alarm"}
    assert len(alarms) == 1 and "queued" in {k for d, k in zip(seg["delivery"], seg["kind"])
                                             if d in alarms}, dict(seg)
    ''', output=r"(?m)^  t= 30\.0s  alarm! 'stand up' \(retryCount=0\)$",
          page=(".dl-objectview[data-object='REMINDERS:ada']", r"incarnation 2 · 2 answered")),
    claim("the timeline lane of that delivery is labelled `alarm`", '''
    await settled(lab)
    drawn = drawn_text(reminder_view.timeline)
    assert "alarm" in drawn, f"the timeline draws no 'alarm' label: {drawn[:300]}"
    '''),
    code('''
    auto = Lab(storage="memory", seed=1, clock="auto")
    T0 = auto.clock.now()
    r = auto.bind("REMINDERS", Reminder).getByName("bob")
    auto.faults.fail_next_alarm(r, times=2)
    rec = auto.record()
    await r.remind_in(0, "retry me")
    def alarm_runs():
        alarms = {e.delivery for e in rec.events
                  if e.kind == "DeliveryQueued" and e.kind_of_delivery == "alarm"}
        return [e for e in rec.events if e.kind == "DeliveryFinished" and e.delivery in alarms]

    for _ in range(100):                       # the auto clock skips ahead to each retry
        await asyncio.sleep(0.01)
        if any(run.ok for run in alarm_runs()):
            break
    rec.close()
    for run in alarm_runs():
        print(f"t={run.time - T0:5.2f}s  alarm handler "
              + ("succeeded" if run.ok else f"FAILED: {run.error}"))
    await auto.close()
    '''),
    md("""
    Retries back off: 2 s, then 4 s (plus up to 25 % jitter), up to 6 retries. Delivery is
    **at least once**: a handler can run again after its side effects already happened (a
    message sent, an email mailed). Handlers must be safe to repeat.
    """),
    claim("Retries back off: 2 s, then 4 s (plus up to 25 % jitter)",
          output=r"t= 0\.00s  alarm handler FAILED[^\n]*\nt= 2\.[0-4]\ds  alarm handler FAILED"
                 r"[^\n]*\nt= (6\.\d\d|7\.[0-4]\d)s  alarm handler succeeded"),
    *exercise_cells("05", """
    ## Exercise 05 · a batcher on an alarm

    `add(item)` collects items; `BATCH_SECONDS = 10` s after the first item of a batch, `alarm()`
    sends them all in one call to `env.OUTBOX.getByName("outbox").deliver(items, batch_id=...)`
    (a ready-made object that ignores a `batch_id` it has already seen). The check adds items
    in a trickle, evicts the batcher, makes the outbox unreachable once, adds an item in the
    middle of a send, and makes a commit fail right after a send. The starter has four classic
    bugs; the check finds them one by one.
    """),
    md("""
    ---
    The lab stays open, so you can keep experimenting and its panels stay live. When you are
    done, `await lab.close()` closes it (every panel then says **LAB CLOSED**); restarting the
    kernel ends it too (each panel then says *Kernel restarted* and how to go on).
    """),
    md("**Next:** [06 · contention and sharding](06_contention_sharding.ipynb)."),
]

# ---------------------------------------------------------------------------------------------
# 06 · contention and sharding
# ---------------------------------------------------------------------------------------------

L06 = [
    md("""
    # 06 · Contention and sharding

    **Covers:** one object is one queue; a hot object against a sharded design
    (`durable_lab.workload.run_workload` with `distribution="hot"`); long requests
    (`blockConcurrencyWhile` around slow I/O) blocking everything behind them; choosing the
    shard key (the unit of consistency).
    **You will be able to:** measure throughput and latency of a workload, spot a hot object,
    and shard by room/user without losing consistency.
    **Scenario:** counters with slow commits (`commit_latency=0.002`, real clock) driven by 8
    clients (`seed=1`), and a profile exporter on a manual clock.
    """),
    code(LESSON_IMPORTS + '''
from durable_lab.workload import run_workload


class Counter(DurableObject):
    async def increment(self, by=1):
        n = (await self.ctx.storage.get("n")) or 0
        self.ctx.storage.put("n", n + by)
        return n + by
'''),
    md("""
    ## One hot object

    Each commit takes 2 ms. One object commits one batch at a time, so everything sent to it
    queues behind its commits. **Predict:** 8 clients make 400 increments, (a) almost all to one
    object (`distribution="hot"`), (b) spread evenly over 8 objects. Which has the higher
    throughput? The lower p99 latency?
    """),
    code('''
    hot = Lab(storage="memory", seed=1, commit_latency=0.002)
    hot_counters = hot.bind("COUNTER", Counter)
    widgets.side_by_side(widgets.fleet(hot), widgets.metrics(hot))
    '''),
    code('''
    result = await run_workload(hot_counters, method="increment", clients=8, calls=400,
                                objects=8, distribution="hot", skew=0.9, seed=1)
    print(result.summary())
    '''),
    md("""
    **Where did the hot object's time go?** Every call's latency is split into phases that add
    up to it (docs/attribution.md): waiting for admission at the input gate (`queued`), running,
    storage reads with the gate held, other I/O, re-entry, held by the output gate, network.
    `result.phases(object=...)` gives each phase's percentiles; `hot.explain(call)` explains
    one call in a line. Each bar below is one of the slowest calls, split by phase; click one.
    """),
    code('''
    for phase, p in result.phases(object=result.hot_object).items():
        if p["p95"]:
            print(f"{phase:<12} p50 {p['p50'] * 1000:6.2f} ms   p95 {p['p95'] * 1000:6.2f} ms")
    print(hot.explain(result.slowest(1)[0]))
    widgets.where_time_went(hot, result=result, slowest=15)
    '''),
    md("""
    On the hot object most of a call's time is `output_gate`: its code runs in a fraction of a
    millisecond, then its reply waits for the commit of its batch, and one object's commits go
    one at a time (2 ms each here). Coalescing keeps that wait short (many increments share one
    commit); a second object would commit in parallel.
    """),
    claim("On the hot object most of a call's time is `output_gate`", '''
    phases = result.phases(object=result.hot_object)
    biggest = max(phases, key=lambda phase: phases[phase]["p50"])
    assert biggest == "output_gate", {k: round(v["p50"] * 1000, 3) for k, v in phases.items()}
    '''),
    md("""
    The fleet is a heat map of queues: one dark cell (the hot object, its queue long) among
    pale ones; the queue-depth plot shows that one queue, and the percentiles above the plots
    how long its calls waited. Now the same 400 calls spread evenly over 8 objects:
    """),
    claim("one dark cell (the hot object, its queue long) among pale ones", '''
    await settled(hot)
    fleet = panel_of(hot, "fleet")
    peaks = dict(zip(column(fleet.source, "label"), column(fleet.source, "peak")))
    hottest = max(peaks, key=peaks.get)
    assert hottest == f"COUNTER:{result.hot_object}" and len(peaks) == 8, (result.hot_object, peaks)
    assert peaks[hottest] >= 6 and all(3 * p < peaks[hottest] for k, p in peaks.items()
                                        if k != hottest), peaks
    ''', page=(".dl-fleet", r"^8 objects · 0 calls queued · hottest: COUNTER:\S+ "
                                  r"\(0 queued now, [6-9] at most")),
    claim("the queue-depth plot shows that one queue", '''
    await settled(hot)
    metrics = panel_of(hot, "metrics")
    fleet = panel_of(hot, "fleet")
    peak = max(column(fleet.source, "peak"))
    drawn = max(column(metrics.rates, "max_queue"), default=0)
    assert drawn >= peak / 2, f"the queue-depth plot reaches {drawn}; the hot queue reached {peak}"
    '''),
    claim("the percentiles above the plots how long its calls waited", '''
    await settled(hot)
    shown = text_of(panel_of(hot, "metrics").percentiles)
    assert "latency of 400 recent calls" in shown, shown
    '''),
    code('''
    even = Lab(storage="memory", seed=1, commit_latency=0.002)
    even_counters = even.bind("COUNTER", Counter)
    widgets.side_by_side(widgets.fleet(even), widgets.metrics(even))
    '''),
    code('''
    result = await run_workload(even_counters, method="increment", clients=8, calls=400,
                                objects=8, distribution="uniform", seed=1)
    print(result.summary())
    '''),
    md("""
    (Numbers are wall-clock and vary by machine; the shape does not.) Coalescing helps the hot
    object (many increments share one commit), but all of them still wait in one queue. Cloudflare
    puts a soft limit of about 1,000 requests per second on one object; past its queue limit an
    object answers `overloaded`.

    ## One long request blocks everyone

    **Predict:** a report takes 5 s of lab time (an external call) inside
    `blockConcurrencyWhile`. A quick `ping()` arrives 1 s later. When does it answer?
    """),
    code('''
    class Report(DurableObject):
        async def slow_report(self, locked):
            async def work():
                await durable_lab.sleep(5)           # an external call
                return "report"
            if locked:
                return await self.ctx.blockConcurrencyWhile(work)
            return await work()

        async def ping(self):
            return "pong"


    for locked in (True, False):
        lab = Lab(storage="memory", seed=1, clock="manual")
        stub = lab.bind("REPORT", Report).getByName("r")
        start = lab.clock.now()
        report = asyncio.ensure_future(stub.slow_report(locked))
        await lab.scheduler.settle()
        lab.clock.advance(1)
        ping = asyncio.ensure_future(stub.ping())
        await lab.scheduler.settle()
        answered = "at once (t=1 s)" if ping.done() else "not yet"
        lab.clock.advance(4)
        await asyncio.gather(report, ping)
        print(f"blockConcurrencyWhile={locked}: ping answered {answered}")
        await lab.close()
    '''),
    md("""
    See it on the timeline: the same locked report, with the ping arriving 1 s later.
    """),
    code('''
    lab = Lab(storage="memory", seed=1, clock="manual")
    stub = lab.bind("REPORT", Report).getByName("r")
    report_view = widgets.watch(lab, stub)
    report_view
    '''),
    code('''
    report = asyncio.ensure_future(stub.slow_report(True))
    await lab.scheduler.settle()
    lab.clock.advance(1)
    ping = asyncio.ensure_future(stub.ping())
    await lab.scheduler.settle()
    lab.clock.advance(4)
    print(await asyncio.gather(report, ping))
    '''),
    md("""
    The critical section kept the gate closed for 5 s (one long red span on the *input gate*
    lane, held by the `critical section`), and the ping's lane is grey, queued, all along: one
    slow request stalled the whole object. Hold the gate only around what must not interleave (a storage read and write), and
    do slow I/O outside it.
    """),
    claim("one long red span on the *input gate* lane, held by the `critical section`), and the "
          "ping's lane is grey, queued, all along", '''
    await settled(lab)
    tl = report_view.timeline
    gates = tl.gate_spans.data
    critical = [(l, r, d) for lane, l, r, d in zip(gates["lane"], gates["left"], gates["right"],
                                                   gates["detail"])
                if lane == "input gate" and "critical section" in d]
    assert len(critical) == 1, dict(gates)
    left, right, _ = critical[0]
    seg = tl.segments.data
    rows = list(zip(seg["delivery"], seg["method"], seg["kind"], seg["left"], seg["right"]))
    ping = [r for r in rows if r[1] == "ping"]
    queued = [r for r in ping if r[2] == "queued"]
    assert queued and queued[0][3] < right and queued[0][4] >= right, (ping, critical)
    report = [r for r in rows if r[1] == "slow_report" and left < r[4] and r[3] < right]
    assert not [r for r in report if r[2] == "awaiting io"], (
        f"drawn as gate-open 'awaiting io' inside the critical section: {report}")
    '''),
    *exercise_cells("06a", """
    ## Exercise 06a · no head-of-line blocking

    `Profile.export()` uploads a snapshot to a slow exporter (5 s of lab time,
    `env.EXPORTER.getByName("x").upload(snapshot)`). The starter plays it safe with
    `blockConcurrencyWhile`, and every update waits. Make updates and reads go on while an export
    is in flight, and keep the snapshot consistent.
    """),
    md("""
    ## Sharding: by what?

    A chat service: **Predict:** route every message to one object `"global"`, or one object per
    user, or one object per room: which design keeps each room's history consistent and still
    spreads the load?
    """),
    *exercise_cells("06b", """
    ## Exercise 06b · shard by the unit of consistency

    Write `route(env, room, user)`, returning the stub a message for `room` from `user` goes to
    (`env.ROOMS` is a ready-made room object with `post(user, text)` and `messages()`). The check
    posts to many rooms from many users and reads the rooms back.
    """),
    md("**Next:** [07 · the SQL API](07_sql_api.ipynb)."),
]

# ---------------------------------------------------------------------------------------------
# 08 · WebSockets and hibernation
# ---------------------------------------------------------------------------------------------

L08 = [
    md("""
    # 08 · WebSockets and hibernation: a chat room

    **Covers:** upgrading a request to a WebSocket (`WebSocketPair`, `ctx.acceptWebSocket`),
    `webSocketMessage`, broadcasting with `ctx.getWebSockets()`, hibernation (the instance goes,
    the sockets stay), `serializeAttachment`, sends held by the output gate, auto-responses.
    **You will be able to:** build a chat room that survives hibernation between any two
    messages.
    **Scenario:** a room with two clients connected through `lab.connect(stub, "/?name=ann")`,
    on a memory lab with a manual clock and `hibernate_after=10`.
    """),
    code(LESSON_IMPORTS + SHOW + '''
from durable_lab import WebSocketRequestResponsePair


class Room(DurableObject):
    def __init__(self, ctx, env):
        super().__init__(ctx, env)
        print("  Room constructed")

    async def fetch(self, request):
        name = parse_qs(urlparse(request.url).query).get("name", ["anon"])[0]
        client, server = WebSocketPair()
        self.ctx.acceptWebSocket(server, [name])      # the runtime owns it from now on;
                                                      # its tags: getWebSockets(name) finds it
        server.serializeAttachment({"name": name})     # kept with the socket
        self.ctx.setWebSocketAutoResponse(WebSocketRequestResponsePair("ping", "pong"))
        return Response(None, status=101, web_socket=client)

    async def webSocketMessage(self, ws, message):
        line = f"{ws.deserializeAttachment()['name']}: {message}"
        count = (await self.ctx.storage.get("count")) or 0
        self.ctx.storage.put("count", count + 1)
        for other in self.ctx.getWebSockets():
            other.send(line)


lab = Lab(storage="memory", seed=1, clock="manual", hibernate_after=10)
ROOMS = lab.bind("ROOMS", Room)
room = ROOMS.getByName("lobby")
'''),
    md("""
    ## Two clients

    **Predict:** ann sends "hi". Who receives `"ann: hi"`?
    """),
    code('''
    sockets = widgets.websockets(lab, "ROOMS:lobby")   # sockets, awake or hibernated
    room_view = widgets.watch(lab, "ROOMS:lobby", timeline=False)
    widgets.side_by_side(sockets, room_view)
    '''),
    code('''
    ann = await lab.connect(room, "/?name=ann")
    bob = await lab.connect(room, "/?name=bob")
    await ann.send("hi")
    await lab.wait_idle()
    print("ann got:", ann.messages)
    print("bob got:", bob.messages)
    '''),
    md("""
    Both got it, ann included: `getWebSockets()` returns every socket. The WebSockets panel lists
    the two sockets with their names: the tags column shows the tags `acceptWebSocket(server,
    [name])` gave them (`ann`, `bob`), one message in for ann's, one out for each.

    ## Hibernation

    After `hibernate_after` seconds without events the instance is dropped, but the sockets stay
    open, held by the runtime. **Predict:** 11 s pass in silence. What does the WebSockets panel
    say about the room, and are the sockets still open?
    """),
    claim("The WebSockets panel lists the two sockets with their names: the tags column shows "
          "the tags", '''
    await settled(lab)
    rows = list(sockets.reducer.sockets.values())
    assert [r.tags for r in rows] == [("ann",), ("bob",)], rows
    assert [(r.received, r.sent) for r in rows] == [(1, 1), (0, 1)], rows
    shown = text_of(sockets)
    assert "ann open 1 in · 1 out" in shown and "bob open 0 in · 1 out" in shown, shown
    ''', output=r"ann got: \['ann: hi'\]\s+bob got: \['ann: hi'\]",
          page=(".dl-socket", r"\bbob\b")),
    code('''
    rec = lab.record()
    lab.clock.advance(11)
    await lab.wait_idle()
    rec.close()
    await asyncio.sleep(0.3)   # a moment for the panel to draw it before the next cell runs
    print([e.reason for e in rec.events if e.kind == "InstanceEvicted"])
    '''),
    md("""
    **HIBERNATED**: no instance in memory, and both sockets still open. **Predict:** bob now sends
    a message. Does the room answer? Is the constructor called again? Does it still know bob's
    name?
    """),
    claim("**HIBERNATED**: no instance in memory, and both sockets still open", '''
    await settled(lab)
    assert sockets.reducer.instance == "hibernated", sockets.reducer
    assert [r.state for r in sockets.reducer.sockets.values()] == ["open", "open"], sockets.reducer
    assert "HIBERNATED" in text_of(sockets), text_of(sockets)
    ''', output=r"^\['hibernation'\]$", page=(".dl-websockets .dl-instance", r"HIBERNATED")),
    code('''
    await bob.send("anyone there?")
    await lab.wait_idle()
    print("ann got:", ann.messages[-1])
    '''),
    md("""
    A new instance was constructed for bob's message (the panel says AWAKE again, woken once);
    `getWebSockets()` found both sockets and the attachment still held bob's name. Anything
    kept in fields would have been lost.

    ## Sends wait for the output gate

    **Predict:** the handler writes `count`, then sends. If that write's commit fails, do the
    clients receive the message?
    """),
    claim("A new instance was constructed for bob's message (the panel says AWAKE again, woken "
          "once)", '''
    await settled(lab)
    r = sockets.reducer
    assert (r.instance, r.wakeups, r.hibernations) == ("awake", 1, 1), r
    assert "AWAKE" in text_of(sockets) and "woken 1 time(s)" in text_of(sockets), text_of(sockets)
    ''', output=r"Room constructed\s+ann got: bob: anyone there\?"),
    code('''
    lab.faults.fail_next_commit(room)
    rec = lab.record()
    await ann.send("will this arrive?")
    await lab.wait_idle()
    rec.close()
    print("bob's last message:", bob.messages[-1])
    print("ann's socket closed with code", ann.close_code)
    print([e.kind for e in rec.events if e.kind.startswith("WebSocket")])
    '''),
    md("""
    The message was held behind the commit and dropped when it failed; the reset closed the
    sockets with 1011. Clients reconnect (a new `lab.connect`), exactly as browsers do.

    ## Auto-responses: answering pings without waking up

    `fetch` above also set `ctx.setWebSocketAutoResponse(WebSocketRequestResponsePair("ping",
    "pong"))`. **Predict:** carol pings a hibernated room. Is the object constructed to answer?
    """),
    claim("The message was held behind the commit and dropped when it failed; the reset closed "
          "the sockets with 1011", '''
    await settled(lab)
    rows = list(sockets.reducer.sockets.values())
    assert [(r.dropped, r.state, r.close.split()[0]) for r in rows] == [
        (1, "closed", "1011"), (1, "closed", "1011")], rows
    assert "1 dropped" in text_of(sockets) and "closed 1011" in text_of(sockets), text_of(sockets)
    ''', output=r"bob's last message: bob: anyone there\?\s+ann's socket closed with code 1011"),
    code('''
    room2 = ROOMS.getByName("quiet")
    carol = await lab.connect(room2, "/?name=carol")
    await lab.hibernate(room2)
    rec = lab.record()
    await carol.send("ping")
    await lab.wait_idle()
    rec.close()
    print("constructed:", sum(e.kind == "InstanceConstructed" for e in rec.events),
          "| carol got:", carol.messages[-1:])
    '''),
    *exercise_cells("08", """
    ## Exercise 08 · a chat room that hibernates

    `ChatRoom` keeps its sockets and names in fields. The check connects ann and bob, hibernates
    the room, and talks again; it also asks `history()` for the stored lines after a
    hibernation, one more line and an eviction.
    Make every line reach everyone, with the right name, and keep the history in storage.
    """),
    md("""
    ---
    The lab stays open, so you can keep experimenting and its panels stay live. When you are
    done, `await lab.close()` closes it (every panel then says **LAB CLOSED**); restarting the
    kernel ends it too (each panel then says *Kernel restarted* and how to go on).
    """),
    md("**Next:** [09 · capstone](09_capstone.ipynb)."),
]
# ---------------------------------------------------------------------------------------------
# 07 · the SQL API
# ---------------------------------------------------------------------------------------------

L07 = [
    md("""
    # 07 · The SQL API

    **Covers:** SQLite-backed objects (`lab.bind(NAME, Cls, sql=True)`, Cloudflare's
    `new_sqlite_classes`); `ctx.storage.sql.exec(query, *bindings)` with `toArray()`, `one()`,
    iteration; writes committed after the turn with the key-value writes; `transactionSync`;
    tables created in the constructor; why bindings and never f-strings.
    **You will be able to:** model an object's state as tables, query it with bindings, and keep
    multi-statement updates atomic.
    **Scenario:** a notes table and a game leaderboard, on memory labs (each object gets its own
    in-memory SQLite database).
    """),
    code(LESSON_IMPORTS + SHOW),
    md("""
    ## A table per object

    **Predict:** the constructor creates a table. The object is evicted and constructed again:
    does `CREATE TABLE IF NOT EXISTS` wipe the notes?
    """),
    code('''
    class Notes(DurableObject):
        def __init__(self, ctx, env):
            super().__init__(ctx, env)
            self.sql = ctx.storage.sql
            self.sql.exec("CREATE TABLE IF NOT EXISTS notes(id INTEGER PRIMARY KEY, body TEXT)")

        async def add(self, body):
            self.sql.exec("INSERT INTO notes(body) VALUES (?)", body)    # ? = a binding
            return self.sql.exec("SELECT count(*) AS n FROM notes").one().n

        async def all(self):
            return self.sql.exec("SELECT id, body FROM notes ORDER BY id").toArray()


    lab = Lab(storage="memory", seed=1)
    NOTES = lab.bind("NOTES", Notes, sql=True)
    notes = NOTES.getByName("ada")
    tables = widgets.sql_tables(lab, "NOTES:ada")    # the object's tables, live
    tables
    '''),
    code('''
    print(await notes.add("buy milk"), await notes.add("call Bob"))
    await lab.evict(notes)
    print(await notes.all())
    '''),
    claim("the object's tables, live", '''
    await settled(lab)
    shown = text_of(tables)
    assert "notes" in shown and "buy milk" in shown and "call Bob" in shown, shown
    assert 'data-rows="2"' in html_of(tables), html_of(tables)[:300]
    ''', page=(".dl-sql", r"call Bob")),
    md("""
    ## Every call is synchronous

    On a SQLite-backed object, `exec()` runs at once, with no `await`, and even `get()` /
    `put()` of the key-value API are synchronous underneath. Writes of one turn, SQL and
    key-value together, commit as one transaction after the turn, and the reply waits for it.

    **Predict:** a handler inserts a note and puts a key; the commit fails. What survives?
    """),
    code('''
    class Both(Notes):
        async def add_both(self, body):
            self.sql.exec("INSERT INTO notes(body) VALUES (?)", body)
            self.ctx.storage.put("last", body)
            return "ok"

        async def last(self):
            return await self.ctx.storage.get("last")


    BOTH = lab.bind("BOTH", Both, sql=True)
    both = BOTH.getByName("x")
    await both.add_both("first")
    lab.faults.fail_next_commit(both)
    try:
        await both.add_both("second")
    except Exception as exc:
        print("caller:", exc)
    fresh = BOTH.getByName("x")
    print(await fresh.all(), await fresh.last())
    '''),
    md("""
    Neither the row nor the key of the failed turn survived: one transaction.

    ## `transactionSync`: all or nothing inside a turn

    **Predict:** a transfer moves points between two rows and raises in the middle. With
    `transactionSync`, what is left?
    """),
    claim("Neither the row nor the key of the failed turn survived",
          output=r"(?m)^\[\{'id': 1, 'body': 'first'\}\] first$"),
    code('''
    class Wallets(DurableObject):
        def __init__(self, ctx, env):
            super().__init__(ctx, env)
            self.sql = ctx.storage.sql
            self.sql.exec("CREATE TABLE IF NOT EXISTS w(name TEXT PRIMARY KEY, points INTEGER)")

        async def seed(self):
            self.sql.exec("INSERT OR REPLACE INTO w VALUES ('ann', 10), ('bob', 0)")

        async def transfer(self, amount):
            def move():
                self.sql.exec("UPDATE w SET points = points - ? WHERE name = 'ann'", amount)
                if amount > 10:
                    raise ValueError("not enough points")
                self.sql.exec("UPDATE w SET points = points + ? WHERE name = 'bob'", amount)
            try:
                self.ctx.storage.transactionSync(move)
            except ValueError as exc:
                return f"refused: {exc}"
            return "moved"

        async def balances(self):
            return self.sql.exec("SELECT name, points FROM w ORDER BY name").toArray()


    wallets = lab.bind("WALLETS", Wallets, sql=True).getByName("w")
    await wallets.seed()
    print(await wallets.transfer(4), await wallets.balances())
    print(await wallets.transfer(50), await wallets.balances())
    '''),
    md("""
    ## Bindings, always

    **Predict:** what does this f-string query do with the name `O'Brien`?
    """),
    code('''
    class Unsafe(Notes):
        async def find(self, name):
            return self.sql.exec(f"SELECT * FROM notes WHERE body = '{name}'").toArray()

    unsafe = lab.bind("UNSAFE", Unsafe, sql=True).getByName("u")
    try:
        print(await unsafe.find("O'Brien"))
    except Exception as exc:
        print(type(exc).__name__, exc)
    '''),
    *exercise_cells("07", """
    ## Exercise 07 · a leaderboard in SQL

    `add_score(player, points)` returns the player's new total; `top(n)` returns the n best as
    `[{"player": ..., "total": ...}, ...]`, best first. The starter pastes values into SQL and
    sorts nothing. The check bound your class with `sql=True` and tries quotes, a name that is
    SQL, evictions and ordering; it also watches the statements `top(n)` runs, so the right rows
    sorted in Python do not count: SQL must sort and cut (`ORDER BY ... LIMIT`).
    """),
    md("""
    ---
    The lab stays open, so you can keep experimenting and its panels stay live. When you are
    done, `await lab.close()` closes it (every panel then says **LAB CLOSED**); restarting the
    kernel ends it too (each panel then says *Kernel restarted* and how to go on).
    """),
    md("**Next:** [08 · WebSockets and hibernation](08_websockets_hibernation.ipynb)."),
]

# ---------------------------------------------------------------------------------------------
# 09 · capstone
# ---------------------------------------------------------------------------------------------

L09 = [
    md("""
    # 09 · Capstone: design a rate limiter, then prove it

    **Covers:** everything: choosing the object (one per user), durable state, the input gate
    around read-check-write, the output gate making every "yes" durable, lab time, bounded
    storage; then proving it with a workload, the history of calls, adversarial schedules and
    injected faults.
    **You will be able to:** design a small Durable Objects system from a spec and show, not
    just claim, that it holds under concurrency and failure.
    **Scenario:** an API that allows each user `LIMIT = 5` calls per sliding `WINDOW = 60`
    seconds, on memory labs with a manual clock (`seed=1`).

    ## The spec

    - `RATE_LIMITER.getByName(user).allow()` returns `True` if fewer than `LIMIT` calls of that
      user were allowed in the last `WINDOW` seconds (a *sliding* window), else `False`.
    - A `True` must never be forgotten: not after an eviction, not after a failed commit.
    - No schedule of concurrent calls may allow more than `LIMIT`.
    - Storage stays small however long the limiter runs.

    ## Design questions (answer before you code)

    1. Which object owns the state: one per user, one per API key, one for everything? Why?
    2. What exactly do you store? (Hint: times of allowed calls.) When do you prune it?
    3. Where is the read-check-write, and what must not happen inside it?
    4. When may the caller hear `True`? What would `allowUnconfirmed` break?
    5. Which clock do you read? (`durable_lab.now()` is the lab clock; on Cloudflare you would
       write `time.time()`.)
    """),
    code(LESSON_IMPORTS + SHOW + '''
from durable_lab.check import History
from durable_lab.workload import run_workload
'''),
    md("""
    ## Try a first design by hand

    **Predict:** the starter below counts calls in a field. Which requirement does it break
    first?
    """),
    code(STARTERS["09"].strip() + '''


lab = Lab(storage="memory", seed=1, clock="manual")
LIMITER = lab.bind("RATE_LIMITER", RateLimiter)
user = LIMITER.getByName("ada")
print([await user.allow() for _ in range(7)])
lab.clock.advance(61)
print("a minute later:", await user.allow())
await lab.evict(user)
print("after an eviction:", [await user.allow() for _ in range(3)])
'''),
    md("""
    ## Your limiter

    Write `RateLimiter` in the cell below (keep the name, `LIMIT` and `WINDOW`), then run the
    check. It runs seven scenarios: the basics, the sliding window on the lab clock, eviction, a
    burst, 15 adversarial schedules (the check plays scheduler with `lab.pause()` /
    `lab.choose()`), every other commit failing, and 100 calls over 25 minutes for the storage
    bound.
    """),
    *exercise_cells("09", """
    ## Exercise 09 · the rate limiter

    Replace the starter class with your design. Each ✗ comes with what happened and a hint.
    """),
    md("""
    ## Prove it yourself

    A passing check is a good sign, not a proof. Run your own experiment: 8 clients hammer 3
    users at once; count, per user, how many calls were allowed. **Predict** the numbers first.
    """),
    code('''
    proof = Lab(storage="memory", seed=1, clock="manual")
    ns = proof.bind("RATE_LIMITER", RateLimiter)
    board = widgets.dashboard(proof)    # every panel; click a fleet cell to open that user
    board
    '''),
    code('''
    history = History()
    result = await run_workload(ns, method="allow", clients=8, calls=60,
                                names=["ann", "bob", "cat"], seed=1, history=history)
    allowed = {}
    for call in result.calls:
        if call.ok and call.result is True:
            allowed[call.object] = allowed.get(call.object, 0) + 1
    print("allowed per user:", allowed, "| errors:", result.errors)
    '''),
    claim("click a fleet cell to open that user", '''
    await settled(proof)
    labels = column(board.fleet.source, "label")
    assert sorted(labels) == ["RATE_LIMITER:ann", "RATE_LIMITER:bob", "RATE_LIMITER:cat"], labels
    board.fleet.source.selected.indices = [labels.index("RATE_LIMITER:cat")]   # the click
    await settled(proof)
    assert board.object_view.target == "RATE_LIMITER:cat", board.object_view.target
    assert text_of(board.object_view).startswith("RATE_LIMITER:cat"), text_of(board.object_view)
    ''', page=(".dl-fleet", r"^3 objects")),
    md("""
    ## Going further

    - **Faults:** repeat the experiment with `proof.faults.fail_commits(probability=0.3)`. Do the
      numbers change? Why is "allowed" never above `LIMIT`?
    - **Clean-up:** a user who never comes back leaves data behind. Add an alarm that deletes the
      object's storage (`deleteAll()`) one `WINDOW` after the last call.
    - **Another capstone:** a collaborative document: one object per document, `edit(version,
      op)` refuses stale versions, every editor connected over a WebSocket receives each accepted
      op in order. Prove it with two clients editing at once under `lab.pause()`.
    """),
    md("""
    ---
    The lab stays open, so you can keep experimenting and its panels stay live. When you are
    done, `await lab.close()` closes it (every panel then says **LAB CLOSED**); restarting the
    kernel ends it too (each panel then says *Kernel restarted* and how to go on).
    """),
]
# ---------------------------------------------------------------------------------------------
# 10 · placement (taught after 06: numbered 10 so the numbering of 07-09 holds)
# ---------------------------------------------------------------------------------------------

L10 = [
    md("""
    # 10 · Placement: where objects live

    *Read after [06 · contention and sharding](06_contention_sharding.ipynb).*

    **Covers:** where an object lives (near the caller that creates it, for good), what distance
    costs every call (a round trip per call, on the lab clock), `locationHint` on `get()` and
    `getByName()`, `lab.client(region)`, jurisdictions (`ns.jurisdiction("eu")`), latency
    percentiles per region (`run_workload(regions=..., timing="lab")`).
    **You will be able to:** predict the latency each region sees from where an object lives,
    and choose the shard key and location hints that keep every region within a budget.
    **Scenario:** a chat service used from five continents, on
    `Lab(network="cloudflare-regions", clock="auto")`: calls pay approximate real round-trip
    times between Cloudflare's regions, in lab time, so every number below is the same on every
    machine and the notebook runs in seconds.
    """),
    code(LESSON_IMPORTS + '''
from durable_lab.workload import run_workload


class Room(DurableObject):
    async def post(self, user, text):
        count = (await self.ctx.storage.get("count")) or 0
        self.ctx.storage.put(f"msg:{count:06}", f"{user}: {text}")
        self.ctx.storage.put("count", count + 1)
        return count + 1

    async def messages(self):
        return list((await self.ctx.storage.list(prefix="msg:")).values())


FIVE = ["wnam", "weur", "apac-ne", "sam", "oc"]     # five continents (Cloudflare's region names)
'''),
    md("""
    ## Regions and round trips

    Cloudflare names regions by their location hints: `wnam` (Western North America), `weur`
    (Western Europe), `apac-ne` (Northeast Asia), `sam` (South America), `oc` (Oceania), and six
    more. The lab's network is a table of approximate round-trip times between them (one city
    stands for each region; docs/semantics.md says where the figures come from). A call pays
    half the round trip on the way in and half on the way back.
    """),
    code('''
    lab = Lab(storage="memory", seed=1, clock="auto", network="cloudflare-regions")
    ROOMS = lab.bind("ROOMS", Room)
    print("round trips in ms:")
    print(lab.network.table(FIVE))
    '''),
    md("""
    ## One call, two trips

    `lab.client(region)` is a Worker running in that region: its `env.ROOMS` makes stubs that
    call from there. An object is created at its first call, **near the caller that made it**,
    and it stays there.

    **Predict:** a member in Tokyo (`apac-ne`) creates the room `tokyo` with a post, then a member
    in Amsterdam (`weur`) posts to it. How long does each post take, in lab milliseconds?
    """),
    code('''
    room_view = widgets.watch(lab, lab.env.ROOMS.getByName("tokyo"), x="time")
    room_view
    '''),
    code('''
    for region in ("apac-ne", "weur"):
        stub = lab.client(region).env.ROOMS.getByName("tokyo")
        start = lab.clock.now()
        await stub.post(f"someone in {region}", "hello")
        took = (lab.clock.now() - start) * 1000
        print(f"from {region:<8} {took:5.0f} ms   (the room lives in {lab.network.region_of(stub)})")
    '''),
    md("""
    Tokyo's post took one local round trip (10 ms); Amsterdam's took the Amsterdam-Tokyo round
    trip (230 ms), although the object did the same work. On the timeline the teal *network*
    spans are the trips: one before *queued* (the request on its way in), one after the reply
    left the output gate (the answer on its way back). The object's own work is the same sliver
    in both lanes.

    ## One global chat object, used from five continents

    **Predict:** one object `"global"` for the whole service, created by a member in `wnam`.
    Ten clients in five regions post to it. Which regions see a p50 under 50 ms?
    """),
    claim("Tokyo's post took one local round trip (10 ms); Amsterdam's took the "
          "Amsterdam-Tokyo round trip (230 ms)",
          output=r"from apac-ne\s+10 ms[\s\S]*from weur\s+230 ms"),
    claim("the teal *network* spans are the trips: one before *queued* (the request on its way "
          "in), one after the reply left the output gate", '''
    await settled(lab)
    seg = room_view.timeline.segments.data
    lanes = {}
    for d, left, right, kind in sorted(zip(seg["delivery"], seg["left"], seg["right"],
                                           seg["kind"])):
        lanes.setdefault(d, []).append((left, right, kind))
    kinds = [[k for _, _, k in sorted(spans)] for spans in lanes.values()]
    trips = [k for k in kinds if "network" in k]
    assert len(trips) == 2, kinds
    for k in trips:
        assert k[0] == "network" and k[1] == "queued" and k[-1] == "network", kinds
    '''),
    claim("The object's own work is the same sliver in both lanes", '''
    await settled(lab)
    tl = room_view.timeline
    seg = tl.segments.data
    x_left, x_right = getattr(tl, "x_columns", ("left", "right"))     # the x axis drawn
    width = {}
    for left, right, kind in zip(seg[x_left], seg[x_right], seg["kind"]):
        width.setdefault(kind, []).append(float(right) - float(left))
    trips, work = max(width.get("network", [0])), max(width.get("running", [0]))
    assert trips >= 20 * work, (
        f"the longest trip (115 ms one way) is drawn {trips:.1f} wide, the object's work "
        f"{work:.1f}: the timeline is not drawn against lab time")
    '''),
    code('''
    world = Lab(storage="memory", seed=1, clock="auto", network="cloudflare-regions")
    world_rooms = world.bind("ROOMS", Room)
    widgets.side_by_side(widgets.fleet(world), widgets.metrics(world))
    '''),
    code('''
    await world.client("wnam").env.ROOMS.getByName("global").post("founder", "first!")
    result = await run_workload(world_rooms, method="post", args=("member", "hi"), clients=10,
                                per_client=20, names=["global"], regions=FIVE, timing="lab")
    print(result.summary())
    '''),
    md("""
    One region is fast, four are not: the object lives in `wnam` (its fleet cell says so) and
    everyone else crosses an ocean twice per post. No amount of speed inside the object helps;
    only *where it lives* does.

    ## One object per room, near its members

    Most of a room's members live in one region. **Predict:** one object per room, each created
    by one of its own members: what p50 and p95 does each region see now?
    """),
    claim("One region is fast, four are not: the object lives in `wnam` (its fleet cell says "
          "so)", '''
    await settled(world)
    fleet = panel_of(world, "fleet")
    cells = dict(zip(column(fleet.source, "label"), column(fleet.source, "text")))
    assert list(cells) == ["ROOMS:global"] and "wnam" in cells["ROOMS:global"], cells
    import re
    shown = text_of(panel_of(world, "metrics").percentiles)
    p50 = float(re.search(r"p50 ([0-9.]+)", shown).group(1))
    assert 100 <= p50 <= 175, f"the panel says {shown!r}; the calls took 10-175 ms of lab time"
    ''', output=r"wnam\s+40 ok\s+p50\s+10\.00 ms[\s\S]*weur\s+40 ok\s+p50\s+145\.00 ms",
          page=(".dl-percentiles", r"p50 1[0-9][0-9]\.[0-9]")),
    code('''
    HOMES = {"wnam": "wnam/startups", "weur": "weur/techno", "apac-ne": "apac-ne/anime",
             "sam": "sam/futebol", "oc": "oc/surf"}
    sharded = Lab(storage="memory", seed=1, clock="auto", network="cloudflare-regions")
    sharded_rooms = sharded.bind("ROOMS", Room)
    widgets.side_by_side(widgets.fleet(sharded), widgets.metrics(sharded))
    '''),
    code('''
    results = await asyncio.gather(*(
        run_workload(sharded_rooms, method="post", args=("member", "hi"), clients=2,
                     per_client=20, names=[room], regions=[region], timing="lab")
        for region, room in HOMES.items()))
    for result in results:
        for region, row in result.per_region().items():
            print(f"{region:<8} -> {result.names[0]:<14} p50 {row['p50'] * 1000:4.0f} ms   "
                  f"p95 {row['p95'] * 1000:4.0f} ms")
    print(sharded.network.placements())
    '''),
    md("""
    Every region now sees one local round trip. The fleet groups its cells by region: one room
    per continent, each next to its members. The shard key (the room, the unit of consistency,
    lesson 06) also decides *where* state can live: one object can only be near one place.

    ## The first call decides, for good

    **Predict:** a cricket fan from Sydney, travelling in London, opens the room `oc/cricket`
    (its first post comes from `weur`). Back home, Sydney members post with
    `locationHint="oc"`. Where does the room live, and what does a Sydney post cost?
    """),
    claim("Every region now sees one local round trip. The fleet groups its cells by region: "
          "one room per continent", '''
    import re
    await settled(sharded)
    fleet = panel_of(sharded, "fleet")
    regions = dict(zip(column(fleet.source, "label"), column(fleet.source, "region")))
    assert regions == {f"ROOMS:{room}": region for region, room in HOMES.items()}, regions
    assert "in 5 region(s), grouped by region" in text_of(fleet), text_of(fleet)
    shown = text_of(panel_of(sharded, "metrics").percentiles)
    p50, p95 = (float(re.search(rf"{p} ([0-9.]+)", shown).group(1)) for p in ("p50", "p95"))
    assert 9 <= p50 <= p95 <= 11, f"the metrics panel says {shown!r}; every call took 10 ms"
    ''', output=r"(?m)^(\S+\s+-> \S+\s+p50   10 ms   p95   10 ms\n){5}"),
    code('''
    await sharded.client("weur").env.ROOMS.getByName("oc/cricket").post("visitor", "g'day")
    sydney = sharded.client("oc").env.ROOMS.getByName("oc/cricket", locationHint="oc")
    start = sharded.clock.now()
    await sydney.post("local", "hi")
    print(f"{(sharded.clock.now() - start) * 1000:.0f} ms from Sydney; the room lives in "
          f"{sharded.network.region_of(sydney)}")
    '''),
    md("""
    The hint came too late: "Only the first call to `get()` for a particular Object will
    respect the hint" (Cloudflare's docs). An object never moves, so pass the hint on *every*
    call: it costs nothing after the first, and then whoever creates the room, it is created at
    home. Python Workers take it as an options dict too: `getByName(room, {"locationHint": "oc"})`.

    **Jurisdictions** are stronger than hints: `env.ROOMS.jurisdiction("eu")` is a sub-namespace
    whose objects run and store data only in the EU (`weur` or `eeur` in the lab). Its ids differ
    from the plain namespace's for the same name, and it refuses ids from elsewhere:
    """),
    claim("The hint came too late", output=r"^\d+ ms from Sydney; the room lives in weur$"),
    code('''
    eu_rooms = sharded.client("apac-ne").env.ROOMS.jurisdiction("eu")
    print(eu_rooms.idFromName("gdpr") == sharded.env.ROOMS.idFromName("gdpr"))   # another id
    await eu_rooms.getByName("gdpr", locationHint="apac-ne").post("auditor", "hello from Tokyo")
    print("placed in", sharded.network.region_of(eu_rooms.getByName("gdpr")))   # never outside the EU
    try:
        eu_rooms.get(sharded.env.ROOMS.idFromName("gdpr"))
    except TypeError as error:
        print("TypeError:", error)
    '''),
    claim("whose objects run and store data only in the EU (`weur` or `eeur` in the lab)",
          output=r"^False\nplaced in (weur|eeur)\nTypeError: "),
    *exercise_cells("10", """
    ## Exercise 10 · a latency budget per region

    Write `route(env, room, user)`, returning the stub a message for `room` goes to. `env` is the
    bindings seen from the user's region (the check calls it with `lab.client(region).env`), and
    `env.ROOMS` is a ready-made room (`post(user, text)`, `messages()`). Rooms are named
    `"<home region>/<topic>"` (`"oc/surf"`, `"weur/techno"`), and most members of a room live in
    its home region. The check posts 5 messages per room from its members and wants every
    region's p95 within **50 ms** of lab time; then it does it again with each room created by a
    traveller far from home. Choose the shard key and the location hints.
    """),
    code("for each in (lab, world, sharded):\n    await each.close()"),
    md("**Next:** [07 · the SQL API](07_sql_api.ipynb)."),
]

# ---------------------------------------------------------------------------------------------
# writing the files
# ---------------------------------------------------------------------------------------------

LESSONS = {
    "00_tour": (L00, ["00"]),
    "01_ownership_ids_stubs": (L01, ["01"]),
    "02_input_gate": (L02, ["02"]),
    "03_output_gate": (L03, ["03"]),
    "04_write_coalescing": (L04, ["04"]),
    "05_alarms_lifecycle": (L05, ["05"]),
    "06_contention_sharding": (L06, ["06a", "06b"]),
    "07_sql_api": (L07, ["07"]),
    "08_websockets_hibernation": (L08, ["08"]),
    "09_capstone": (L09, ["09"]),
    "10_placement": (L10, ["10"]),
}

KERNEL = {"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
          "language_info": {"name": "python"}}


def notebook(cells: list[Cell]) -> Any:
    from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

    made = []
    for i, (kind, source, tags) in enumerate(c for c in cells if c[0] != "claim"):
        cell = new_markdown_cell(source) if kind == "markdown" else new_code_cell(source)
        if tags:
            cell.metadata["tags"] = list(tags)
        cell["id"] = f"cell-{i:02}"
        made.append(cell)
    return new_notebook(cells=made, metadata=dict(KERNEL))


def claims_of(cells: list[Cell]) -> list[tuple[int, Claim]]:
    """The lesson's claims, each with the number of notebook cells above it (where it runs)."""
    found, position = [], 0
    for cell in cells:
        if isinstance(cell, Claim):
            found.append((position, cell))
        else:
            position += 1
    return found


def solution_notebook(name: str, keys: list[str]) -> Any:
    cells = [md(f"""
    # Solutions · {name}

    For instructors (hand out after the exercise). Each cell is a class that passes every
    scenario of its check, with comments on *why*. Other correct answers exist: the check,
    not this file, is the judge.
    """), code(IMPORTS)]
    for key in keys:
        cells.append(md(f"## Exercise {key}"))
        cells.append(code(SOLUTIONS[key].strip() + f"\n\n\nfrom durable_lab.exercises import "
                          f"{CHECK_OF[key]}\nawait {CHECK_OF[key]}({SUBJECT_OF[key]})"))
    return notebook(cells)


def main(argv: list[str]) -> int:
    import nbformat

    check_only = "--check" in argv
    stale = []
    for name, (cells, keys) in LESSONS.items():
        outputs = {HERE / f"{name}.ipynb": notebook(cells),
                   HERE / "solutions" / f"{name}_solutions.ipynb": solution_notebook(name, keys)}
        for path, nb in outputs.items():
            text = nbformat.writes(nb) + "\n"
            if path.exists() and path.read_text() == text:
                continue
            stale.append(path)
            if not check_only:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(text)
    if check_only and stale:
        print("out of date (run python notebooks/_build.py):",
              ", ".join(str(p.relative_to(HERE)) for p in stale))
        return 1
    print(f"{'would write' if check_only else 'wrote'} {len(stale)} notebook(s)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
