"""A recorded run for the snapshot tests: calls queueing, the gate held, storage awaited, a
critical section, a call to another object (I/O), batches in flight, held replies, a failed
commit and a reset, stopped at many moments.

``moments(lab, at)`` drives the run and calls ``at(label)`` (sync or async) at every moment:
after each ``lab.step()`` of a paused lab, and at loop passes of a lab running freely on
SQLite with a commit latency (commits really in flight).
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable
from typing import Any

from durable_lab import DurableObject, Lab


class Account(DurableObject):
    async def deposit(self, amount: int) -> int:
        balance = (await self.ctx.storage.get("balance")) or 0
        balance += amount
        self.ctx.storage.put("balance", balance)
        self.ctx.storage.put(f"entry-{balance}", amount)
        return balance

    async def transfer(self, to: str, amount: int) -> int:
        """Writes here, then awaits another object (I/O: the gate opens meanwhile)."""
        balance = await self.deposit(-amount)
        await self.env.ACCOUNT.getByName(to).deposit(amount)
        return balance

    async def audit(self) -> int:
        """A critical section: nothing else enters until it settles."""
        async def count() -> int:
            return len(await self.ctx.storage.list())

        return await self.ctx.blockConcurrencyWhile(count)

    async def wipe(self) -> None:
        await self.ctx.storage.deleteAll()
        self.ctx.storage.put("balance", 0)


async def _call(at: Callable[[str], Any], label: str) -> None:
    result = at(label)
    if inspect.isawaitable(result):
        await result


async def moments(lab: Lab, at: Callable[[str], Any], *, free_passes: int = 60) -> list[Any]:
    """Drive the run, calling ``at(name)`` at every moment; returns the calls' outcomes."""
    lab.scheduler.note_paused_calls = False
    accounts = lab.env.ACCOUNT
    alice, bob = accounts.getByName("alice"), accounts.getByName("bob")
    outcomes: list[Any] = []
    await _call(at, "start")
    # -- paused: every transition is a moment ------------------------------------------------
    lab.pause()
    calls = [asyncio.ensure_future(alice.deposit(10)), asyncio.ensure_future(alice.deposit(5)),
             asyncio.ensure_future(alice.transfer("bob", 3)),
             asyncio.ensure_future(alice.audit()), asyncio.ensure_future(bob.deposit(1))]
    await lab.scheduler.settle()
    await _call(at, "queued while paused")
    step = 0
    while True:
        choice = await lab.step()
        if choice is None:
            break
        step += 1
        await _call(at, f"after step {step}: {choice.description}")
    lab.resume()
    outcomes += await asyncio.gather(*calls, return_exceptions=True)
    await lab.wait_idle()
    await _call(at, "after the paused calls")
    # -- a failed commit: the deposit is lost, the object resets --------------------------
    lab.fail_next_commit(alice)
    failing = asyncio.ensure_future(alice.deposit(50))
    for i in range(8):
        await asyncio.sleep(0)
        await _call(at, f"failing commit, pass {i}")
    outcomes += await asyncio.gather(failing, return_exceptions=True)
    await lab.wait_idle()
    await _call(at, "after the failed commit")
    # -- running freely, commits in flight ------------------------------------------------
    alice = accounts.getByName("alice")  # stubs taken before the failure stay broken
    burst = [asyncio.ensure_future(alice.deposit(1)) for _ in range(6)]
    burst += [asyncio.ensure_future(bob.transfer("alice", 1)), asyncio.ensure_future(bob.wipe())]
    for i in range(free_passes):
        await asyncio.sleep(0 if i % 3 else 0.001)
        await _call(at, f"free pass {i}")
        if all(c.done() for c in burst):
            break
    outcomes += await asyncio.gather(*burst, return_exceptions=True)
    await lab.wait_idle()
    # -- a reset while calls wait -------------------------------------------------------
    lab.pause()
    waiting = [asyncio.ensure_future(bob.deposit(2)), asyncio.ensure_future(bob.deposit(3))]
    await lab.scheduler.settle()
    await lab.step()  # admit the first
    await _call(at, "before the crash")
    lab.faults.crash(bob)
    await _call(at, "after the crash")
    lab.resume()
    outcomes += await asyncio.gather(*waiting, return_exceptions=True)
    await lab.wait_idle()
    await _call(at, "end")
    return outcomes


def make_lab(tmp_path: Any, *, memory: bool = False) -> Lab:
    """SQLite files with a commit latency (commits really in flight), or ``memory``: the
    in-memory backend, where a run does the same thing every time (no I/O thread)."""
    lab = (Lab(storage="memory", seed=7) if memory else
           Lab(tmp_path / "lab", commit_latency=0.002, seed=7))
    lab.bind("ACCOUNT", Account)
    return lab
