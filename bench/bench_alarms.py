"""Benchmark alarms: how many alarms the lab fires per second across many objects.

    python bench/bench_alarms.py [--objects 1000] [--quick]

Each of N objects sets an alarm for the same lab time a minute ahead (manual clock); then one
``lab.clock.advance(60)`` makes every alarm due at once, and we time until every handler has run
and its deferred alarm deletion is committed. Each handler writes one key, so every firing is
a delivery through the input gate plus one commit. Reported for memory and SQLite storage,
median of 5 repeats.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from durable_lab import DurableObject, Lab, now


class Ticker(DurableObject):
    async def arm(self, seconds):
        self.ctx.storage.setAlarm(now() * 1000 + seconds * 1000)

    async def alarm(self, alarm_info):
        self.ctx.storage.put("fired", True)


async def one_run(objects: int, storage: str) -> tuple[float, int]:
    folder = tempfile.mkdtemp(prefix="bench-alarms-") if storage == "sqlite" else None
    lab = Lab(folder, storage=storage, clock="manual")
    ns = lab.bind("T", Ticker)
    stubs = [ns.getByName(f"t{i}") for i in range(objects)]
    for start in range(0, objects, 100):
        await asyncio.gather(*(s.arm(60) for s in stubs[start:start + 100]))
    await lab.wait_idle()
    fired_before = lab.alarms.fired
    began = time.perf_counter()
    lab.clock.advance(60)
    await lab.wait_idle()
    elapsed = time.perf_counter() - began
    fired = lab.alarms.fired - fired_before
    assert fired == objects, (fired, objects)
    assert not lab.alarms.pending(), "every alarm should be deleted after its handler ran"
    await lab.close()
    return fired / elapsed, fired


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--objects", type=int, default=1000)
    parser.add_argument("--quick", action="store_true")
    options = parser.parse_args()
    repeats = 3 if options.quick else 5
    objects = 200 if options.quick else options.objects
    print(f"alarms fired per second, {objects} objects due at once (manual clock), "
          f"median of {repeats}:")
    results = {}
    for storage in ("memory", "sqlite"):
        rates = [asyncio.run(one_run(objects, storage))[0] for _ in range(repeats)]
        results[storage] = statistics.median(rates)
        print(f"  {storage:7} {results[storage]:10,.0f} alarms/s  "
              f"(min {min(rates):,.0f}, max {max(rates):,.0f})")
    print(f"  sqlite/memory: x{results['sqlite'] / results['memory']:.2f}")


if __name__ == "__main__":
    main()
