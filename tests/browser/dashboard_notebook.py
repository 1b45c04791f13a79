"""The notebook the browser test runs: a lab, its dashboard, a workload in the background."""

from __future__ import annotations

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

SETUP = '''\
import asyncio, random
import durable_lab
import widgets
from durable_lab import DurableObject, Lab

class Counter(DurableObject):
    async def increment(self):
        n = (await self.ctx.storage.get("n")) or 0
        self.ctx.storage.put("n", n + 1)
        self.ctx.storage.put(f"last:{n % 3}", n)
        return n + 1

    async def migrate(self):
        # blockConcurrencyWhile: the input gate stays CLOSED for 0.3 s, calls queue up
        async def slow():
            await durable_lab.sleep(0.3)
            self.ctx.storage.put("schema", 2)
        await self.ctx.blockConcurrencyWhile(slow)

    async def write_many(self, count):
        for i in range(count):
            self.ctx.storage.put(f"item:{i}", i)   # coalesced: one commit, whatever count
        return count

# commit_latency: every commit takes 0.25 s, so batches and held replies stay visible
lab = Lab(storage="memory", seed=1, commit_latency=0.25)
COUNTER = lab.bind("COUNTER", Counter)'''

DASHBOARD = '''\
board = widgets.dashboard(lab, COUNTER.getByName("room-1"))
board'''

WORKLOAD = '''\
stop = asyncio.Event()
errors = []

async def client(k):
    rng = random.Random(k)
    names = ["room-1"] * 4 + ["room-2", "room-3", "lobby"]
    while not stop.is_set():
        stub = COUNTER.getByName(rng.choice(names))   # a fresh stub: resets don't stick
        try:
            roll = rng.random()
            # Migrations keep the gate closed for 0.3 s: calls queue in the mailbox then (the
            # runtime admits everything else at once), so the test can see chips come and go.
            if roll < 0.15:
                await stub.migrate()
            elif roll < 0.25:
                await stub.write_many(rng.choice([1, 5, 20, 60]))
            else:
                await stub.increment()
        except Exception as exc:
            errors.append(type(exc).__name__)
        await asyncio.sleep(rng.uniform(0.02, 0.12))

clients = [asyncio.ensure_future(client(k)) for k in range(6)]
print("WORKLOAD STARTED")'''

PHASE = '''\
await asyncio.sleep(3)
print("PHASE 1 DONE", lab.statistics().deliveries > 20)'''

# What the page can read about subscriptions: the bus's subscriber count, the feed's listeners
# (a dashboard and its seven panels: 8), the open top-level panels, and the kernel's pid (it
# changes on a restart).
COUNT = '''\
import os
print(f"SUBSCRIBERS {lab.bus.subscriber_count} LISTENERS {board._feed.statistics().listeners} "
      f"OPEN {','.join(sorted(widgets.open_panels(lab)))} PID {os.getpid()}")'''


def build(*, count: bool = False) -> nbformat.NotebookNode:
    """The notebook; ``count=True`` adds a last cell printing the subscription counts."""
    nb = new_notebook()
    nb.cells = [
        new_markdown_cell("# Dashboard browser test\nA lab, its dashboard, six clients."),
        new_code_cell(SETUP),
        new_code_cell(DASHBOARD),
        new_code_cell(WORKLOAD),
        new_code_cell(PHASE),
    ]
    if count:
        nb.cells.append(new_code_cell(COUNT))
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3 (ipykernel)",
                                 "language": "python"}
    return nb
