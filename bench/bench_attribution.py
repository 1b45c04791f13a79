"""What latency attribution costs a trivial call (python bench/bench_attribution.py BASE_DIR).

Attribution (durable_lab/attribution.py) is always on: every delivery keeps a phase, the lab
time it entered it and one bucket per phase. The target (issue #12) is at most 5 % per trivial
call with nobody subscribed. This runs bench_runtime.py's trivial sequential RPC (a method
returning a constant, one caller, memory and SQLite storage) against two source trees, in
separate processes, alternating A B B A A B ... so that drift on a shared machine hits both
alike, and compares the medians. By default it counts calls per second of the process's own CPU
time (``--clock cpu``), so that time the process spends descheduled by other work on a shared
machine does not count; ``--clock wall`` uses wall time as bench_runtime.py does:

    git archive <commit-before> | tar -x -C /tmp/before
    python bench/bench_attribution.py /tmp/before [--rounds 10] [--seconds 0.3] [--clock wall]

Each child process imports ``durable_lab`` and ``bench_runtime`` from its own tree and prints
calls/s for each repeat; the parent collects them.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent

CHILD = r"""
import asyncio, json, sys, tempfile, time
root, seconds, repeats, clock = sys.argv[1], float(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
sys.path.insert(0, root)
sys.path.insert(0, root + "/bench")
import bench_runtime as b
import durable_lab
assert durable_lab.__file__.startswith(root), durable_lab.__file__

async def rate_cpu(seconds, one):
    # Calls per second of this process's CPU time: on a shared machine, time spent
    # descheduled by other processes does not count (checked every 100 calls).
    n = 0
    t0 = time.process_time()
    while time.process_time() - t0 < seconds:
        for _ in range(100):
            await one()
        n += 100
    return n / (time.process_time() - t0)

async def main():
    rate = rate_cpu if clock == "cpu" else (lambda s, one: b.rate_for(s, one, 1))
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for storage in ("memory", "sqlite"):
            lab = b.make_lab(storage, tmp)
            try:
                stub = lab.bind("T", b.Trivial).getByName("one")
                await rate(seconds / 2, stub.ping)  # warm-up
                out[storage] = [await rate(seconds, stub.ping) for _ in range(repeats)]
            finally:
                await lab.close()
    print(json.dumps(out))

asyncio.run(main())
"""


def run(root: Path, seconds: float, repeats: int, clock: str) -> dict[str, list[float]]:
    done = subprocess.run([sys.executable, "-c", CHILD, str(root), str(seconds), str(repeats),
                           clock],
                          check=True, capture_output=True, text=True)
    return json.loads(done.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("before", type=Path, help="source tree without attribution")
    parser.add_argument("--after", type=Path, default=HERE, help="tree with it (this one)")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--seconds", type=float, default=0.3)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--clock", choices=("cpu", "wall"), default="cpu",
                        help="calls per second of process CPU time (default: robust on a "
                             "shared machine) or of wall time (bench_runtime.py's measure)")
    args = parser.parse_args()
    trees = {"before": args.before.resolve(), "after": args.after.resolve()}
    rates: dict[tuple[str, str], list[float]] = {}
    for r in range(args.rounds):
        order = ("before", "after") if r % 2 == 0 else ("after", "before")
        for name in order:
            for storage, xs in run(trees[name], args.seconds, args.repeats, args.clock).items():
                # The median of a process's repeats is one sample of that tree.
                rates.setdefault((name, storage), []).append(statistics.median(xs))
    print(f"trivial sequential RPC, calls per {args.clock} second: {args.rounds} interleaved "
          f"rounds, each the median of {args.repeats} x {args.seconds * 1e3:.0f} ms in a fresh "
          "process; "
          f"Python {sys.version.split()[0]}")
    for storage in ("memory", "sqlite"):
        before = statistics.median(rates["before", storage])
        after = statistics.median(rates["after", storage])
        cost = (before / after - 1) * 100  # extra time per call
        print(f"  {storage:<6} before {before:>9,.0f}/s  after {after:>9,.0f}/s  "
              f"time per call {cost:+.1f} %  "
              f"(before min..max {min(rates['before', storage]):,.0f}.."
              f"{max(rates['before', storage]):,.0f}; after "
              f"{min(rates['after', storage]):,.0f}..{max(rates['after', storage]):,.0f})")


if __name__ == "__main__":
    main()
