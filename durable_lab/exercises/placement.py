"""Exercise 10: choose the shard key and the location hints so every region meets its budget.

The learner writes ``route(env, room, user)``, returning the stub a message for ``room`` goes
to. ``env`` is the bindings as seen from the user's region (``lab.client(region).env``), so the
stub's calls come from there. Rooms are named ``"<home region>/<topic>"``: most of a room's
members live in its home region. The checks run on ``Lab(network="cloudflare-regions")`` with an
auto clock and measure lab time, so the latencies are the table's round trips, the same on
every machine.
"""

from __future__ import annotations

import inspect
from typing import Any

from ..lab import Lab
from ..network import LOCATION_HINTS
from ._core import CheckResult, Fail, Scenario, run_check
from .helpers import RoomLog

__all__ = ["BUDGET_MS", "MEMBER_POSTS", "ROOMS", "check_placement", "home_of"]

#: Rooms of the chat service: two per home region, on five continents.
ROOMS = ("wnam/startups", "wnam/hiking", "weur/techno", "weur/football", "apac-ne/anime",
         "apac-ne/ramen", "sam/futebol", "sam/samba", "oc/surf", "oc/cricket")

#: The latency budget: p95 of a member's post, per region, in milliseconds of lab time.
BUDGET_MS = 50

#: Posts each room gets from members in its home region (after the one that creates it).
MEMBER_POSTS = 5


def home_of(room: str) -> str:
    """The home region of ``room`` (the part of its name before ``/``)."""
    return room.split("/", 1)[0]


def _lab() -> Lab:
    lab = Lab(storage="memory", seed=1, clock="auto", network="cloudflare-regions")
    lab.bind("ROOMS", RoomLog)
    return lab


def _validate_route(route: Any) -> None:
    if not callable(route) or inspect.isclass(route):
        raise Fail(f"check_placement expects a function route(env, room, user), got {route!r}.",
                   "def route(env, room, user): return env.ROOMS.getByName(...)")
    if inspect.iscoroutinefunction(route):
        raise Fail("route is async def; it only picks a stub, so make it a plain def.",
                   "def route(env, room, user): return env.ROOMS.getByName(...)")


async def _post(lab: Lab, route: Any, room: str, region: str, user: str,
                used: dict[str, str] | None = None) -> float:
    """Post to ``room`` as ``user`` in ``region``; the lab milliseconds it took. ``used`` maps
    each room to the object its last post went to."""
    stub = route(lab.client(region).env, room, user)
    if used is not None:
        used[room] = str(stub.id)
        used[f"stub:{room}"] = stub
    start = lab.clock.now()
    await stub.post(user, f"{user} in {region}")
    return (lab.clock.now() - start) * 1000


def _p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[max(0, -(-95 * len(ordered) // 100) - 1)]


async def _consistent(route: Any) -> None:
    room = "weur/techno"
    regions = ("weur", "wnam", "apac-ne", "sam", "oc")
    async with _lab() as lab:
        for region in regions:
            await _post(lab, route, room, region, f"user-{region}")
        for region in regions:
            seen = await route(lab.client(region).env, room, f"user-{region}").messages()
            if len(seen) != len(regions):
                raise Fail(f"{len(regions)} users from {', '.join(regions)} posted to {room}; "
                           f"user-{region} then read it through route() and saw {len(seen)} "
                           f"message(s).",
                           "A room's messages must live in ONE object: route by the room, not "
                           "by the user or their region. Objects never share state.")


async def _members_budget(route: Any, *, traveller: bool) -> str:
    async with _lab() as lab:
        network = lab.network
        assert network is not None
        took: dict[str, list[float]] = {}
        creators: dict[str, str] = {}
        used: dict[str, Any] = {}
        for room in ROOMS:
            home = home_of(room)
            # The first post creates the room. A traveller: from the region farthest away.
            first = (max(LOCATION_HINTS, key=lambda r: (network.rtt(home, r), r))
                     if traveller else home)
            creators[room] = first
            await _post(lab, route, room, first, "creator")
            for n in range(MEMBER_POSTS):
                took.setdefault(home, []).append(
                    await _post(lab, route, room, home, f"member-{n}", used))
        p95 = {region: _p95(values) for region, values in took.items()}
        over = {r: ms for r, ms in p95.items() if ms > BUDGET_MS}
        table = ", ".join(f"{r} {ms:.0f} ms" for r, ms in p95.items())
        if over:
            # Where the object each room's members posted to lives.
            placed = {room: network.region_of(used[f"stub:{room}"]) for room in ROOMS}
            where = ", ".join(f"{room} in {placed[room]}" for room in ROOMS[:4])
            if len({used[room] for room in ROOMS}) == 1:
                hint = ("One object for everyone lives in one place: members near it are fast, "
                        "everyone else pays an ocean crossing twice per call. Give each room "
                        "its own object (`env.ROOMS.getByName(room)`) so it can live near its "
                        "members.")
            elif traveller and all(placed[room] == creators[room] for room in ROOMS):
                hint = ("Each room was placed where its FIRST message came from (a traveller "
                        "far from home) and stays there: an object lives near the caller that "
                        "creates it. Ask for the room's home region instead: "
                        "`env.ROOMS.getByName(room, locationHint=home)`, where home is the part "
                        "of the room's name before '/'. Only the call that creates the object "
                        "reads the hint, so every call may pass it.")
            else:
                hint = ("Put each room near the members who use it: one object per room, "
                        "created in (or hinted to) the room's home region "
                        "(`locationHint=home`, home being the part of the room's name before "
                        "'/').")
            raise Fail(f"p95 latency of members' posts per region: {table}; over the budget "
                       f"of {BUDGET_MS} ms in {', '.join(over)}. Where the rooms members "
                       f"posted to live: {where}, ...",
                       hint)
        return f"p95 per region: {table} (budget {BUDGET_MS} ms)."


async def _within_budget(route: Any) -> str:
    return await _members_budget(route, traveller=False)


async def _traveller(route: Any) -> str:
    return await _members_budget(route, traveller=True)


async def _spread(route: Any) -> str:
    async with _lab() as lab:
        ids = {str(route(lab.client(home_of(room)).env, room, "someone").id) for room in ROOMS}
        if len(ids) < len(ROOMS):
            raise Fail(f"{len(ROOMS)} rooms went to {len(ids)} object(s).",
                       ("One object for everything is one queue for everything. "
                        if len(ids) == 1 else
                        "Fewer objects than rooms: unrelated rooms share one queue (routing by "
                        "region is fast, but every room of a region waits behind the others). ")
                       + "Give each room its own object: the room is the shard key.")
        return f"{len(ids)} objects for {len(ROOMS)} rooms."


async def check_placement(route: Any) -> CheckResult:
    """Exercise 10: ``route(env, room, user)`` keeps every region within its latency budget."""
    return await run_check(
        "10", "place each room near its members", route,
        [Scenario("everyone in a room sees the same messages", _consistent),
         Scenario(f"members' posts within {BUDGET_MS} ms (p95) in every region", _within_budget),
         Scenario("a room created by a traveller still lives near its members", _traveller),
         Scenario("rooms are spread over objects", _spread)],
        validate=_validate_route,
        praise="Shard by what must be consistent together (the room), and place each shard "
               "where its users are (locationHint): consistency and latency, both.")

