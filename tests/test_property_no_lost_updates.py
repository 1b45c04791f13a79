"""Property: with the gates on, concurrent get-then-put counters never lose an update.

Hypothesis draws random workloads: how many objects, how many concurrent clients, how many
increments each, which of several increment styles each call uses (plain, multi-key reads, a
cache miss on an unrelated key, awaited puts, deletes and re-puts), and random client-side pauses
that shuffle the arrival order. Whatever the schedule, every counter must end at exactly the
number of increments sent to it, and the values returned to the callers must be exactly
1..n for each counter (each increment saw all the ones before it).
"""

from __future__ import annotations

import asyncio

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from durable_lab import DurableObject, Lab


class Counter(DurableObject):
    async def plain(self, key):
        n = (await self.ctx.storage.get(key)) or 0
        self.ctx.storage.put(key, n + 1)
        return n + 1

    async def multi_read(self, key):
        found = await self.ctx.storage.get([key, "unrelated-a", "unrelated-b"])
        n = found.get(key, 0)
        await self.ctx.storage.put({key: n + 1, "unrelated-a": n})
        return n + 1

    async def miss_between(self, key):
        n = (await self.ctx.storage.get(key)) or 0
        await self.ctx.storage.get(f"never-written-{n}")  # a storage read: the gate stays shut
        await self.ctx.storage.put(key, n + 1)
        return n + 1

    async def delete_and_put(self, key):
        n = (await self.ctx.storage.get(key)) or 0
        await self.ctx.storage.delete(key)
        await self.ctx.storage.list(prefix="c")
        self.ctx.storage.put(key, n + 1)
        return n + 1

    async def read(self, key):
        return await self.ctx.storage.get(key)


STYLES = ["plain", "multi_read", "miss_between", "delete_and_put"]

workloads = st.fixed_dictionaries({
    "objects": st.integers(1, 3),
    "clients": st.lists(
        st.tuples(
            st.integers(0, 2),  # which object
            st.sampled_from(["c1", "c2"]),  # which counter key
            st.lists(st.tuples(st.sampled_from(STYLES), st.sampled_from([0, 0, 0.0005])),
                     min_size=1, max_size=6),
        ),
        min_size=1, max_size=8,
    ),
    "storage": st.sampled_from(["memory", "sqlite"]),
    "latency": st.sampled_from([0.0, 0.0005]),
})


async def run_workload(workload, tmp_path_factory):
    path = None if workload["storage"] == "memory" else tmp_path_factory.mktemp("prop")
    lab = Lab(path, storage=workload["storage"], commit_latency=workload["latency"])
    try:
        ns = lab.bind("C", Counter)
        results: dict[tuple[int, str], list[int]] = {}

        async def client(obj, key, calls):
            stub = ns.getByName(f"obj{obj % workload['objects']}")
            for style, pause in calls:
                if pause:
                    await asyncio.sleep(pause)
                value = await getattr(stub, style)(key)
                results.setdefault((obj % workload["objects"], key), []).append(value)

        await asyncio.gather(*(client(o, k, calls) for o, k, calls in workload["clients"]))
        for (obj, key), seen in results.items():
            assert sorted(seen) == list(range(1, len(seen) + 1)), (obj, key, seen)
            assert await ns.getByName(f"obj{obj}").read(key) == len(seen)
    finally:
        await lab.close()


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(workload=workloads)
def test_gated_counters_never_lose_an_update(workload, tmp_path_factory):
    asyncio.run(run_workload(workload, tmp_path_factory))
