"""Does geography cost anything when it is off? (python bench/bench_placement.py [TREE ...])

Trivial sequential RPC on ``Lab(network=None)`` (the default), with bench_runtime.py's own
``Trivial``, ``make_lab`` and ``rate_for``: wall-clock calls/s on memory and SQLite storage
(median of 5 x 0.3 s after a 0.15 s warm-up), and calls per CPU-second of the process on memory
(median of 5 x 20,000 calls; CPU time moves far less than wall time when other processes share
the cores). Each TREE (a checkout or an export of one, default: this one) runs in its own
process, alternating, ``--pairs`` times, so two versions are compared under the same load.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def measure(tree: str) -> dict[str, float]:
    sys.path.insert(0, str(Path(tree) / "bench"))
    import bench_runtime as b

    import durable_lab

    assert Path(durable_lab.__file__).resolve().is_relative_to(Path(tree).resolve()), \
        durable_lab.__file__

    async def run() -> dict[str, float]:
        out: dict[str, float] = {}
        with tempfile.TemporaryDirectory() as tmp:
            for storage in ("memory", "sqlite"):
                lab = b.make_lab(storage, tmp)
                stub = lab.bind("T", b.Trivial).getByName("one")
                await b.rate_for(0.15, stub.ping, 1)
                out[f"{storage} calls/s"] = statistics.median(
                    [await b.rate_for(0.3, stub.ping, 1) for _ in range(5)])
                if storage == "memory":
                    rates = []
                    for _ in range(5):
                        t = time.process_time()
                        for _ in range(20_000):
                            await stub.ping()
                        rates.append(20_000 / (time.process_time() - t))
                    out["memory calls/CPU-s"] = statistics.median(rates)
                await lab.close()
        return out

    return asyncio.run(run())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("trees", nargs="*", default=[str(HERE.parent)])
    parser.add_argument("--pairs", type=int, default=5, help="alternating rounds (default 5)")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # internal: measure one tree, print JSON
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure(args.one)))
        return
    results: dict[str, list[dict[str, float]]] = {t: [] for t in args.trees}
    for _ in range(args.pairs):
        for tree in args.trees:
            done = subprocess.run([sys.executable, __file__, "--one", tree], check=True,
                                  capture_output=True, text=True, cwd=tempfile.gettempdir())
            results[tree].append(json.loads(done.stdout))
    for tree, runs in results.items():
        print(tree)
        for key in runs[0]:
            values = [r[key] for r in runs]
            print(f"  {key:<20} median {statistics.median(values):>9,.0f}   "
                  f"(runs: {', '.join(f'{v:,.0f}' for v in values)})")


if __name__ == "__main__":
    main()
