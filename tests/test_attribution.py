"""Latency attribution (durable_lab/attribution.py): where did each call's time go?

Constructed scenarios whose breakdown is known in advance, on the auto clock (lab time jumps to
the next timer, so every number is exact): a 50 ms commit is 50 ms held by the output gate, a
call queued behind a 1 s blockConcurrencyWhile waits 1 s for admission, a 100 ms timer is 100 ms
of other I/O, a network hop is network, a continuation that finds the gate taken waits to
re-enter. In every one the phases add up to the latency the caller measured on the lab clock.
"""

from __future__ import annotations

import asyncio
import json

import pytest

import durable_lab
from durable_lab import DurableObject, Lab
from durable_lab.attribution import PHASES, Breakdown, last_call, phase_percentiles
from durable_lab.check import History
from durable_lab.network import CLOUDFLARE_REGIONS_RTT_MS
from durable_lab.workload import run_workload


class Work(DurableObject):
    async def ping(self):
        return 1

    async def write(self, n):
        for i in range(n):
            await self.ctx.storage.put(f"k{i}", i)
        return n

    async def nap(self, seconds):
        await durable_lab.sleep(seconds)
        return seconds

    async def block(self, seconds):
        async def hold():
            await durable_lab.sleep(seconds)

        await self.ctx.blockConcurrencyWhile(hold)
        return seconds

    async def bump(self):
        n = (await self.ctx.storage.get("n")) or 0
        self.ctx.storage.put("n", n + 1)
        return n + 1

    async def read(self, key):
        return await self.ctx.storage.get(key)

    async def forward(self, name, n):
        # A call to another object: I/O for this call; the callee's breakdown is reachable.
        return await self.env.WORK.getByName(name).write(n)

    async def write_then_forward(self, name):
        # Its own write is pending when it calls out: the caller's output gate holds the call.
        self.ctx.storage.put("mine", 1)
        return await self.env.WORK.getByName(name).ping()


class Loader(DurableObject):
    def __init__(self, ctx, env):
        super().__init__(ctx, env)
        # The usual pattern: load state before any call, the gate held meanwhile.
        ctx.blockConcurrencyWhile(self.load)

    async def load(self):
        await durable_lab.sleep(0.2)

    async def ping(self):
        return 1


def auto_lab(**options) -> Lab:
    lab = Lab(storage="memory", seed=1, clock="auto", record=True, **options)
    lab.bind("WORK", Work)
    return lab


async def timed(lab: Lab, awaitable):
    """(result, lab seconds the caller waited)."""
    t0 = lab.clock.now()
    result = await awaitable
    return result, lab.clock.now() - t0


def assert_sums_to(b: Breakdown, measured: float) -> None:
    """Phases add up to the caller's measured latency (within 1 %)."""
    assert set(b.phases) == set(PHASES)
    assert sum(b.phases.values()) == pytest.approx(measured, rel=0.01, abs=1e-9)
    assert b.end is not None
    assert b.end - b.start == pytest.approx(measured, rel=0.01, abs=1e-9)


async def test_a_50_ms_commit_is_50_ms_held_by_the_output_gate():
    lab = auto_lab(commit_latency=0.05)
    try:
        stub = lab.env.WORK.getByName("a")
        _, measured = await timed(lab, stub.write(40))
        b = last_call(stub)
        assert measured == pytest.approx(0.05, abs=1e-6)
        assert b.phases["output_gate"] == pytest.approx(0.05, abs=1e-6)
        assert b.dominant == "output_gate"
        assert b.held_writes == 40 and b.held_commits == 1
        assert_sums_to(b, measured)
        text = str(lab.explain(stub))
        assert ("100 % held by the output gate: 40 write(s) committed in one batch; "
                "commit_latency 50 ms") in text
        assert "output_gate" in text and "50.000 ms" in text
    finally:
        await lab.close()


async def test_a_call_queued_behind_a_1_s_block_concurrency_while_waits_1_s_for_admission():
    lab = auto_lab()
    try:
        stub = lab.env.WORK.getByName("a")
        t0 = lab.clock.now()
        blocker = asyncio.ensure_future(stub.block(1.0))
        other = lab.env.WORK.getByName("a")
        waiter = asyncio.ensure_future(other.ping())
        await asyncio.gather(blocker, waiter)
        measured = lab.clock.now() - t0
        b = last_call(other)
        assert b.phases["queued"] == pytest.approx(1.0, abs=1e-6)
        assert b.dominant == "queued"
        assert b.behind_section
        assert_sums_to(b, measured)
        assert "waiting for admission at the input gate: a blockConcurrencyWhile held the gate" \
            in lab.explain(other).verdict
        # The blocker itself: its time is its own critical section's timer, gate held.
        own = last_call(stub)
        assert own.section == pytest.approx(1.0, abs=1e-6)
        assert own.phases["queued"] == 0
        assert "inside its own blockConcurrencyWhile" in lab.explain(stub).verdict
    finally:
        await lab.close()


async def test_the_first_call_waits_for_the_constructors_block_concurrency_while():
    lab = auto_lab()
    lab.bind("LOADER", Loader)
    try:
        stub = lab.env.LOADER.getByName("l")
        _, measured = await timed(lab, stub.ping())
        b = last_call(stub)
        assert b.phases["queued"] == pytest.approx(0.2, abs=1e-6)
        assert b.behind_section and b.behind_constructor and b.queue_ahead == 0
        assert_sums_to(b, measured)
        assert "a blockConcurrencyWhile held the gate while it waited" in \
            lab.explain(stub).verdict
        # The second call finds the instance loaded: it never queues.
        await stub.ping()
        again = last_call(stub)
        assert again.phases["queued"] == 0 and not again.behind_constructor
    finally:
        await lab.close()


async def test_a_100_ms_timer_is_100_ms_of_other_io_then_no_reentry_wait():
    lab = auto_lab()
    try:
        stub = lab.env.WORK.getByName("a")
        _, measured = await timed(lab, stub.nap(0.1))
        b = last_call(stub)
        assert b.phases["io"] == pytest.approx(0.1, abs=1e-6)
        assert b.phases["reentry"] == pytest.approx(0.0, abs=1e-9)
        assert b.timers == 1 and b.timer_wait == pytest.approx(0.1, abs=1e-6)
        assert b.turns == 2  # before the sleep, and after it
        assert_sums_to(b, measured)
        assert lab.explain(stub).verdict.startswith(
            "100 % waiting on other I/O with the input gate open: 1 timer(s) (100 ms)")
    finally:
        await lab.close()


async def test_reentry_wait_when_another_call_holds_the_gate_at_resume_time():
    # A sleeps 100 ms. At 50 ms, B takes the gate for 200 ms (a critical section). A's timer
    # fires at 100 ms but A can come back in only when B lets go, at 250 ms: 150 ms re-entry.
    lab = auto_lab()
    try:
        a = lab.env.WORK.getByName("o")
        b_stub = lab.env.WORK.getByName("o")
        t0 = lab.clock.now()
        first = asyncio.ensure_future(a.nap(0.1))

        async def later():
            await lab.clock.sleep(0.05)
            return await b_stub.block(0.2)

        await asyncio.gather(first, later())
        b = last_call(a)
        assert b.phases["io"] == pytest.approx(0.1, abs=1e-6)
        assert b.phases["reentry"] == pytest.approx(0.15, abs=1e-6)
        assert b.dominant == "reentry"
        assert b.end - t0 == pytest.approx(0.25, abs=1e-6)
        assert sum(b.phases.values()) == pytest.approx(0.25, abs=1e-6)
        assert "waiting to re-enter through the input gate" in lab.explain(a).verdict
    finally:
        await lab.close()


async def test_network_delay_shows_as_network_with_the_region_pair():
    lab = Lab(storage="memory", seed=1, clock="auto", network="cloudflare-regions")
    lab.bind("WORK", Work)
    try:
        # The object is placed in enam by its hint; the caller is in weur.
        stub = lab.client("weur").env.WORK.getByName("far", locationHint="enam")
        _, measured = await timed(lab, stub.ping())
        rtt = CLOUDFLARE_REGIONS_RTT_MS[("enam", "weur")] / 1000
        b = last_call(stub)
        assert measured == pytest.approx(rtt)
        assert b.phases["network"] == pytest.approx(rtt)
        assert b.route == ("weur", "enam", pytest.approx(rtt))
        assert_sums_to(b, measured)
        assert "on the network: weur → enam and back, round trip 80 ms" in \
            lab.explain(stub).verdict
    finally:
        await lab.close()


async def test_network_and_commit_together_add_up():
    lab = Lab(storage="memory", seed=1, clock="auto", network="cloudflare-regions",
              commit_latency=0.05, record=True)
    lab.bind("WORK", Work)
    try:
        stub = lab.client("apac-ne").env.WORK.getByName("tokyo")  # placed near its caller
        _, measured = await timed(lab, stub.write(3))
        b = lab.history().op(1).breakdown
        assert b.phases["network"] == pytest.approx(0.010, abs=1e-6)  # same-region round trip
        assert b.phases["output_gate"] == pytest.approx(0.05, abs=1e-6)
        assert_sums_to(b, measured)
    finally:
        await lab.close()


async def test_storage_read_with_the_gate_held_on_sqlite_storage(tmp_path):
    # Real clock: the read really goes to SQLite (a cache miss on a fresh instance).
    lab = Lab(tmp_path / "lab", seed=1)
    lab.bind("WORK", Work)
    try:
        stub = lab.env.WORK.getByName("s")
        await stub.write(1)
        await lab.evict(stub)
        t0 = lab.clock.now()
        assert await stub.read("k0") == 0
        measured = lab.clock.now() - t0
        b = last_call(stub)
        assert b.reads == 1
        assert b.phases["storage"] > 0
        assert b.phases["io"] == 0 and b.phases["reentry"] == 0
        assert b.end - b.start <= measured + 1e-6
        assert sum(b.phases.values()) == pytest.approx(b.end - b.start)
        assert b.storage == "sqlite"
    finally:
        await lab.close()


async def test_storage_verdict_names_the_reads():
    b = Breakdown(object="W:s", delivery=3, method="read", start=0.0, end=0.01,
                  phases={**dict.fromkeys(PHASES, 0.0), "storage": 0.009, "running": 0.001},
                  reads=2, storage="sqlite")
    verdict = durable_lab.attribution.explain(b).verdict
    assert verdict.startswith("90 % waiting for its own storage reads with the input gate held:"
                              " 2 read(s) that missed the cache")
    assert "Lab(storage='sqlite')" in verdict


async def test_a_call_to_another_object_is_io_and_its_own_breakdown_is_reachable():
    lab = auto_lab(commit_latency=0.05)
    try:
        stub = lab.env.WORK.getByName("front")
        _, measured = await timed(lab, stub.forward("back", 5))
        b = lab.history().op(1).breakdown
        assert b.phases["io"] == pytest.approx(0.05, abs=1e-6)
        assert_sums_to(b, measured)
        (callee,) = b.calls
        assert callee.object == "WORK:back" and callee.method == "write"
        assert callee.phases["output_gate"] == pytest.approx(0.05, abs=1e-6)
        assert callee.delivery != b.delivery
        verdict = lab.explain(b).verdict
        assert "1 call(s) to other objects (slowest WORK:back.write 50 ms: mostly output gate" \
            in verdict
        assert "held by the output gate" in lab.explain(callee).verdict
    finally:
        await lab.close()


async def test_an_outgoing_call_held_by_the_callers_output_gate():
    lab = auto_lab(commit_latency=0.05)
    try:
        stub = lab.env.WORK.getByName("front")
        await stub.write_then_forward("back")
        (callee,) = lab.history().op(1).breakdown.calls
        assert callee.caller_held == pytest.approx(0.05, abs=1e-6)
        assert callee.phases["output_gate"] == pytest.approx(0.05, abs=1e-6)
        assert callee.phases["network"] == 0
        assert "held by the caller's output gate" in lab.explain(callee).verdict
    finally:
        await lab.close()


async def test_history_entries_carry_breakdowns_through_json():
    lab = auto_lab(commit_latency=0.02)
    try:
        stub = lab.env.WORK.getByName("a")
        await stub.write(2)
        await stub.nap(0.01)
        history = lab.history()
        assert [round(op.breakdown.latency, 6) for op in history] == [0.02, 0.01]
        again = History.from_json(history.to_json())
        assert again.op(1).breakdown == history.op(1).breakdown
        assert json.loads(history.to_json())["operations"][1]["breakdown"]["phases"]["io"] == \
            pytest.approx(0.01, abs=1e-6)
        # lab.explain takes the entry itself.
        assert "held by the output gate" in str(lab.explain(history.op(1)))
    finally:
        await lab.close()


async def test_explain_prints_a_table_and_html():
    lab = auto_lab(commit_latency=0.05)
    try:
        stub = lab.env.WORK.getByName("a")
        await stub.write(40)
        explanation = lab.explain(stub)
        text = str(explanation)
        assert text.splitlines()[0] == "WORK:a.write (delivery 1): 50 ms"
        assert repr(explanation) == text
        assert "<table>" in explanation._repr_html_()
        assert "commit_latency 50 ms" in explanation._repr_html_()
        rows = explanation.rows()
        assert [r[0] for r in rows] == list(PHASES)
        assert sum(share for _, _, share in rows) == pytest.approx(1.0, abs=1e-6)
    finally:
        await lab.close()


async def test_explain_refuses_what_it_cannot_explain():
    lab = auto_lab()
    try:
        with pytest.raises(ValueError, match="no call on"):
            lab.explain(lab.env.WORK.getByName("never"))
        with pytest.raises(TypeError, match="explain\\(\\) takes"):
            lab.explain(42)
    finally:
        await lab.close()


async def test_a_stub_explains_a_call_in_flight():
    lab = Lab(storage="memory", seed=1, clock="manual")
    lab.bind("WORK", Work)
    try:
        stub = lab.env.WORK.getByName("a")
        pending = asyncio.ensure_future(stub.nap(1.0))
        for _ in range(50):  # constructed, admitted, asleep
            await asyncio.sleep(0)
        lab.clock.advance(0.4)
        b = last_call(stub)
        assert b.end is None and b.in_phase == "io"
        assert b.phases["io"] == pytest.approx(0.4, abs=1e-6)
        assert "in flight, now io" in str(lab.explain(stub))
        lab.clock.advance(0.6)
        assert await pending == 1.0
        assert last_call(stub).latency == pytest.approx(1.0, abs=1e-6)
    finally:
        await lab.close()


async def test_workload_results_give_phase_percentiles_per_object():
    lab = Lab(storage="memory", seed=1, clock="auto", commit_latency=0.01)
    lab.bind("WORK", Work)
    try:
        result = await run_workload(lab.env.WORK, method="bump", clients=4,
                                    per_client=5, objects=2, distribution="uniform",
                                    timing="lab")
        assert all(c.breakdown is not None for c in result.calls)
        for call in result.calls:
            # Lab-clock latency seen by the client == the sum of its phases.
            assert sum(call.breakdown.phases.values()) == pytest.approx(call.latency, abs=1e-9)
        per_object = result.phases_per_object()
        assert set(per_object) == {"obj-0", "obj-1"}
        for table in per_object.values():
            assert set(table) == set(PHASES)
            assert set(table["output_gate"]) == {"p50", "p95", "p99"}
            assert table["output_gate"]["p50"] > 0
        everything = result.phases()
        assert everything == phase_percentiles(c.breakdown for c in result.calls)
        assert "where the time went" in result.summary()
        row = result.to_rows()[0]
        assert row["output_gate_s"] == result.calls[0].breakdown.phases["output_gate"]
        slowest = result.slowest(3)
        assert len(slowest) == 3 and slowest[0].latency >= slowest[-1].latency
        assert "WORK:" in str(lab.explain(slowest[0]))
    finally:
        await lab.close()


async def test_phases_sum_to_latency_under_load_on_the_auto_clock():
    # Many overlapping calls of every kind: each breakdown still adds up exactly.
    lab = auto_lab(commit_latency=0.003)
    try:
        calls = []
        for i in range(30):
            stub = lab.env.WORK.getByName(f"o{i % 3}")
            method = (stub.write(2), stub.nap(0.002), stub.ping(), stub.block(0.001))[i % 4]
            calls.append(asyncio.ensure_future(method))
        await asyncio.gather(*calls)
        for op in lab.history():
            b = op.breakdown
            assert b is not None and b.end is not None
            assert sum(b.phases.values()) == pytest.approx(b.end - b.start, abs=1e-9)
            assert all(v >= -1e-12 for v in b.phases.values())
        assert any(op.breakdown.phases["queued"] > 0 for op in lab.history())
    finally:
        await lab.close()


async def test_the_bookkeeping_leaves_no_reference_cycles():
    # A delivery's driver lives in its task's context and the delivery holds its task: the
    # driver must let go of the delivery, or every call would be garbage for the collector.
    import gc

    lab = Lab(storage="memory", seed=1)
    lab.bind("WORK", Work)
    try:
        stub = lab.env.WORK.getByName("a")
        for _ in range(20):
            await stub.ping()
            await stub.write(1)
        gc.collect()
        gc.disable()
        try:
            for _ in range(200):
                await stub.ping()
                await stub.write(1)
            assert gc.collect() == 0
        finally:
            gc.enable()
    finally:
        await lab.close()
