"""What ``Lab(record=...)`` costs in memory per recorded call (python bench/bench_recording.py).

5,000 ``increment`` calls (a read and a write, about 10 events each) on 10 objects, after a
warm-up of 200, with and without recording, on memory and on SQLite storage; the memory the
calls leave allocated is measured with tracemalloc (Python allocations: the history entries,
the trace's call records and transitions, the events). The difference per call is what the
recording keeps; ``Lab(record=True)`` keeps the first 10,000 calls.
"""

from __future__ import annotations

import asyncio
import gc
import sys
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from durable_lab import DurableObject, Lab


class Counter(DurableObject):
    async def increment(self, by=1):
        n = (await self.ctx.storage.get("n")) or 0
        self.ctx.storage.put("n", n + by)
        return n + by


async def kept_per_call(record: bool, calls: int, storage: str) -> float:
    async with Lab(storage=storage, record=calls + 1000 if record else False) as lab:
        ns = lab.bind("C", Counter)
        stubs = [ns.getByName(f"c{i}") for i in range(10)]
        for i in range(200):
            await stubs[i % 10].increment()
        gc.collect()
        tracemalloc.start()
        base = tracemalloc.get_traced_memory()[0]
        for i in range(calls):
            await stubs[i % 10].increment()
        gc.collect()
        used = tracemalloc.get_traced_memory()[0] - base
        tracemalloc.stop()
        return used / calls


def main() -> None:
    calls = 5000
    print(f"memory kept per call, {calls:,} increment calls; Python {sys.version.split()[0]}")
    for storage in ("memory", "sqlite"):
        off = asyncio.run(kept_per_call(False, calls, storage))
        on = asyncio.run(kept_per_call(True, calls, storage))
        print(f"  {storage:<7} not recording {off:6.0f} B/call, recording {on:6.0f} B/call: "
              f"the recording keeps {on - off:,.0f} B ({(on - off) / 1024:.1f} KiB) per call")


if __name__ == "__main__":
    main()
