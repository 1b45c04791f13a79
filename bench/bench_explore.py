"""Benchmark durable_lab.explore: schedules per second, and what the reduction saves.

    python bench/bench_explore.py [--quick] [--out bench/RESULTS-explore.txt]

(a) Schedules per second, exhaustive ("dpor" and brute force "dfs"), for a two-call and a
    three-call counter on one object (get-then-put, the gates on), puts and a get of their own
    keys on one object, a two-object transfer (a transfer that calls the other account, and a
    deposit to it) and two independent counters.
    Every schedule runs in a fresh lab from the start, so a schedule's cost is a whole run:
    making the lab, the calls, every transition (each followed by a settle of the event loop),
    the linearizability check, closing the lab. Reported: schedules/s of wall time and of this
    process's CPU time (the machine is shared: CPU time says what the code costs when it gets
    the processor), the median of the repeats (5; 1 with --quick).
(b) The reduction: runs of "dpor" against the brute force's (every interleaving), and how
    many interleavings dpor covers per CPU second.
(c) How often one random schedule (and one PCT schedule) finds the lost update of the
    read-timer-write counter, over many seeds: the chance per run.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import durable_lab
from durable_lab import DurableObject
from durable_lab.explore import explore


class Counter(DurableObject):
    async def increment(self):
        n = (await self.ctx.storage.get("n")) or 0
        self.ctx.storage.put("n", n + 1)
        return n + 1


class SlowCounter(DurableObject):
    async def increment(self):
        n = (await self.ctx.storage.get("n")) or 0
        await durable_lab.sleep(1)
        self.ctx.storage.put("n", n + 1)
        return n + 1


class Keys(DurableObject):
    async def put(self, key, value):
        await self.ctx.storage.put(key, value)
        return value

    async def get(self, key):
        return await self.ctx.storage.get(key)


class Account(DurableObject):
    async def transfer(self, to, amount):
        balance = await self.ctx.storage.get("balance")
        balance = 10 if balance is None else balance
        if balance < amount:
            return "refused"
        await self.env.ACCOUNT.getByName(to).deposit(amount)
        self.ctx.storage.put("balance", balance - amount)
        return balance - amount

    async def deposit(self, amount):
        balance = await self.ctx.storage.get("balance")
        balance = 10 if balance is None else balance
        self.ctx.storage.put("balance", balance + amount)
        return balance + amount


def holds(lab, outcomes):
    return True


WORKLOADS = {
    "counter, 2 calls": ({"C": Counter},
                         lambda env: [env.C.getByName("a").increment() for _ in range(2)], None),
    "counter, 3 calls": ({"C": Counter},
                         lambda env: [env.C.getByName("a").increment() for _ in range(3)], None),
    "put(a), get(a), put(b), one object": (
        {"K": Keys}, lambda env: [env.K.getByName("x").put("a", 1), env.K.getByName("x").get("a"),
                                  env.K.getByName("x").put("b", 2)], holds),
    "transfer a->b + deposit to b": (
        {"ACCOUNT": Account},
        lambda env: [env.ACCOUNT.getByName("a").transfer("b", 7),
                     env.ACCOUNT.getByName("b").deposit(1)], holds),
    "two counters, 1 call each": (
        {"C": Counter}, lambda env: [env.C.getByName(n).increment() for n in ("a", "b")], None),
}


async def measure(name: str, strategy: str, repeats: int) -> dict:
    bindings, workload, invariant = WORKLOADS[name]
    rows = []
    for _ in range(repeats):
        cpu = time.process_time()
        result = await explore(bindings, workload, invariant=invariant, strategy=strategy,
                               progress=False, time_limit=120)
        cpu = time.process_time() - cpu
        rows.append({"schedules": result.schedules, "runs": result.runs,
                     "wall": result.elapsed, "cpu": cpu, "complete": result.complete,
                     "ok": result.ok})
    # The median repeat (by CPU time): one slow repeat on a shared machine does not count.
    rows.sort(key=lambda row: row["cpu"])
    return rows[len(rows) // 2]


async def chance(strategy: str, seeds: int) -> tuple[int, int, float]:
    work = lambda env: [env.C.getByName("a").increment() for _ in range(2)]  # noqa: E731
    found = 0
    wall = time.perf_counter()
    for seed in range(seeds):
        result = await explore({"C": SlowCounter}, work, strategy=strategy, max_schedules=1,
                               seed=seed, progress=False)
        found += not result.ok
    return found, seeds, time.perf_counter() - wall


async def main(args: argparse.Namespace) -> list[str]:
    repeats = 1 if args.quick else 5
    seeds = 100 if args.quick else 1000
    lines = [f"durable_lab explore bench: median of {repeats}; Python {sys.version.split()[0]}; "
             f"load average at start {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores", ""]
    lines.append("(a) exhaustive exploration, schedules per second (wall / CPU of this process)")
    results = {}
    for name in WORKLOADS:
        for strategy in ("dpor", "dfs"):
            row = await measure(name, strategy, repeats)
            results[name, strategy] = row
            note = "" if row["complete"] else "  (time limit: NOT complete)"
            lines.append(
                f"  {name:<36} {strategy:<4} {row['schedules']:>6,} schedules "
                f"{row['runs']:>6,} runs  {row['wall']:6.2f} s  "
                f"{row['schedules'] / row['wall']:>6,.0f}/s wall  "
                f"{row['schedules'] / row['cpu']:>6,.0f}/s CPU  "
                f"{row['runs'] / row['cpu']:>6,.0f} runs/s CPU{note}")
            print(lines[-1], flush=True)
    lines += ["", "(b) the reduction: runs needed, dpor against brute force (dfs); the "
              "interleavings dpor covers per CPU second (every one of dfs's schedules)"]
    for name in WORKLOADS:
        dpor, dfs = results[name, "dpor"], results[name, "dfs"]
        lines.append(f"  {name:<36} {dpor['runs']:>6,} runs (dpor, {dpor['schedules']:,} "
                     f"complete schedules) vs {dfs['runs']:>6,} (dfs): "
                     f"x{dfs['runs'] / dpor['runs']:.1f} fewer runs; "
                     f"{dfs['schedules'] / dpor['cpu']:>7,.0f} interleavings/s CPU")
        print(lines[-1], flush=True)
    lines += ["", "(c) the read-timer-write counter, 2 calls: chance that ONE sampled schedule "
              "finds the lost update"]
    for strategy in ("random", "pct"):
        found, total, wall = await chance(strategy, seeds)
        lines.append(f"  {strategy:<6} {found}/{total} runs = {found / total:.1%} per run "
                     f"({wall:.1f} s)")
        print(lines[-1], flush=True)
    slow = await explore({"C": SlowCounter},
                         lambda env: [env.C.getByName("a").increment() for _ in range(2)],
                         progress=False)
    lines.append(f"  exhaustive (dpor): {slow.failures} of {slow.schedules} schedules fail; "
                 f"found and proven in {slow.elapsed:.2f} s")
    print(lines[-1])
    return lines


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", default=None)
    arguments = parser.parse_args()
    written = asyncio.run(main(arguments))
    if arguments.out:
        Path(arguments.out).write_text("\n".join(written) + "\n")
