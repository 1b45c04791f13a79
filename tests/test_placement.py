"""Placement and the network (durable_lab/network.py): where objects live, what distance costs.

Stories on a manual clock: a call from Tokyo to an object in Tokyo answers after one local
round trip, the same call from Amsterdam after the Amsterdam-Tokyo round trip, each leg on the
lab clock. Also: hints (only the creating call counts), jurisdictions (their ids and their
errors), E-order under delays, events, workloads per region, and that ``network=None`` (the
default) changes nothing.
"""

from __future__ import annotations

import asyncio

import pytest

from durable_lab import DurableObject, Lab
from durable_lab.events import (
    DeliveryQueued,
    NetworkHopEnded,
    NetworkHopStarted,
    ObjectPlaced,
    ReplyReleased,
)
from durable_lab.network import (
    CLOUDFLARE_REGIONS_RTT_MS,
    JURISDICTIONS,
    LOCATION_HINTS,
    SAME_REGION_RTT_MS,
    Network,
)
from durable_lab.workload import run_workload


class Room(DurableObject):
    async def post(self, text):
        n = (await self.ctx.storage.get("n")) or 0
        self.ctx.storage.put("n", n + 1)
        return n + 1

    async def count(self):
        return (await self.ctx.storage.get("n")) or 0

    async def whoami(self):
        return {"name": self.ctx.id.name, "jurisdiction": self.ctx.id.jurisdiction}

    async def relay(self, target, text):
        # A call from this object to another: it leaves from this object's region.
        return await self.env.ROOMS.getByName(target).post(text)


def rtt(a: str, b: str) -> float:
    if a == b:
        return SAME_REGION_RTT_MS / 1000
    return CLOUDFLARE_REGIONS_RTT_MS.get((a, b), CLOUDFLARE_REGIONS_RTT_MS.get((b, a))) / 1000


def geo_lab(**options) -> Lab:
    lab = Lab(storage="memory", seed=1, clock="manual", network="cloudflare-regions", **options)
    lab.bind("ROOMS", Room)
    return lab


async def advance(lab: Lab, seconds: float, step: float = 0.001) -> None:
    """Move the manual clock in small steps, letting the lab run between them (a big single
    step would fire every timer on the way before any delivery ran)."""
    target = lab.clock.now() + seconds
    while lab.clock.now() < target - 1e-9:
        lab.clock.advance(min(step, target - lab.clock.now()))
        await lab.scheduler.settle()


async def answered_after(lab: Lab, call, limit: float = 2.0) -> float:
    """Lab seconds from sending ``call`` to its answer, moving the manual clock from one timer
    to the next (so every leg ends exactly when it is due)."""
    start = lab.clock.now()
    fut = asyncio.ensure_future(call)
    await lab.scheduler.settle()
    while not fut.done():
        due = lab.clock.next_timer()
        if due is None or due - start > limit:
            raise AssertionError(f"no answer within {limit} s of lab time")
        lab.clock.advance_to(due)
        await lab.scheduler.settle()
    fut.result()
    return lab.clock.now() - start


# -- the table -------------------------------------------------------------------------------


def test_the_table_covers_every_pair_of_cloudflare_regions_symmetrically():
    net = Network()
    for a in LOCATION_HINTS:
        for b in LOCATION_HINTS:
            assert net.rtt(a, b) == net.rtt(b, a) > 0
            assert net.one_way(a, b) == net.rtt(a, b) / 2
    assert net.rtt("weur", "weur") == SAME_REGION_RTT_MS / 1000
    # Plausibility, not precision: oceans cost more than neighbours.
    assert net.rtt("weur", "eeur") < net.rtt("weur", "enam") < net.rtt("weur", "apac-ne")
    assert net.rtt("wnam", "apac-ne") < net.rtt("enam", "apac-ne")


def test_a_dict_overrides_pairs_and_may_add_regions():
    net = Network({("weur", "enam"): 50, ("mars", "enam"): 1200})
    assert net.rtt("enam", "weur") == 0.05
    assert net.rtt("mars", "enam") == 1.2
    assert net.rtt("weur", "apac-ne") == rtt("weur", "apac-ne")  # untouched pairs keep theirs
    assert "mars" in net.regions
    with pytest.raises(ValueError, match=r"^this network has no round-trip time between 'mars' "
                                         r"and 'weur': add it"):
        net.rtt("mars", "weur")
    with pytest.raises(ValueError, match=r"^unknown region 'venus'; regions of this network: "):
        net.rtt("venus", "weur")


def test_bad_network_tables_are_refused_with_what_is_allowed():
    with pytest.raises(TypeError, match=r"maps \(region, region\) pairs .* got the key 'weur'"):
        Network({"weur": 10})
    with pytest.raises(ValueError, match=r"must be a number of milliseconds > 0 and <= 60000"):
        Network({("weur", "enam"): -5})
    with pytest.raises(ValueError, match=r"^network must be None \(no geography\), one of "
                                         r"'cloudflare-regions', a dict"):
        Lab(storage="memory", network="internet")
    with pytest.raises(ValueError, match=r"^default_region 'mars' is not a region"):
        Network(default_region="mars")


# -- network=None: nothing changes -------------------------------------------------------------


async def test_without_a_network_calls_cost_no_lab_time_and_emit_no_network_events():
    lab = Lab(storage="memory", seed=1, clock="manual")
    lab.bind("ROOMS", Room)
    rec = lab.record()
    assert lab.network is None
    start = lab.clock.now()
    stub = lab.client("apac-ne").env.ROOMS.getByName("r", locationHint="oc")
    assert await stub.post("hi") == 1  # answered without the clock moving at all
    assert lab.clock.now() == start
    assert not rec.of(NetworkHopStarted, NetworkHopEnded, ObjectPlaced)
    assert (await lab.objects())[0].region is None
    await lab.close()


async def test_without_a_network_hints_and_jurisdictions_are_still_checked():
    async with Lab(storage="memory") as lab:
        ns = lab.bind("ROOMS", Room)
        with pytest.raises(TypeError, match=r"^invalid locationHint 'europe': a location hint is "
                                            r"one of wnam, enam, sam, weur, eeur, apac, apac-ne, "
                                            r"apac-se, oc, afr, me"):
            ns.getByName("r", locationHint="europe")
        with pytest.raises(ValueError, match=r"^unknown region 'mars': a caller's region is one "
                                             r"of wnam, "):
            lab.client("mars")
        assert await ns.jurisdiction("eu").getByName("r").whoami() == {
            "name": "r", "jurisdiction": "eu"}


# -- delays on the lab clock -------------------------------------------------------------------


async def test_a_call_pays_one_way_in_and_one_way_back_on_the_lab_clock():
    lab = geo_lab()
    rec = lab.record()
    tokyo = lab.client("apac-ne").env.ROOMS
    local = await answered_after(lab, tokyo.getByName("r").post("hi"))
    assert local == pytest.approx(rtt("apac-ne", "apac-ne"), abs=1e-6)
    far = await answered_after(lab, lab.client("weur").env.ROOMS.getByName("r").post("hi"))
    assert far == pytest.approx(rtt("weur", "apac-ne"), abs=1e-6)
    # Each leg is a started/ended pair with its delay; the request ends right before queueing.
    legs = [(e.kind, e.leg, e.from_region, e.to_region) for e in
            rec.of(NetworkHopStarted, NetworkHopEnded) if e.hop == 2]
    assert legs == [("NetworkHopStarted", "request", "weur", "apac-ne"),
                    ("NetworkHopEnded", "request", "weur", "apac-ne"),
                    ("NetworkHopStarted", "reply", "apac-ne", "weur"),
                    ("NetworkHopEnded", "reply", "apac-ne", "weur")]
    ended = next(e for e in rec.of(NetworkHopEnded) if e.hop == 2 and e.leg == "request")
    following = next(e for e in rec.events if e.seq == ended.seq + 1)
    assert isinstance(following, DeliveryQueued)
    started = [e for e in rec.of(NetworkHopStarted) if e.hop == 2]
    assert {e.delay for e in started} == {rtt("weur", "apac-ne") / 2}
    assert ended.time - started[0].time == pytest.approx(rtt("weur", "apac-ne") / 2)
    # The reply leaves only after the output gate released it.
    released = rec.of(ReplyReleased)[-1] if rec.of(ReplyReleased) else None
    reply_start = next(e for e in started if e.leg == "reply")
    if released is not None:
        assert released.seq < reply_start.seq
    await lab.close()


async def test_the_reply_waits_for_the_commit_then_travels():
    lab = geo_lab(commit_latency=0.05)
    took = await answered_after(lab, lab.client("enam").env.ROOMS.getByName("r").post("hi"))
    assert took == pytest.approx(0.05 + rtt("enam", "enam"), abs=1e-6)
    await lab.close()


async def test_an_auto_clock_jumps_over_the_delays():
    async with Lab(storage="memory", clock="auto", network="cloudflare-regions") as lab:
        ns = lab.bind("ROOMS", Room)
        stub = lab.client("oc").env.ROOMS.getByName("r", locationHint="sam")
        start = lab.clock.now()
        assert await stub.post("hi") == 1
        assert lab.clock.now() - start == pytest.approx(rtt("oc", "sam"))
        assert lab.network.region_of(ns.getByName("r")) == "sam"


async def test_a_real_clock_pays_the_delay_in_real_time():
    net = {("weur", "eeur"): 40}
    async with Lab(storage="memory", network=net) as lab:
        lab.bind("ROOMS", Room)
        await lab.client("eeur").env.ROOMS.getByName("r", locationHint="weur").post("warm")
        stub = lab.client("eeur").env.ROOMS.getByName("r")
        loop = asyncio.get_running_loop()
        start = loop.time()
        await stub.post("hi")
        assert loop.time() - start >= 0.039


async def test_calls_between_objects_leave_from_the_callers_region():
    lab = geo_lab()
    rec = lab.record()
    # "a" lives in Sydney, "b" in Amsterdam; the client sits next to "a".
    await answered_after(lab, lab.client("weur").env.ROOMS.getByName("b").post("x"))
    took = await answered_after(lab, lab.client("oc").env.ROOMS.getByName("a").relay("b", "hi"))
    assert took == pytest.approx(rtt("oc", "oc") + rtt("oc", "weur"), abs=1e-6)
    inner = [e for e in rec.of(NetworkHopStarted) if e.caller == "ROOMS:a"]
    assert [(e.leg, e.from_region, e.to_region) for e in inner] == [
        ("request", "oc", "weur"), ("reply", "weur", "oc")]
    await lab.close()


async def test_calls_on_one_stub_arrive_in_order_under_delays():
    lab = geo_lab()
    order = []

    class Log(DurableObject):
        async def add(self, n):
            order.append(n)

    lab.bind("LOG", Log)
    stub = lab.client("sam").env.LOG.getByName("log", locationHint="apac-se")
    calls = [asyncio.ensure_future(stub.add(n)) for n in range(20)]
    await advance(lab, 0.5, step=0.01)
    await asyncio.gather(*calls)
    assert order == list(range(20))
    await lab.close()


async def test_wait_idle_waits_for_messages_on_their_way_and_close_fails_them():
    async with Lab(storage="memory", clock="auto", network="cloudflare-regions") as lab:
        lab.bind("ROOMS", Room)
        fut = asyncio.ensure_future(lab.client("afr").env.ROOMS.getByName("r").post("hi"))
        await asyncio.sleep(0)
        assert lab.network.in_flight == 1
        await lab.wait_idle()
        assert fut.done() and fut.result() == 1
    lab = geo_lab()
    fut = asyncio.ensure_future(lab.client("afr").env.ROOMS.getByName("r").post("hi"))
    await lab.scheduler.settle()
    await asyncio.wait_for(lab.close(), 2)  # a message in flight on a manual clock: no hang
    assert "lab is closed" in str(fut.exception())


# -- placement and hints -----------------------------------------------------------------------


async def test_an_object_is_placed_near_the_caller_that_creates_it_and_stays():
    lab = geo_lab()
    rec = lab.record()
    stub = lab.client("apac-se").env.ROOMS.getByName("r")
    assert lab.network.region_of(stub) is None  # a stub alone creates nothing
    await answered_after(lab, stub.post("first"))
    await answered_after(lab, lab.client("wnam").env.ROOMS.getByName("r").post("later"))
    assert lab.network.region_of(stub) == "apac-se"
    placed = rec.of(ObjectPlaced)
    assert [(e.object, e.region, e.reason, e.caller_region) for e in placed] == [
        ("ROOMS:r", "apac-se", "caller", "apac-se")]
    assert lab.network.placements() == {"ROOMS:r": "apac-se"}
    assert lab.network.region_of(lab.env.ROOMS.idFromName("r")) == "apac-se"
    assert lab.network.region_of(lab.env.ROOMS.idFromName("never-used")) is None
    with pytest.raises(TypeError, match=r"^region_of\(\) takes a stub or an id, got str"):
        lab.network.region_of("r")
    assert [o.region for o in await lab.objects()] == ["apac-se"]
    await lab.close()


async def test_only_the_call_that_creates_the_object_respects_the_hint():
    lab = geo_lab()
    ns = lab.client("enam").env.ROOMS
    early = ns.getByName("r", {"locationHint": "weur"})   # Python Workers' options dict
    await answered_after(lab, ns.getByName("r", locationHint="oc").post("creates it"))
    await answered_after(lab, early.post("too late"))
    assert lab.network.region_of(early) == "oc"
    assert lab.network.region_of(ns.get(ns.idFromName("r"), locationHint="me")) == "oc"
    await lab.close()


async def test_stubs_of_lab_env_call_from_the_default_region():
    lab = geo_lab()
    took = await answered_after(lab, lab.env.ROOMS.getByName("r", locationHint="weur").post("x"))
    assert lab.network.default_region == "enam"
    assert took == pytest.approx(rtt("enam", "weur"), abs=1e-6)
    await lab.close()


async def test_bad_hints_and_options_name_what_is_allowed():
    lab = geo_lab()
    ns = lab.env.ROOMS
    with pytest.raises(TypeError, match=r"^invalid locationHint 'eu': a location hint is one of "
                                        r"wnam, .*, me \(e\.g\. getByName\(name, "
                                        r"locationHint='weur'\)\)$"):
        ns.getByName("r", {"locationHint": "eu"})
    with pytest.raises(TypeError, match=r"^get\(\) got an unknown option 'locationhint'; "
                                        r"options: locationHint$"):
        ns.get(ns.idFromName("r"), {"locationhint": "weur"})
    with pytest.raises(TypeError, match=r"^getByName\(\) got locationHint twice"):
        ns.getByName("r", {"locationHint": "weur"}, locationHint="weur")
    with pytest.raises(TypeError, match=r"options must be a dict"):
        ns.getByName("r", "weur")
    await lab.close()


# -- jurisdictions -----------------------------------------------------------------------------


async def test_a_jurisdiction_gives_other_ids_for_the_same_name():
    lab = geo_lab()
    ns = lab.env.ROOMS
    eu = ns.jurisdiction("eu")
    plain, in_eu = ns.idFromName("r"), eu.idFromName("r")
    assert plain != in_eu and not plain.equals(in_eu)
    assert (plain.jurisdiction, in_eu.jurisdiction) == (None, "eu")
    assert eu.idFromName("r") == in_eu  # still deterministic
    assert ns.jurisdiction("fedramp").idFromName("r") not in (plain, in_eu)
    # The id string remembers its jurisdiction wherever it is parsed.
    assert ns.idFromString(str(in_eu)).jurisdiction == "eu"
    assert eu.newUniqueId().jurisdiction == "eu"
    assert ns.newUniqueId({"jurisdiction": "eu"}).jurisdiction == "eu"
    assert set(JURISDICTIONS) == {"eu", "fedramp", "fedramp-high", "us"}
    await lab.close()


async def test_a_jurisdictional_namespace_refuses_ids_of_another_jurisdiction():
    lab = geo_lab()
    ns = lab.env.ROOMS
    eu = ns.jurisdiction("eu")
    message = (r"^get called on jurisdictional subnamespace with an ID from a different "
               r"jurisdiction")
    with pytest.raises(TypeError, match=message + r" \(the id's jurisdiction is None, this "
                                                  r"subnamespace's is 'eu'\)$"):
        eu.get(ns.idFromName("r"))
    with pytest.raises(TypeError, match=message):
        eu.get(ns.jurisdiction("us").idFromName("r"))
    # The plain namespace takes ids of any jurisdiction (Cloudflare: "You will not run into an
    # error if the DurableObjectNamespace is not associated with a jurisdiction").
    whoami = asyncio.ensure_future(ns.get(eu.idFromName("r")).whoami())
    await answered_after(lab, whoami)
    assert whoami.result() == {"name": "r", "jurisdiction": "eu"}
    with pytest.raises(TypeError, match=r"^invalid jurisdiction 'EU': a jurisdiction is one of "
                                        r"eu, fedramp, fedramp-high, us"):
        ns.jurisdiction("EU")
    await lab.close()


async def test_a_jurisdiction_keeps_its_objects_in_its_regions():
    lab = geo_lab()
    rec = lab.record()
    eu_from_tokyo = lab.client("apac-ne").env.ROOMS.jurisdiction("eu")
    await answered_after(lab, eu_from_tokyo.getByName("a").post("x"))
    await answered_after(lab, eu_from_tokyo.getByName("b", locationHint="eeur").post("x"))
    await answered_after(lab, eu_from_tokyo.getByName("c", locationHint="apac-ne").post("x"))
    got = {e.object: (e.region, e.reason, e.jurisdiction) for e in rec.of(ObjectPlaced)}
    nearest = min(("weur", "eeur"), key=lambda r: rtt("apac-ne", r))
    assert got == {"ROOMS:a": (nearest, "jurisdiction", "eu"),
                   "ROOMS:b": ("eeur", "hint", "eu"),
                   "ROOMS:c": (nearest, "jurisdiction", "eu")}
    await lab.close()


# -- workloads per region ----------------------------------------------------------------------


async def test_a_workload_measures_lab_time_per_client_region():
    async with Lab(storage="memory", clock="auto", network="cloudflare-regions") as lab:
        ns = lab.bind("ROOMS", Room)
        await lab.client("weur").env.ROOMS.getByName("global").post("created in weur")
        result = await run_workload(ns, method="post", args=("hi",), clients=3, per_client=4,
                                    names=["global"], regions=["weur", "apac-ne", "sam"],
                                    timing="lab")
        table = result.per_region()
        assert list(table) == ["weur", "apac-ne", "sam"]
        for region in table:
            assert table[region]["calls"] == 4
            assert table[region]["p50"] >= rtt(region, "weur") - 1e-9
        assert table["weur"]["p95"] < table["apac-ne"]["p50"]
        assert {c.region for c in result.calls} == {"weur", "apac-ne", "sam"}
        assert result.timing == "lab" and "latency by client region" in result.summary()
        assert result.percentile(50, region="sam") == table["sam"]["p50"]
        with pytest.raises(ValueError, match=r"^unknown region 'mars'"):
            await run_workload(ns, method="post", calls=1, regions=["mars"])
        with pytest.raises(ValueError, match=r"^regions must be a non-empty list"):
            await run_workload(ns, method="post", calls=1, regions="weur")
        with pytest.raises(ValueError, match=r"^timing must be 'wall' or 'lab'"):
            await run_workload(ns, method="post", calls=1, timing="cpu")


async def test_a_network_object_configures_labs_without_sharing_placements():
    table = Network({("weur", "enam"): 70}, default_region="weur")
    async with Lab(storage="memory", clock="auto", network=table) as one, \
            Lab(storage="memory", clock="auto", network=table) as two:
        for lab in (one, two):
            lab.bind("ROOMS", Room)
        await one.env.ROOMS.getByName("r").post("x")
        assert one.network.region_of(one.env.ROOMS.getByName("r")) == "weur"
        assert two.network.placements() == {}
        assert one.network.rtt("enam", "weur") == 0.07
    with pytest.raises(RuntimeError, match="table only"):
        table.placements()


# -- clients ------------------------------------------------------------------------------------


async def test_a_client_sees_every_binding_from_its_region_and_follows_a_rebind():
    lab = geo_lab()
    client = lab.client("me")
    assert repr(client) == "<Client in me>"
    assert client.ROOMS.name == "ROOMS" and client.env.ROOMS.cls is Room
    assert "calling from me" in repr(client.env.ROOMS)
    with pytest.raises(AttributeError, match=r"env has no binding 'CHAT' \(bindings: ROOMS\)"):
        _ = client.env.CHAT

    class Room2(Room):
        async def version(self):
            return 2

    lab.bind("ROOMS", Room2)  # a code update: views see the new class
    assert client.env.ROOMS.cls is Room2
    version = asyncio.ensure_future(client.env.ROOMS.getByName("r").version())
    await answered_after(lab, version)
    assert version.result() == 2
    assert lab.network.region_of(client.env.ROOMS.getByName("r")) == "me"
    await lab.close()
