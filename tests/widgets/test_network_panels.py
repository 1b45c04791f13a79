"""Placement in the panels (Lab(network=...)): network spans on the timeline, regions in the
fleet. Reducers first (events in, rows out), then the two views headless."""

from __future__ import annotations

import asyncio

import widgets
from durable_lab import DurableObject, Lab
from durable_lab import events as ev
from widgets._reducers import FleetReducer, TimelineReducer, describe_event, fold


class Room(DurableObject):
    async def post(self, text):
        n = (await self.ctx.storage.get("n")) or 0
        self.ctx.storage.put("n", n + 1)
        return n + 1


async def run_from_two_regions(*, lab: Lab | None = None) -> tuple[Lab, list[ev.RuntimeEvent]]:
    """A room created from Tokyo, then posted to from Amsterdam (auto clock: instant)."""
    lab = lab or Lab(storage="memory", seed=1, clock="auto", network="cloudflare-regions")
    lab.bind("ROOMS", Room)
    rec = lab.record()
    await lab.client("apac-ne").env.ROOMS.getByName("tokyo").post("konnichiwa")
    await lab.client("weur").env.ROOMS.getByName("tokyo").post("hallo")
    await lab.client("weur").env.ROOMS.getByName("berlin").post("hallo")
    rec.close()
    return lab, list(rec.events)


def lanes_of(reducer: TimelineReducer) -> dict[int, list[tuple[str, int, int]]]:
    segs, _ = reducer.take()
    lanes: dict[int, list[tuple[str, int, int]]] = {}
    for d, kind, left, right in zip(segs["delivery"], segs["kind"], segs["left"],
                                    segs["right"], strict=True):
        lanes.setdefault(d, []).append((kind, left, right))
    return lanes


async def test_the_timeline_draws_the_trip_in_before_queued_and_the_trip_back_after():
    lab, events = await run_from_two_regions()
    await lab.close()
    tl = fold(TimelineReducer(only="ROOMS:tokyo"), events)
    lanes = lanes_of(tl)
    assert sorted(lanes) == [1, 2]
    for d, segments in lanes.items():
        kinds = [k for k, *_ in segments]
        assert kinds[0] == "network" and kinds[1] == "queued", (d, kinds)
        assert kinds[-1] == "network", (d, kinds)
        # the request's trip ends exactly where the delivery is queued
        assert segments[0][2] == segments[1][1]
    by_seq = {e.seq: e for e in events}
    first_trip = lanes[1][0]
    assert isinstance(by_seq[first_trip[1]], ev.NetworkHopStarted)
    assert by_seq[first_trip[1]].leg == "request"
    back = lanes[1][-1]
    assert isinstance(by_seq[back[1]], ev.NetworkHopStarted) and by_seq[back[1]].leg == "reply"
    assert isinstance(by_seq[back[2]], ev.NetworkHopEnded) and by_seq[back[2]].leg == "reply"
    assert tl.open == {} and tl._hop_sent == {} and tl._hop_delivery == {}


async def test_a_timeline_without_network_events_is_unchanged():
    lab = Lab(storage="memory", seed=1)
    lab.bind("ROOMS", Room)
    rec = lab.record()
    await lab.client("apac-ne").env.ROOMS.getByName("tokyo").post("x")
    await lab.close()
    lanes = lanes_of(fold(TimelineReducer(), rec.events))
    assert "network" not in {k for segs in lanes.values() for k, *_ in segs}


def test_a_request_not_queued_right_after_it_arrived_draws_no_network_span():
    def hop(seq, kind, leg="request"):
        return kind(seq=seq, time=0.0, object="R:x", hop=1, leg=leg, from_region="weur",
                    to_region="enam", delay=0.04, method="post")

    refused = [hop(1, ev.NetworkHopStarted), hop(2, ev.NetworkHopEnded),
               ev.DeliveryRefused(seq=3, time=0.0, object="R:x", delivery=5, method="post",
                                  reason="overloaded"),
               ev.DeliveryQueued(seq=9, time=0.0, object="R:x", delivery=6,
                                 kind_of_delivery="alarm", method="alarm", queue_length=1)]
    tl = fold(TimelineReducer(), refused)
    tl._close(6, 10, 0.0)
    assert "network" not in lanes_of(tl).get(6, [("", 0, 0)])[0][0]
    arrived = [hop(1, ev.NetworkHopStarted), hop(2, ev.NetworkHopEnded),
               ev.DeliveryQueued(seq=3, time=0.0, object="R:x", delivery=7,
                                 kind_of_delivery="rpc", method="post", queue_length=1)]
    lanes = lanes_of(fold(TimelineReducer(), arrived))
    assert lanes[7] == [("network", 1, 3)]


def test_hop_tables_stay_bounded_when_hops_never_arrive():
    tl = TimelineReducer()
    for hop in range(1, 6000):
        tl.apply(ev.NetworkHopStarted(seq=hop, time=0.0, object="R:x", hop=hop, leg="request",
                                      from_region="weur", to_region="enam", delay=0.04,
                                      method="post"))
    assert len(tl._hop_sent) == 5000 and 1 not in tl._hop_sent


async def test_the_fleet_knows_each_objects_region_and_groups_by_it():
    lab, events = await run_from_two_regions()
    await lab.close()
    fleet = fold(FleetReducer(), events)
    rows = fleet.visible()
    assert [(r.label, r.region) for r in rows] == [("ROOMS:tokyo", "apac-ne"),
                                                   ("ROOMS:berlin", "weur")]
    # grouping: a third object in Tokyo's region is drawn next to the first, not last
    fleet.apply(ev.DeliveryQueued(seq=10_000, time=0.0, object="ROOMS:osaka", delivery=99,
                                  kind_of_delivery="rpc", method="post", queue_length=1))
    fleet.apply(ev.ObjectPlaced(seq=10_001, time=0.0, object="ROOMS:osaka", region="apac-ne",
                                reason="caller"))
    assert [r.label for r in fleet.visible()] == ["ROOMS:tokyo", "ROOMS:osaka", "ROOMS:berlin"]
    plain = FleetReducer()
    plain.seed("A:a", queue=0, in_flight=0, status="idle")
    plain.seed("A:b", queue=0, in_flight=0, status="idle", region="oc")
    assert [r.region for r in plain.visible()] == ["", "oc"]


async def test_network_events_read_as_plain_words():
    lab, events = await run_from_two_regions()
    await lab.close()
    texts = [describe_event(e) for e in events
             if isinstance(e, (ev.ObjectPlaced, ev.NetworkHopStarted, ev.NetworkHopEnded))]
    assert texts[0] == "placed in apac-ne (near the caller that created it)"
    assert texts[1] == "request of post leaves apac-ne for apac-ne (5 ms one way)"
    assert texts[2] == "request of post arrives in apac-ne"


async def test_the_views_show_regions_and_network_spans():
    lab = Lab(storage="memory", seed=1, clock="auto", network="cloudflare-regions")
    fleet = widgets.fleet(lab)
    timeline = widgets.timeline(lab)
    await run_from_two_regions(lab=lab)
    for panel in (fleet, timeline):
        panel._feed.flush()
    assert list(fleet.source.data["region"]) == ["apac-ne", "weur"]
    assert "apac-ne · 0" in fleet.source.data["text"][0]
    assert "grouped by region" in fleet.summary.value
    assert "network" in set(timeline.segments.data["kind"])
    legend = [item.label["value"] for item in timeline.figure.legend[0].items]
    assert legend[0] == "network"
    assert [p.errors.outputs for p in (fleet, timeline)] == [(), ()]
    fleet.close()
    timeline.close()
    await lab.close()
    plain = Lab(storage="memory")
    view = widgets.timeline(plain)
    assert "network" not in [item.label["value"] for item in view.figure.legend[0].items]
    view.close()
    await plain.close()
    await asyncio.sleep(0)
