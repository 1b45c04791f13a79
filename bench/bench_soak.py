"""A soak: every panel open, recording on, calls as fast as they come, RSS flat.

    python bench/bench_soak.py                 # 10 minutes (issue #19)
    python bench/bench_soak.py --seconds 60    # shorter

A memory lab made with ``record=True`` (which keeps the first 10,000 calls, then stops with a
warning: ``Lab(record=...)``), ``widgets.dashboard(lab)`` open (every panel, headless: the
feed's frames, every reducer and every Bokeh patch run; ipywidgets' DummyComm swallows the
messages), and 16 clients calling ``increment`` on 8 objects with no pause. RSS is sampled
every 30 s; the result is flat if the last sample is within 10 % and 20 MiB of the one taken
after the first minute (the recording and the panels' buffers fill during that minute).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import psutil

import widgets
from durable_lab import DurableObject, Lab


class Counter(DurableObject):
    async def increment(self):
        n = (await self.ctx.storage.get("n")) or 0
        self.ctx.storage.put("n", n + 1)
        return n + 1


async def soak(seconds: float, sample_every: float) -> bool:
    warnings.simplefilter("ignore", RuntimeWarning)  # "the lab stopped recording" (expected)
    lab = Lab(storage="memory", seed=1, record=True)
    ns = lab.bind("COUNTER", Counter)
    board = widgets.dashboard(lab)
    stubs = [ns.getByName(f"obj-{i}") for i in range(8)]
    proc = psutil.Process(os.getpid())
    calls = [0]
    stop = time.perf_counter() + seconds

    async def client(k: int) -> None:
        stub = stubs[k % len(stubs)]
        while time.perf_counter() < stop:
            await stub.increment()
            calls[0] += 1

    t0 = time.perf_counter()
    load = asyncio.ensure_future(asyncio.gather(*(client(k) for k in range(16))))
    samples: list[tuple[float, float, int]] = [(0.0, proc.memory_info().rss / 2**20, 0)]
    print(f"  t={0:6.0f} s  RSS {samples[0][1]:7.1f} MiB  calls {0:>9,}", flush=True)
    while not load.done():
        await asyncio.wait([load], timeout=sample_every)
        gc.collect()
        samples.append((time.perf_counter() - t0, proc.memory_info().rss / 2**20, calls[0]))
        t, rss, n = samples[-1]
        print(f"  t={t:6.0f} s  RSS {rss:7.1f} MiB  calls {n:>9,}  recorded "
              f"{len(lab.history().operations):,}  feed lag max "
              f"{board._feed.statistics().max_lag * 1000:.0f} ms", flush=True)
    await load
    board.close()
    await lab.close()
    base = next((s for s in samples if s[0] >= 60), samples[-1])
    end = samples[-1]
    growth = end[1] - base[1]
    flat = growth < 20 and growth < 0.10 * base[1]
    print(f"{end[2]:,} calls in {end[0]:.0f} s ({end[2] / end[0]:,.0f}/s); recording kept "
          f"{lab.record_limit:,} calls and stopped: {lab.recording_stopped}")
    print(f"RSS at start {samples[0][1]:.1f} MiB, after the first minute {base[1]:.1f} MiB, "
          f"at the end {end[1]:.1f} MiB ({growth:+.1f} MiB) -> {'flat' if flat else 'GROWING'}")
    return flat


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=600.0)
    parser.add_argument("--sample-every", type=float, default=30.0)
    args = parser.parse_args()
    print(f"soak: {args.seconds:.0f} s, memory lab, record=True, dashboard open, 16 clients "
          f"on 8 objects; Python {sys.version.split()[0]}", flush=True)
    return 0 if asyncio.run(soak(args.seconds, args.sample_every)) else 1


if __name__ == "__main__":
    sys.exit(main())
