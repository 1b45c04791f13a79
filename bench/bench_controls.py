"""Benchmark the lab controls: their cost when unused, the step rate, the size of a trace.

    python bench/bench_controls.py [--quick]

1. Overhead of the controls when unused: trivial sequential RPC throughput of a normal lab vs the
   same lab with every control hook short-circuited (no scheduler on the gates, no permit
   call for replies, no fault checks on deliveries). Target: the controls cost under 5 %.
2. Step rate: a paused lab with N queued increments, driven with ``await lab.step()`` until all
   are answered. Target: 10,000 steps/s.
3. Trace size: ``len(json.dumps(lab.trace()))`` per 1,000 calls with ``Lab(record=True)``, and
   what recording costs in throughput.

Medians of 5 repeats; ratios are computed within one run, so machine noise mostly cancels.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from durable_lab import DurableObject, Lab


class Trivial(DurableObject):
    async def ping(self):
        return 1


class Counter(DurableObject):
    async def increment(self):
        n = (await self.ctx.storage.get("n")) or 0
        self.ctx.storage.put("n", n + 1)
        return n + 1


def strip_controls(lab: Lab) -> None:
    """Short-circuit every control hook of ``lab`` (the 'bare runtime' for comparison)."""
    lab.scheduler.permit = lambda *a, **k: None
    lab.faults.take_call_failure = lambda host: None
    lab.faults.call_delay = lambda host: 0.0
    lab.scheduler.holds_admission = lambda gate, waiter: False


async def rpc_rate(calls: int, bare: bool, record: bool = False) -> float:
    lab = Lab(storage="memory", record=record)
    if bare:
        strip_controls(lab)
    stub = lab.bind("T", Trivial).getByName("x")
    await stub.ping()
    start = time.perf_counter()
    for _ in range(calls):
        await stub.ping()
    elapsed = time.perf_counter() - start
    await lab.close()
    return calls / elapsed


async def step_rate(calls: int) -> tuple[float, int]:
    lab = Lab(storage="memory", max_queue=calls + 1)
    stub = lab.bind("C", Counter).getByName("x")
    lab.pause()
    futures = [stub.increment() for _ in range(calls)]
    steps = 0
    start = time.perf_counter()
    while not all(f.done() for f in futures):
        if await lab.step() is None:
            break
        steps += 1
    elapsed = time.perf_counter() - start
    assert sorted(f.result() for f in futures) == list(range(1, calls + 1))
    await lab.close()
    return steps / elapsed, steps


async def trace_size(calls: int) -> tuple[int, int]:
    lab = Lab(storage="memory", record=True, seed=1)
    ns = lab.bind("C", Counter)
    stubs = [ns.getByName(f"c{i}") for i in range(10)]
    for i in range(calls):
        await stubs[i % 10].increment()
    await lab.wait_idle()
    trace = lab.trace()
    await lab.close()
    without_events = dict(trace, events=[])
    return len(json.dumps(trace)), len(json.dumps(without_events))


def median_of(repeats: int, make) -> float:
    return statistics.median(asyncio.run(make()) for _ in range(repeats))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    quick = parser.parse_args().quick
    repeats = 3 if quick else 5
    calls = 3000 if quick else 20000

    normal, bare, recording = [], [], []
    for _ in range(repeats):  # interleaved, so drift hits all three alike
        bare.append(asyncio.run(rpc_rate(calls, bare=True)))
        normal.append(asyncio.run(rpc_rate(calls, bare=False)))
        recording.append(asyncio.run(rpc_rate(calls, bare=False, record=True)))
    b, n, r = (statistics.median(x) for x in (bare, normal, recording))
    print(f"trivial sequential RPC, calls/s (median of {repeats}):")
    print(f"  bare runtime (hooks short-circuited) {b:12,.0f}")
    print(f"  with controls, unused                {n:12,.0f}   cost {100 * (1 - n / b):5.1f} %")
    print(f"  with Lab(record=True)                {r:12,.0f}   x{r / n:.2f} of unrecorded")

    step_calls = 200 if quick else 2000
    rates = [asyncio.run(step_rate(step_calls)) for _ in range(repeats)]
    rate = statistics.median(x[0] for x in rates)
    print(f"\nstep rate: {rate:,.0f} steps/s (median of {repeats}; "
          f"{rates[0][1]} steps to answer {step_calls} increments)")

    size, size_without_events = asyncio.run(trace_size(1000))
    print(f"\ntrace size per 1,000 calls: {size / 1024:,.0f} KiB with events, "
          f"{size_without_events / 1024:,.0f} KiB of calls and transitions alone")

    print("\nSUMMARY vs targets")
    cost = 100 * (1 - n / b)
    print(f"  {'PASS' if cost < 5 else 'FAIL'}  controls unused cost < 5 %: {cost:.1f} %")
    print(f"  {'PASS' if rate >= 10_000 else 'FAIL'}  step rate >= 10,000/s: {rate:,.0f}")
    print(f"  info  trace size per 1,000 calls: {size / 1024:,.0f} KiB")


if __name__ == "__main__":
    main()
