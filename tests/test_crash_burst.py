"""Crash campaign, bursts of new objects (issue #19): SIGKILL a process while hundreds of
objects it has never seen are being created and written at once, again and again.

The child (the script below, run with ``python -c``) opens the folder, then makes bursts of
``BURST`` new objects, each called once (``increment``: read ``n``, write ``n + 1``) all at
once, KV-backed and SQLite-backed bursts in turn (a round starts with either), and prints
``ack <binding> <name>`` as each call returns. Its database limit is low
(``max_open_databases=8``), so the pool hands connections over and SQLite-backed files are
closed and reopened while it runs. The parent kills it at a random moment (seeded) once
acknowledgements flow, then opens the folder with a Lab and checks that every acknowledged
object holds ``n == 1``.
"""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import durable_lab
from durable_lab import DurableObject, Lab

pytestmark = pytest.mark.slow

KILLS = 8
BURST = 300

_CHILD = """
import asyncio, sys
sys.path.insert(0, {root!r}); sys.path.insert(0, {tests!r})
from durable_lab import Lab
from test_crash_burst import Counter
async def main():
    lab = Lab({folder!r}, max_open_databases=8)
    namespaces = {{"K": lab.bind("K", Counter), "S": lab.bind("S", Counter, sql=True)}}
    print("start", flush=True)
    burst = 0
    while True:
        binding = "KS"[(burst + {round}) % 2]
        ns = namespaces[binding]
        names = [f"r{round}-b{{burst}}-{{i}}" for i in range({n})]

        async def one(name):
            if await ns.getByName(name).increment() == 1:
                sys.stdout.write(f"ack {{binding}} {{name}}\\n")
                sys.stdout.flush()

        await asyncio.gather(*(one(name) for name in names))
        burst += 1
asyncio.run(main())
"""


class Counter(DurableObject):
    async def increment(self):
        n = (await self.ctx.storage.get("n")) or 0
        self.ctx.storage.put("n", n + 1)
        return n + 1

    async def read(self):
        return await self.ctx.storage.get("n")


def _run_and_kill(folder: Path, round_: int, delay: float) -> list[tuple[str, str]]:
    script = _CHILD.format(root=str(Path(durable_lab.__file__).parent.parent),
                           tests=str(Path(__file__).parent), folder=str(folder),
                           round=round_, n=BURST)
    child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    assert child.stdout is not None
    lines: list[str] = []
    assert child.stdout.readline().strip() == "start", child.stderr.read() if child.stderr \
        else ""
    # Kill once acknowledgements flow, ``delay`` seconds after the first.
    first = child.stdout.readline()
    lines.append(first)
    time.sleep(delay)
    child.send_signal(signal.SIGKILL)
    out, _err = child.communicate(timeout=60)
    lines.extend(out.splitlines())
    acks = []
    for line in lines:
        parts = line.split()
        if len(parts) == 3 and parts[0] == "ack":  # (a line cut by the kill is not an ack)
            acks.append((parts[1], parts[2]))
    return acks


async def test_sigkill_during_bursts_of_new_objects_loses_no_acknowledged_write(tmp_path):
    rnd = random.Random(19)
    folder = tmp_path / "lab"
    acknowledged: list[tuple[str, str]] = []
    for round_ in range(KILLS):
        acks = _run_and_kill(folder, round_, rnd.uniform(0.2, 2.0))
        assert acks, f"round {round_}: nothing was acknowledged before the kill"
        acknowledged.extend(acks)
    async with Lab(folder) as lab:
        namespaces = {"K": lab.bind("K", Counter), "S": lab.bind("S", Counter, sql=True)}
        lost = [(b, name) for b, name in acknowledged
                if await namespaces[b].getByName(name).read() != 1]
    kinds = {b for b, _ in acknowledged}
    print(f"{KILLS} kills, {len(acknowledged)} acknowledged writes "
          f"({sum(b == 'K' for b, _ in acknowledged)} KV, "
          f"{sum(b == 'S' for b, _ in acknowledged)} SQLite-backed), {len(lost)} lost")
    assert kinds == {"K", "S"}, kinds
    assert lost == []
