"""Child process of tests/test_crash.py: bump a few objects forever, print every acknowledgement.

    python tests/crash_worker.py FOLDER [--objects N] [--per-object K] [--max-open M]

Each object ``obj{j}`` of the ``BUMP`` binding (SQLite storage in FOLDER) is called by K
concurrent workers. A call ``bump(i)`` writes ``a = i``, ``b = i`` and ``log{i} = i`` in one
turn, so one batch. The call numbers of one object are handed out in the order the calls are
made (and deliveries run in that order), continuing after whatever ``a`` the folder already
holds. Once a call has returned (the write is acknowledged), the line ``ack obj{j} {i}`` is
written to stdout and flushed. The workload never ends: the parent kills it with SIGKILL.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from durable_lab import DurableObject, Lab  # noqa: E402

BINDING = "BUMP"


class Bumper(DurableObject):
    async def current(self):
        return (await self.ctx.storage.get("a")) or 0

    async def bump(self, i):
        storage = self.ctx.storage
        storage.put("a", i)
        storage.put("b", i)
        storage.put(f"log{i}", i)
        return i


def _ack(line: str) -> None:
    sys.stdout.write(line)
    sys.stdout.flush()


async def main(folder: str, objects: int, per_object: int, max_open: int) -> None:
    lab = Lab(folder, storage="sqlite", max_open_databases=max_open)
    ns = lab.bind(BINDING, Bumper)
    names = [f"obj{j}" for j in range(objects)]
    stubs = {name: ns.getByName(name) for name in names}
    start = await asyncio.gather(*(stubs[name].current() for name in names))
    counters = dict(zip(names, start, strict=True))
    _ack("start " + " ".join(f"{n}={c}" for n, c in counters.items()) + "\n")

    async def worker(name: str) -> None:
        stub = stubs[name]
        while True:
            counters[name] += 1
            i = counters[name]  # taken and called in the same step: calls are made in order
            got = await stub.bump(i)
            assert got == i, (name, got, i)
            _ack(f"ack {name} {i}\n")

    await asyncio.gather(*(worker(name) for name in names for _ in range(per_object)))


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("folder")
    parser.add_argument("--objects", type=int, default=4)
    parser.add_argument("--per-object", type=int, default=3)
    parser.add_argument("--max-open", type=int, default=64)
    a = parser.parse_args()
    asyncio.run(main(a.folder, a.objects, a.per_object, a.max_open))
