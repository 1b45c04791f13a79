"""The cost of watching: what a subscriber and an open dashboard cost a busy lab.

    python bench/bench_watching.py              # 5 rounds of 3 s per case (CPU time)
    python bench/bench_watching.py --quick      # 3 rounds of 1 s
    python bench/bench_watching.py --callgrind  # machine instructions per call (valgrind)

Targets: one no-op subscriber costs at most 25 % per call (issue #12); with the dashboard open,
saturated trivial calls keep at least 55 % of the unobserved rate (issue #17; #12 asked 50 %).

Three cases, run in alternation (A, B, C, A, B, C, ...) on fresh memory labs, trivial calls
(``increment``: a read and a write, ~5-8 events each) from 16 concurrent clients on 8 objects:

- A: nobody subscribed (the runtime does not even build events);
- B: one subscriber that does nothing (the cost of building and delivering every event);
- C: ``widgets.dashboard(lab)`` open (seven panels, their reducers, their frames; headless,
  ipywidgets' dummy comm swallows the messages, every Bokeh patch is still serialised).

Rates are calls per **CPU second of this process** (``time.process_time``): the machine is
shared, and wall-clock rates swing with other people's load while CPU time per call does not.
Each round measures saturation as a steady state: its lab and panels are opened, make 400
calls, draw, and the garbage collector runs in full before the clock starts (the objects a
dashboard makes when it opens otherwise bring on a full collection, ~75 ms, inside the round).
Rounds last 3 s so that the full collections the calls themselves bring on (with the
dashboard open, about one per 35,000 calls) fall in them in proportion.
The dashboard's frames run on the same thread as the lab, so its whole cost is in C's CPU time.
Medians of the rounds; the ratios are medians of per-round ratios.

CPU time still swings with the other tenants of a shared machine (caches, hyperthreads): the
same code measured 13,000-20,000 calls per CPU second within one run. ``--callgrind`` counts
machine instructions instead (valgrind; deterministic): per call, the difference between a
process making 4,000 calls and one making 800, for the unobserved lab, one no-op subscriber,
the dashboard's reducers without its frames, and the dashboard with a frame every 600 calls
drawn on a simulated wall clock that moves 40 ms a frame (the frames are paced by the wall
clock, which valgrind slows fifty-fold: real frames under valgrind would flatter the
dashboard). Instructions are not CPU time: the dashboard keeps about 9 points less of the
unobserved rate in CPU time than by instructions (more memory touched per call).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from durable_lab import DurableObject, Lab


class Counter(DurableObject):
    async def increment(self):
        n = (await self.ctx.storage.get("n")) or 0
        self.ctx.storage.put("n", n + 1)
        return n + 1


async def counter_lab() -> tuple[Lab, list]:
    """A fresh memory lab with 8 counters, each called once (constructed, warm)."""
    lab = Lab(storage="memory", seed=1)
    ns = lab.bind("C", Counter)
    stubs = [ns.getByName(f"o{i}") for i in range(8)]
    for stub in stubs:
        await stub.increment()
    return lab, stubs


async def run_case(case: str, seconds: float) -> tuple[float, float]:
    """(calls per CPU second, events per call) of one round of ``case``."""
    lab, stubs = await counter_lab()
    board = sub = None
    if case == "subscriber":
        sub = lab.subscribe(lambda event: None)
    elif case == "dashboard":
        import widgets

        board = widgets.dashboard(lab)
    # Saturation is a steady state: 400 calls first, their frame drawn, then a full garbage
    # collection, in every case alike. Opening a dashboard makes ~10,000 Bokeh and widget
    # objects; without this, the full collection they bring on (~75 ms on this heap) fell in
    # the measured round of the dashboard, once per round, whatever the panels cost per call.
    for _ in range(25):
        await asyncio.gather(*(stubs[k % 8].increment() for k in range(16)))
    if board is not None:
        board._feed.flush()
    gc.collect()
    first_seq = lab.bus.seq
    calls = [0]
    stop = time.perf_counter() + seconds

    async def client(k: int) -> None:
        stub = stubs[k % 8]
        while time.perf_counter() < stop:
            await stub.increment()
            calls[0] += 1

    cpu0 = time.process_time()
    await asyncio.gather(*(client(k) for k in range(16)))
    if board is not None:
        board._feed.flush()  # the frame owed for the last events is part of the cost
    cpu = time.process_time() - cpu0
    emitted = lab.bus.seq - first_seq  # (0 unobserved: nothing is built)
    if sub is not None:
        sub.close()
    if board is not None:
        board.close()
    await lab.close()
    return calls[0] / cpu, emitted / calls[0]


async def run_calls(case: str, calls: int) -> None:
    """Make ``calls`` trivial calls (16 clients, 8 objects) under ``case``; for --callgrind."""
    lab, stubs = await counter_lab()
    board = None
    if case == "subscriber":
        lab.subscribe(lambda event: None)
    elif case in ("reducers", "frames"):
        import widgets

        board = widgets.dashboard(lab)
        board._feed.stop()  # no wall-clock frames: "frames" draws its own, below
    done = [0]

    def frame() -> None:
        """A frame as the frame loop draws one at saturation: 40 ms of (simulated) wall
        clock since the last, about 600 calls (16,000 calls a second)."""
        _fake_clock[0] += 0.04
        feed = board._feed
        feed.in_frame_loop = True
        try:
            feed.flush(force=True)
        finally:
            feed.in_frame_loop = False

    async def client(k: int) -> None:
        for _ in range(calls // 16):
            await stubs[k % 8].increment()
            done[0] += 1
            if case == "frames" and done[0] % 600 == 0:
                frame()

    await asyncio.gather(*(client(k) for k in range(16)))
    if board is not None:
        board.close()
    await lab.close()


#: The wall clock the panels pace their frames by, simulated under --callgrind's "frames"
#: case (valgrind runs fifty times slower: real frames would come fifty times too rarely).
_fake_clock = [1000.0]


def instructions(case: str, calls: int) -> int:
    done = subprocess.run(["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null",
                           sys.executable, __file__, "--child", case, str(calls)],
                          capture_output=True, text=True, check=True)
    found = re.search(r"Collected : (\d+)", done.stderr)
    if found is None:
        raise RuntimeError(f"no callgrind total in: {done.stderr[-500:]}")
    return int(found.group(1))


def callgrind(few: int = 800, many: int = 4000) -> None:
    per_call = {case: (instructions(case, many) - instructions(case, few)) / (many - few)
                for case in ("unobserved", "subscriber", "reducers", "frames")}
    base = per_call["unobserved"]
    print(f"machine instructions per trivial call (valgrind callgrind, ({many} calls - {few} "
          f"calls) / {many - few}; 16 clients, 8 objects):")
    print(f"  {'unobserved':<30} {base:>9,.0f}")
    print(f"  {'one no-op subscriber':<30} {per_call['subscriber']:>9,.0f}  "
          f"{per_call['subscriber'] / base - 1:+.1%}")
    print(f"  {'dashboard reducers, no frames':<30} {per_call['reducers']:>9,.0f}  "
          f"keeps {base / per_call['reducers']:.0%} of the unobserved rate before drawing")
    print(f"  {'dashboard, a frame / 600 calls':<30} {per_call['frames']:>9,.0f}  "
          f"keeps {base / per_call['frames']:.0%} (frames as at saturation, simulated clock)")


async def main(rounds: int, seconds: float) -> None:
    cases = ("unobserved", "subscriber", "dashboard")
    rates: dict[str, list[float]] = {c: [] for c in cases}
    per_call: list[float] = []
    await run_case("dashboard", 0.2)  # warm-up: imports, Bokeh models
    for _ in range(rounds):
        for case in cases:
            rate, epc = await run_case(case, seconds)
            rates[case].append(rate)
            if epc:
                per_call.append(epc)
    med = {c: statistics.median(v) for c, v in rates.items()}
    sub_cost = statistics.median(a / b - 1 for a, b in zip(rates["unobserved"],
                                                            rates["subscriber"], strict=True))
    kept = statistics.median(c / a for a, c in zip(rates["unobserved"], rates["dashboard"],
                                                   strict=True))
    print(f"calls per CPU second, medians of {rounds} rounds of {seconds:g} s "
          f"(16 clients, 8 objects, ~{statistics.median(per_call):.1f} events per call):")
    for case in cases:
        print(f"  {case:<11} {med[case]:>9,.0f}   rounds: "
              + ", ".join(f"{r:,.0f}" for r in rates[case]))
    print(f"one no-op subscriber costs {sub_cost:+.0%} per call "
          f"(target <= +25%): {'OK' if sub_cost <= 0.25 else 'NOT MET'}")
    print(f"the dashboard keeps {kept:.0%} of the unobserved rate "
          f"(target >= 55%, issue #17): {'OK' if kept >= 0.55 else 'NOT MET'}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--callgrind", action="store_true")
    parser.add_argument("--child", nargs=2, metavar=("CASE", "CALLS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        if args.child[0] == "frames":
            time.perf_counter = lambda: _fake_clock[0]  # (see _fake_clock)
        asyncio.run(run_calls(args.child[0], int(args.child[1])))
    elif args.callgrind:
        callgrind()
    else:
        asyncio.run(main(3 if args.quick else 5, 1.0 if args.quick else 3.0))
