"""Child process of tests/test_crash.py: bump a few objects forever, print every acknowledgement.

    python tests/crash_worker.py FOLDER [--objects N] [--per-object K] [--max-open M]
                                 [--sql] [--wait-for-folder] [--task create_task|wait_until]

Each object ``obj{j}`` of the ``BUMP`` binding (SQLite storage in FOLDER) is called by K
concurrent workers. A call ``bump(i)`` writes ``a = i``, ``b = i`` and ``log{i} = i`` in one
turn, so one batch. The call numbers of one object are handed out in the order the calls are
made (and deliveries run in that order), continuing after whatever ``a`` the folder already
holds. Once a call has returned (the write is acknowledged), the line ``ack obj{j} {i}`` is
written to stdout and flushed. The workload never ends: the parent kills it with SIGKILL.

``--sql`` binds the class as SQLite-backed (the same calls through the SQLite engine).
``--task`` makes ``bump(i)`` start a task (``asyncio.create_task`` or ``ctx.waitUntil``)
whose first step makes the three writes, and return at once: the writes are part of the
call's turn (as the start of a JavaScript async function is), so its reply must wait for them.
``--wait-for-folder`` makes a second worker on the same folder wait for the first one's lock
(retrying every 10 ms) instead of failing: two workers race for one folder, and the one that
gets it second starts from whatever the first left on disk when it was killed.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from durable_lab import DurableObject, Lab, LabFolderError

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

    async def _write_then_linger(self, i):
        self.bump_sync(i)  # the task's first step: part of the call's turn
        await asyncio.sleep(0.001)  # the task outlives the reply

    def bump_sync(self, i):
        storage = self.ctx.storage
        storage.put("a", i)
        storage.put("b", i)
        storage.put(f"log{i}", i)

    async def bump_in_task(self, i):
        self.task = asyncio.create_task(self._write_then_linger(i))
        return i

    async def bump_in_wait_until(self, i):
        self.ctx.waitUntil(self._write_then_linger(i))
        return i


def _ack(line: str) -> None:
    sys.stdout.write(line)
    sys.stdout.flush()


async def open_lab(folder: str, max_open: int, wait: bool) -> Lab:
    while True:
        try:
            return Lab(folder, storage="sqlite", max_open_databases=max_open)
        except LabFolderError:
            if not wait:
                raise
            await asyncio.sleep(0.01)


async def main(folder: str, objects: int, per_object: int, max_open: int, sql: bool,
               wait: bool, task: str = "") -> None:
    lab = await open_lab(folder, max_open, wait)
    ns = lab.bind(BINDING, Bumper, sql=sql)
    names = [f"obj{j}" for j in range(objects)]
    stubs = {name: ns.getByName(name) for name in names}
    start = await asyncio.gather(*(stubs[name].current() for name in names))
    counters = dict(zip(names, start, strict=True))
    _ack("start " + " ".join(f"{n}={c}" for n, c in counters.items()) + "\n")

    method = {"": "bump", "create_task": "bump_in_task", "wait_until": "bump_in_wait_until"}[task]

    async def worker(name: str) -> None:
        stub = stubs[name]
        call = getattr(stub, method)
        while True:
            counters[name] += 1
            i = counters[name]  # taken and called in the same step: calls are made in order
            got = await call(i)
            assert got == i, (name, got, i)
            _ack(f"ack {name} {i}\n")

    await asyncio.gather(*(worker(name) for name in names for _ in range(per_object)))


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("folder")
    parser.add_argument("--objects", type=int, default=4)
    parser.add_argument("--per-object", type=int, default=3)
    parser.add_argument("--max-open", type=int, default=64)
    parser.add_argument("--sql", action="store_true")
    parser.add_argument("--wait-for-folder", action="store_true")
    parser.add_argument("--task", choices=["create_task", "wait_until"], default="")
    a = parser.parse_args()
    asyncio.run(main(a.folder, a.objects, a.per_object, a.max_open, a.sql, a.wait_for_folder,
                     a.task))
