"""Writes made by the first step of a task a handler starts are part of the handler's turn.

In JavaScript an async function called from a handler runs at once, up to its first ``await``:
a ``put()`` in that first step is issued before the handler returns, so workerd's output gate
holds the reply for it (the RPC result waits for ``waitForOutputLocks()`` taken after the
handler's promise resolved). The lab starts such tasks through the turn lane; the reply must
wait for their first steps and for the commits those steps registered.

Written as what the caller observes: a failing commit means the caller never gets "saved";
a "saved" means the value is stored.
"""

from __future__ import annotations

import asyncio

import pytest

from durable_lab import DurableObject, DurableObjectResetError, Lab


class Starter(DurableObject):
    async def save_in_task(self, value):
        async def write():
            self.ctx.storage.put("k", value)  # the task's first step
            await asyncio.sleep(0.01)
        self.task = asyncio.create_task(write())
        return "saved"

    async def save_in_wait_until(self, value):
        async def write():
            self.ctx.storage.put("k", value)
            await asyncio.sleep(0.01)
        self.ctx.waitUntil(write())
        return "saved"

    async def save_in_nested_task(self, value):
        async def inner():
            self.ctx.storage.put("k", value)  # the first step of a task started by a first step

        async def outer():
            self.inner = asyncio.create_task(inner())
            await asyncio.sleep(0.01)
        self.task = asyncio.create_task(outer())
        return "saved"

    def save_in_task_sync_handler(self, value):
        # A plain (non-async) handler starting a task: still the same turn.
        async def write():
            self.ctx.storage.put("k", value)
        asyncio.get_running_loop().create_task(write())
        return "saved"

    async def read(self):
        return await self.ctx.storage.get("k")


METHODS = ["save_in_task", "save_in_wait_until", "save_in_nested_task"]


@pytest.fixture(params=["kv", "sql"])
def sql(request):
    return request.param == "sql"


@pytest.mark.parametrize("method", METHODS)
async def test_a_failing_commit_of_a_tasks_first_write_is_never_acknowledged(lab, sql, method):
    stub = lab.bind("S", Starter, sql=sql).getByName("fail")
    lab.faults.fail_next_commit(stub)
    with pytest.raises(DurableObjectResetError):
        await getattr(stub, method)(1)  # not "saved": the write it stands for was lost
    # And nothing was stored.
    assert await lab.bind("S", Starter, sql=sql).getByName("fail").read() is None


@pytest.mark.parametrize("method", METHODS)
async def test_an_acknowledged_task_write_is_durable_when_the_reply_arrives(tmp_path, sql, method):
    lab = Lab(tmp_path / "lab", commit_latency=0.02)
    try:
        stub = lab.bind("S", Starter, sql=sql).getByName("ack")
        assert await getattr(stub, method)(7) == "saved"
        # The reply was held until the commit landed: nothing of it is pending any more (a
        # crash at this instant must not lose it).
        snap = lab.snapshot(stub)
        assert snap.commits >= 1 and snap.dirty == () and snap.batches == ()
    finally:
        await lab.close()


async def test_a_plain_handler_starting_a_task_holds_its_reply_too(lab, sql):
    stub = lab.bind("S", Starter, sql=sql).getByName("sync")
    lab.faults.fail_next_commit(stub)
    with pytest.raises(DurableObjectResetError):
        await stub.save_in_task_sync_handler(3)
