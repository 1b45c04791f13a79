"""SQL write throughput of a SQLite-backed object (python bench/bench_sql.py [--quick]).

Two ways to insert N rows into an object's table, on SQLite files (Lab on a temporary folder):

  batched:   one call runs N ``sql.exec("INSERT ...")`` in one turn: one implicit transaction,
             ONE commit;
  per call:  N calls of one INSERT each, awaited one after the other: N commits.

Prints the median inserts/s of 5 repeats for each, the commits each made, and the ratio. Also
the same with ``commit_latency=0.001`` (a 1 ms storage round trip), where coalescing matters
most. Numbers only: there is no pass/fail.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from durable_lab import DurableObject, Lab

REPEATS = 5


class Rows(DurableObject):
    def __init__(self, ctx, env):
        super().__init__(ctx, env)
        ctx.storage.sql.exec("CREATE TABLE IF NOT EXISTS rows(id INTEGER PRIMARY KEY, v TEXT)")

    async def insert_many(self, n):
        exec_ = self.ctx.storage.sql.exec
        for i in range(n):
            exec_("INSERT INTO rows(v) VALUES (?)", f"value {i}")
        return n

    async def insert_one(self, i):
        self.ctx.storage.sql.exec("INSERT INTO rows(v) VALUES (?)", f"value {i}")
        return i

    async def count(self):
        return self.ctx.storage.sql.exec("SELECT count(*) AS n FROM rows").one().n


async def run(mode: str, n: int, latency: float, repeat: int) -> tuple[float, int]:
    """(inserts/s, commits) for one repeat on a fresh lab and object."""
    with tempfile.TemporaryDirectory(prefix="bench_sql-") as folder:
        lab = Lab(folder, commit_latency=latency)
        try:
            stub = lab.bind("ROWS", Rows, sql=True).getByName(f"{mode}-{repeat}")
            await stub.count()  # constructed, table created and committed
            commits_before = lab.statistics().commits
            t0 = time.perf_counter()
            if mode == "batched":
                await stub.insert_many(n)
            else:
                for i in range(n):
                    await stub.insert_one(i)
            elapsed = time.perf_counter() - t0
            commits = lab.statistics().commits - commits_before
            assert await stub.count() == n
            return n / elapsed, commits
        finally:
            await lab.close()


async def measure(mode: str, n: int, latency: float) -> tuple[float, int]:
    results = [await run(mode, n, latency, r) for r in range(REPEATS)]
    return statistics.median(r[0] for r in results), results[-1][1]


async def main(quick: bool) -> None:
    n = 200 if quick else 2000
    print(f"SQL inserts into one SQLite-backed object, N = {n}, median of {REPEATS} "
          f"(Python {sys.version.split()[0]})")
    for latency in (0.0, 0.001):
        batched, batched_commits = await measure("batched", n, latency)
        per_call_n = n if latency == 0 else max(50, n // 10)
        per_call, per_call_commits = await measure("per-call", per_call_n, latency)
        print(f"\ncommit_latency = {latency * 1000:g} ms")
        print(f"  batched  (N inserts in one turn): {batched:12,.0f} inserts/s  "
              f"({batched_commits} commit)")
        print(f"  per call (one insert per call):   {per_call:12,.0f} inserts/s  "
              f"({per_call_commits} commits for {per_call_n} calls)")
        print(f"  ratio batched / per call: {batched / per_call:,.1f}x")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer rows (a smoke run)")
    asyncio.run(main(parser.parse_args().quick))
