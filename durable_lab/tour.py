"""A five-minute tour of Durable Objects in the terminal: ``python -m durable_lab.tour``.

Four short scenes, each printing what the runtime did, step by step, from its event stream:

1. two concurrent increments of one counter: the input gate keeps them apart;
2. the same with a timer between read and write: the gate opens and an update is lost;
3. a hundred writes in one call: one commit (write coalescing);
4. a commit that fails: the reply never says "done", the object resets to what was committed.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

from . import DurableObject, DurableObjectResetError, Lab
from .events import describe

__all__ = ["Counter", "describe", "main", "tour"]  # describe: events.py's, kept here too

class Counter(DurableObject):
    async def increment(self) -> int:
        n = (await self.ctx.storage.get("n")) or 0
        self.ctx.storage.put("n", n + 1)
        return n + 1

    async def increment_slowly(self) -> int:
        n = (await self.ctx.storage.get("n")) or 0
        await asyncio.sleep(0.01)  # any non-storage await: a timer, a fetch, another object
        self.ctx.storage.put("n", n + 1)
        return n + 1

    async def write_many(self, count: int) -> int:
        for i in range(count):
            await self.ctx.storage.put(f"item:{i}", i)
        return count

    async def value(self) -> int:
        return (await self.ctx.storage.get("n")) or 0


async def _scene(lab: Lab, title: str, action, out) -> None:
    print(f"\n== {title}", file=out)
    rec = lab.record()
    try:
        result = await action()
    finally:
        rec.close()
    events: list[Any] = list(rec.events)  # (each a dataclass of events.py)
    i = 0
    while i < len(events):
        event = events[i]
        run = 1
        # Collapse a run of identical storage calls ("put" x 100) into one line.
        while (event.kind == "StorageOp" and i + run < len(events)
               and events[i + run].kind == "StorageOp"
               and events[i + run].delivery == event.delivery
               and events[i + run].op == event.op):
            run += 1
        line = describe(event)
        if line and run > 1:
            line = (f"call {event.delivery}: {event.op}() x {run} -> {event.cache}, "
                    "each in the same turn")
        if line:
            print(f"   {event.object:<18} {line}", file=out)
        i += run
    print(f"   -> {result}", file=out)


async def tour(out=sys.stdout) -> None:
    async with Lab(storage="memory", seed=1) as lab:
        counters = lab.bind("COUNTER", Counter)

        async def two_increments() -> str:
            stub = counters.getByName("gated")
            a, b = await asyncio.gather(stub.increment(), stub.increment())
            return f"replies {a} and {b}; counter = {await stub.value()} (no update lost)"

        async def two_slow_increments() -> str:
            stub = counters.getByName("timer")
            a, b = await asyncio.gather(stub.increment_slowly(), stub.increment_slowly())
            return f"replies {a} and {b}; counter = {await stub.value()} (one update LOST)"

        async def many_writes() -> str:
            stub = counters.getByName("batch")
            await stub.write_many(100)
            return "100 puts, 1 commit"

        async def failing_commit() -> str:
            stub = counters.getByName("fragile")
            await stub.increment()
            lab.fail_next_commit(stub)
            try:
                await stub.increment()
            except DurableObjectResetError as exc:
                fresh = counters.getByName("fragile")
                return (f"the caller got an error, not a false 'done': {exc}\n"
                        f"      a new stub sees the committed value: {await fresh.value()}")
            return "unexpected: no error"

        await _scene(lab, "1. Two increments at once: the input gate", two_increments, out)
        await _scene(lab, "2. A timer between read and write: the gate opens",
                     two_slow_increments, out)
        await _scene(lab, "3. A hundred writes in one call: write coalescing", many_writes, out)
        await _scene(lab, "4. A commit fails: the output gate", failing_commit, out)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.parse_args(argv)
    asyncio.run(tour())


if __name__ == "__main__":
    main()
