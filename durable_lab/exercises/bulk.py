"""Exercise 04: save many items in one atomic commit (write coalescing)."""

from __future__ import annotations

import ast
from collections.abc import Sequence

from ..errors import DurableObjectError
from ..events import CommitDone, StorageOp
from ..lab import Lab
from ._core import CheckResult, Fail, Scenario, method_tree, run_check

__all__ = ["BULK_ITEMS", "COMMIT_LATENCY", "MIXED_ITEMS", "check_bulk_save"]

#: Items saved at once in the one-commit scenario, and the commit latency it runs with.
BULK_ITEMS = 50
COMMIT_LATENCY = 0.01
#: Items saved in the scenario where a commit fails in the middle of save_all().
MIXED_ITEMS = 25

# {what}: what ends the turn; {measured}: what the scenario saw. Says no more than was measured
# (a loop may end its turn after every item, or every tenth: "each item becomes its own commit"
# was wrong when 50 items took 5 commits).
AWAIT_HINT = (
    "Every write made in one turn goes out as ONE batch: one commit, all or nothing. Something "
    "in your loop ends the turn ({what}), and every end of a turn closes a batch: {measured}. "
    "Remove it: put() needs no await at all, and the output gate already holds the reply until "
    "the whole batch is durable.")


def _items(n: int, tag: str = "v") -> dict[str, str]:
    return {f"item:{i:03}": f"{tag}{i}" for i in range(n)}


def _what_ends_the_turn(cls: type, events: Sequence[object] = ()) -> str:
    """What ended save_all()'s turns: from the events of the measured call where they say it
    (a ``sync`` storage op, a call to another object), else from the method's syntax tree."""
    if any(isinstance(e, StorageOp) and e.op == "sync" for e in events):
        return "await self.ctx.storage.sync()"
    tree = method_tree(cls, "save_all")
    called = {node.func.attr if isinstance(node.func, ast.Attribute) else
              getattr(node.func, "id", "")
              for node in (ast.walk(tree) if tree is not None else ())
              if isinstance(node, ast.Call)}
    for name, what in (("sync", "await self.ctx.storage.sync()"), ("sleep", "a sleep"),
                       ("getByName", "a call to another object")):
        if name in called:
            return what
    return "an await of something that is not a storage read"


async def _round_trip(cls: type) -> None:
    async with Lab(storage="memory", seed=1) as lab:
        stub = lab.bind("STORE", cls).getByName("s")
        items = _items(5)
        got = await stub.save_all(items)
        loaded = await stub.load_all()
        if got != len(items) or loaded != items:
            raise Fail(f"save_all() of {len(items)} items returned {got!r}, then load_all() "
                       f"returned {loaded!r}.",
                       "save_all(items) stores every key/value of the dict and returns how many; "
                       "load_all() returns them all as a dict (self.ctx.storage.list() does).")


async def _one_commit(cls: type) -> str:
    async with Lab(storage="memory", seed=1, commit_latency=COMMIT_LATENCY,
                   clock="auto") as lab:
        stub = lab.bind("STORE", cls).getByName("s")
        await stub.load_all()  # construct it first
        rec = lab.record()
        start = lab.clock.now()
        await stub.save_all(_items(BULK_ITEMS))
        elapsed = lab.clock.now() - start
        rec.close()
        commits = len(rec.of(CommitDone))
        if commits != 1:
            raise Fail(f"saving {BULK_ITEMS} items took {commits} commits and "
                       f"{elapsed * 1000:.0f} ms of lab time (each commit costs "
                       f"{COMMIT_LATENCY * 1000:.0f} ms here).",
                       AWAIT_HINT.format(what=_what_ends_the_turn(cls, rec.events), measured=(
                           f"your {BULK_ITEMS} items went out as {commits} commits, "
                           "each one all or nothing on its own")))
        return f"{BULK_ITEMS} items, 1 commit, {elapsed * 1000:.0f} ms of lab time."


async def _all_or_nothing(cls: type) -> None:
    async with Lab(storage="memory", seed=1) as lab:
        ns = lab.bind("STORE", cls)
        stub = ns.getByName("s")
        await stub.save_all(_items(MIXED_ITEMS, "old"))
        state = {"commits": 0}

        def fail_the_second_commit(event: object) -> None:
            if isinstance(event, CommitDone) and event.object == "STORE:s":
                state["commits"] += 1
                if state["commits"] == 1:
                    lab.faults.fail_next_commit("STORE:s")

        sub = lab.subscribe(fail_the_second_commit)
        failed = False
        try:
            await stub.save_all(_items(MIXED_ITEMS, "new"))
        except DurableObjectError:
            failed = True
        finally:
            sub.close()
            lab.faults.clear()
        if state["commits"] == 0 and not failed:
            return  # one commit that happened to be the failing one: nothing to judge
        loaded = await ns.getByName("s").load_all()
        new = sorted(k for k, v in loaded.items() if str(v).startswith("new"))
        if new and len(new) != MIXED_ITEMS:
            raise Fail(f"a storage failure struck in the middle of save_all(): afterwards "
                       f"{len(new)} of the {MIXED_ITEMS} items "
                       f"{'is' if len(new) == 1 else 'are'} new and "
                       f"{MIXED_ITEMS - len(new)} old: a half-saved batch.",
                       AWAIT_HINT.format(what=_what_ends_the_turn(cls), measured=(
                           f"{len(new)} new item(s) were already committed when a later "
                           "commit of the same save_all() failed")))


async def check_bulk_save(cls: type) -> CheckResult:
    """Exercise 04: ``save_all(items)`` stores a dict atomically in one commit; ``load_all()``."""
    return await run_check(
        "04", "n writes, one commit", cls,
        [Scenario("what is saved can be loaded", _round_trip),
         Scenario(f"{BULK_ITEMS} items are one commit", _one_commit),
         Scenario("a failure mid-save leaves all old or all new, never a mix", _all_or_nothing)],
        methods=("save_all", "load_all"),
        praise="Your writes coalesce: one commit, atomic, and the reply waits for it. That is "
               "also why you almost never need to await a put().")
