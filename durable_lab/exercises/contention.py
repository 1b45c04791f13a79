"""Exercise 06: long requests block everything behind them; shard by the unit of consistency."""

from __future__ import annotations

import asyncio
import inspect
from collections import Counter
from typing import Any

from ..events import CriticalSectionStarted
from ..lab import Lab
from ._core import CheckResult, Fail, Scenario, advance, run_check, settle
from .helpers import Exporter, RoomLog

__all__ = ["ROOMS", "USERS", "check_profile", "check_router"]


def _lab() -> Lab:
    lab = Lab(storage="memory", seed=1, clock="manual")
    lab.bind("EXPORTER", Exporter)
    return lab


async def _basics(cls: type) -> None:
    lab = _lab()
    async with lab:
        stub = lab.bind("PROFILE", cls).getByName("u1")
        await stub.update("name", "Ada")
        await stub.update("city", "London")
        got = await stub.get()
        if got != {"name": "Ada", "city": "London"}:
            raise Fail(f"after update('name', 'Ada') and update('city', 'London'), get() "
                       f"returned {got!r}.",
                       "update(field, value) stores one field; get() returns every field as "
                       "a dict.")


async def _export_sends_snapshot(cls: type) -> None:
    lab = _lab()
    async with lab:
        stub = lab.bind("PROFILE", cls).getByName("u1")
        await stub.update("name", "Ada")
        call = asyncio.ensure_future(stub.export())
        await settle(lab)
        await advance(lab, Exporter.DELAY + 1)
        if not call.done():
            raise Fail(f"export() had not answered {Exporter.DELAY + 1:.0f} s (lab time) after "
                       "it was called.",
                       "export() should call `await self.env.EXPORTER.getByName('x')"
                       ".upload(snapshot)` once and return.")
        call.result()
        uploads = await lab.env.EXPORTER.getByName("x").uploads()
        if uploads != [{"name": "Ada"}]:
            raise Fail(f"export() uploaded {uploads!r}; expected one snapshot "
                       "[{'name': 'Ada'}].",
                       "Upload the profile as a dict of its fields, the same thing get() "
                       "returns.")


BCW_HINT = (
    "Your export runs the slow upload inside blockConcurrencyWhile, which keeps EVERY request "
    "out of the object until it is done: one slow request stalls the whole queue behind it. "
    "Take the snapshot first (a storage read; the gate stays closed while you read), then "
    "await the upload OUTSIDE any critical section. The snapshot is consistent because it was "
    "read in one turn.")
LOCK_HINT = (
    "No blockConcurrencyWhile here, yet update() and get() waited for the whole export: your "
    "code holds something they wait for (an asyncio.Lock, or a flag they poll) across the slow "
    "upload. A lock held across slow I/O is the same head-of-line blocking as "
    "blockConcurrencyWhile. Take the snapshot first (a storage read: the input gate keeps it "
    "consistent), release everything, then await the upload.")


async def _not_stuck(cls: type) -> str:
    lab = _lab()
    async with lab:
        stub = lab.bind("PROFILE", cls).getByName("u1")
        await stub.update("name", "Ada")
        rec = lab.record()
        export = asyncio.ensure_future(stub.export())
        await settle(lab)  # the export is now waiting for the slow exporter
        update = asyncio.ensure_future(stub.update("city", "Paris"))
        read = asyncio.ensure_future(stub.get())
        await settle(lab)
        stuck = not (update.done() and read.done())
        await advance(lab, Exporter.DELAY + 1)
        await asyncio.gather(export, update, read, return_exceptions=True)
        rec.close()
        if stuck:
            critical = any(isinstance(e, CriticalSectionStarted) and e.object == "PROFILE:u1"
                           for e in rec.events)
            raise Fail(f"while export() waited {Exporter.DELAY:.0f} s for the exporter, an "
                       "update() and a get() sent meanwhile did not answer until it was done: "
                       "they waited for the whole export.", BCW_HINT if critical else LOCK_HINT)
        uploads = await lab.env.EXPORTER.getByName("x").uploads()
        if uploads != [{"name": "Ada"}]:
            raise Fail(f"export() started when the profile was {{'name': 'Ada'}}; city was "
                       f"updated while the upload was in flight, and the exporter received "
                       f"{uploads!r}.",
                       "Upload the snapshot read when export() started, once: read it in one "
                       "turn (one list() or get()), then await the upload of exactly that.")
        return "Updates and reads went on while the export waited for the exporter."


async def check_profile(cls: type) -> CheckResult:
    """Exercise 06a: ``update(field, value)``, ``get()``, ``export()`` (slow) that blocks no one."""
    return await run_check(
        "06a", "no head-of-line blocking", cls,
        [Scenario("update and get", _basics),
         Scenario("export uploads a snapshot", _export_sends_snapshot),
         Scenario("requests are not stuck behind a slow export", _not_stuck)],
        methods=("update", "get", "export"),
        praise="One object is one queue: anything that holds the gate across slow I/O holds up "
               "everyone. Your export waits without holding anyone up.")


# -- 06b: routing ----------------------------------------------------------------------------


def _validate_route(route: Any) -> None:
    if not callable(route) or inspect.isclass(route):
        raise Fail(f"check_router expects a function route(env, room, user), got {route!r}.",
                   "def route(env, room, user): return env.ROOMS.getByName(...)")
    if inspect.iscoroutinefunction(route):
        raise Fail("route is async def; it only picks a stub, so make it a plain def.",
                   "def route(env, room, user): return env.ROOMS.getByName(...)")


ROOMS = [f"room-{i}" for i in range(12)]
USERS = [f"user-{i}" for i in range(5)]


async def _consistent(route: Any) -> None:
    async with Lab(storage="memory", seed=1) as lab:
        lab.bind("ROOMS", RoomLog)
        for user in USERS:
            await route(lab.env, "room-0", user).post(user, f"hello from {user}")
        for reader in USERS:
            messages = await route(lab.env, "room-0", reader).messages()
            if len(messages) != len(USERS):
                raise Fail(f"{len(USERS)} users posted to room-0; {reader} then read room-0 "
                           f"through route() and saw {len(messages)} message(s): {messages}.",
                           "Everything that must be seen together (a room's messages) must "
                           "live in ONE object: route by the room, not by the user. An object "
                           "is the unit of consistency; two objects never share state.")


async def _spread(route: Any) -> str:
    async with Lab(storage="memory", seed=1) as lab:
        lab.bind("ROOMS", RoomLog)
        counts: Counter[str] = Counter()
        for room in ROOMS:
            for user in USERS:
                stub = route(lab.env, room, user)
                counts[str(stub.id)] += 1
                await stub.post(user, "hi")
        busiest = max(counts.values())
        share = busiest / sum(counts.values())
        if len(counts) < len(ROOMS) or share > 0.25:
            raise Fail(f"{len(ROOMS)} rooms x {len(USERS)} users went to {len(counts)} "
                       f"object(s); the busiest got {share:.0%} of all calls.",
                       ("One object for everything is one queue for everything (and one "
                        "machine's worth of throughput). " if len(counts) == 1 else
                        "Fewer objects than rooms: unrelated rooms share a queue. ")
                       + "Give each room its own object: `env.ROOMS.getByName(room)`.")
        return f"{len(counts)} objects, the busiest took {share:.0%} of the calls."


async def check_router(route: Any) -> CheckResult:
    """Exercise 06b: ``route(env, room, user)`` returns the stub of the object for ``room``."""
    return await run_check(
        "06b", "shard by the unit of consistency", route,
        [Scenario("everyone in a room sees the same messages", _consistent),
         Scenario("rooms are spread over objects", _spread)],
        validate=_validate_route,
        praise="Shard by what must be consistent together, and no further: one object per room "
               "keeps each room consistent and lets rooms scale out.")
