"""Throughput of the storage backends (python bench/bench_backend.py).

Prints the median of 5 repeats for each measurement, for SqliteBackend (on a temporary
folder) and, for comparison, MemoryBackend. Numbers only: there is no pass/fail.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from durable_lab._backends import MemoryBackend, SqliteBackend

REPEATS = 5
NS = "BENCH"


def oid(n: int) -> str:
    return f"{n:064x}"


def make(kind: str, folder: str, max_open: int = 64):
    return MemoryBackend() if kind == "memory" else SqliteBackend(folder, max_open=max_open)


async def one_key_commits(kind: str, folder: str, n: int = 2000) -> float:
    b = make(kind, folder)
    key = (NS, oid(1))
    try:
        await b.commit(key, delete_all=False, puts={"warm": b"x"}, deletes=(), metadata={})
        t0 = time.perf_counter()
        for i in range(n):
            await b.commit(key, delete_all=False, puts={"counter": str(i).encode()},
                           deletes=(), metadata={})
        return n / (time.perf_counter() - t0)
    finally:
        await b.aclose()


async def hundred_key_commits(kind: str, folder: str, n: int = 300) -> float:
    b = make(kind, folder)
    key = (NS, oid(2))
    value = b"v" * 100
    try:
        await b.commit(key, delete_all=False, puts={"warm": b"x"}, deletes=(), metadata={})
        t0 = time.perf_counter()
        for i in range(n):
            puts = {f"key{i % 10}-{j:03}": value for j in range(100)}
            await b.commit(key, delete_all=False, puts=puts, deletes=(), metadata={})
        return n / (time.perf_counter() - t0)
    finally:
        await b.aclose()


async def new_objects(kind: str, folder: str, n: int = 1000) -> float:
    b = make(kind, folder, max_open=64)
    try:
        t0 = time.perf_counter()
        await asyncio.gather(*(
            b.commit((NS, oid(10_000 + i)), delete_all=False, puts={"k": b"v"}, deletes=(),
                     metadata={})
            for i in range(n)
        ))
        return n / (time.perf_counter() - t0)
    finally:
        await b.aclose()


async def one_key_reads(kind: str, folder: str, n: int = 5000) -> float:
    b = make(kind, folder)
    key = (NS, oid(3))
    try:
        await b.commit(key, delete_all=False, puts={"k": b"v" * 100}, deletes=(), metadata={})
        t0 = time.perf_counter()
        for _ in range(n):
            await b.read(key, ["k"])
        return n / (time.perf_counter() - t0)
    finally:
        await b.aclose()


BENCHES = [
    ("1-key commits/s (one object)", one_key_commits),
    ("100-key commits/s (one object)", hundred_key_commits),
    ("new objects created+committed/s (1,000 objects, max_open=64)", new_objects),
    ("1-key reads/s (one object)", one_key_reads),
]


def main() -> None:
    print(f"median of {REPEATS} repeats; Python {sys.version.split()[0]}")
    for kind in ("sqlite", "memory"):
        print(f"\n{kind}:")
        for label, bench in BENCHES:
            results = []
            for _ in range(REPEATS):
                with tempfile.TemporaryDirectory() as folder:
                    results.append(asyncio.run(bench(kind, folder)))
            print(f"  {label:<62} {statistics.median(results):>12,.0f}")


if __name__ == "__main__":
    main()
