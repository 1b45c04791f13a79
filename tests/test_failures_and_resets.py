"""Failures and resets: who sees what error, what is lost, what survives."""

from __future__ import annotations

import asyncio

import pytest

from durable_lab import DurableObject, DurableObjectResetError, Lab, Request, Response
from durable_lab.events import InstanceConstructed, InstanceReset


class Account(DurableObject):
    constructed = 0

    def __init__(self, ctx, env):
        super().__init__(ctx, env)
        type(self).constructed += 1
        self.calls = 0

    async def deposit(self, amount):
        self.calls += 1
        balance = (await self.ctx.storage.get("balance")) or 0
        self.ctx.storage.put("balance", balance + amount)
        return balance + amount

    async def balance(self):
        return await self.ctx.storage.get("balance")

    async def memory(self):
        return self.calls

    async def sleepy(self):
        await asyncio.sleep(0.05)
        return "woke"

    async def fail(self):
        self.calls += 1
        raise ValueError("bad amount")

    async def abort_after_put(self):
        self.ctx.storage.put("balance", 888)
        self.ctx.abort("test broken")
        type(self).after_abort = True  # never runs

    async def swallow_abort(self):
        try:
            self.ctx.abort()
        except Exception:
            return "swallowed"


@pytest.fixture(autouse=True)
def reset_counters():
    Account.constructed = 0
    Account.after_abort = False


async def test_plain_exception_fails_only_that_call_and_is_flagged_remote(lab):
    stub = lab.bind("A", Account).getByName("plain")
    await stub.deposit(5)
    with pytest.raises(ValueError, match=r"^bad amount$") as info:
        await stub.fail()
    assert info.value.remote is True
    assert info.value.durableObjectReset is False
    assert await stub.memory() == 2  # same instance: in-memory state kept
    assert await stub.balance() == 5
    assert Account.constructed == 1


async def test_failed_commit_fails_in_flight_deliveries_and_loses_unflushed_writes(tmp_path):
    lab = Lab(tmp_path / "f", commit_latency=0.02)
    try:
        ns = lab.bind("A", Account)
        stub = ns.getByName("broken")
        await stub.deposit(10)
        rec = lab.record()
        lab.fail_next_commit(stub)
        doomed = stub.deposit(1)  # its commit will fail
        sleeping = stub.sleepy()  # in flight when the object resets
        await asyncio.sleep(0.005)
        late = stub.deposit(100)  # written into the next batch, never committed
        for call in (doomed, sleeping, late):
            with pytest.raises(DurableObjectResetError) as info:
                await call
            assert info.value.durableObjectReset
        (reset,) = rec.of(InstanceReset)
        assert reset.reason == "outputGateBroken" and reset.stubs_broken
        fresh = ns.getByName("broken")
        assert await fresh.balance() == 10  # exactly the committed state
        assert await fresh.memory() == 0  # constructor ran again
        assert Account.constructed == 2
    finally:
        await lab.close()


async def test_abort_discards_unflushed_writes_and_never_returns(lab):
    ns = lab.bind("A", Account)
    stub = ns.getByName("abort")
    await stub.deposit(1)
    with pytest.raises(DurableObjectResetError, match=r"^test broken$") as info:
        await stub.abort_after_put()
    assert info.value.durableObjectReset
    assert Account.after_abort is False
    assert await ns.getByName("abort").balance() == 1  # 888 was never persisted
    with pytest.raises(DurableObjectResetError):
        await stub.balance()  # the old stub is broken


async def test_abort_cannot_be_swallowed_by_except_exception(lab):
    ns = lab.bind("A", Account)
    with pytest.raises(DurableObjectResetError,
                       match=r"^Application called abort\(\) to reset Durable Object.$"):
        await ns.getByName("swallow").swallow_abort()


async def test_constructor_failure_is_a_remote_reset_and_the_next_stub_retries(lab):
    class Fragile(DurableObject):
        attempts = 0

        def __init__(self, ctx, env):
            super().__init__(ctx, env)
            type(self).attempts += 1
            if type(self).attempts == 1:
                raise KeyError("config")

        async def ping(self):
            return "pong"

    ns = lab.bind("F", Fragile)
    with pytest.raises(DurableObjectResetError) as info:
        await ns.getByName("x").ping()
    assert info.value.remote and info.value.durableObjectReset
    assert info.value.reason == "constructorFailed"
    assert await ns.getByName("x").ping() == "pong"


async def test_rebinding_a_class_is_a_code_update_that_keeps_state_and_stubs(lab):
    ns = lab.bind("A", Account)
    stub = ns.getByName("update")
    await stub.deposit(3)
    in_flight = stub.sleepy()
    await asyncio.sleep(0.005)

    class AccountV2(Account):
        async def version(self):
            return 2

    rec = lab.record()
    assert lab.bind("A", AccountV2) is ns
    with pytest.raises(DurableObjectResetError, match="code was updated"):
        await in_flight
    assert await stub.version() == 2  # the same stub reaches the new code
    assert await stub.balance() == 3  # stored state survived the update
    assert [e.reason for e in rec.of(InstanceReset)] == ["codeUpdated"]
    assert [e.class_name for e in rec.of(InstanceConstructed)] == [AccountV2.__qualname__]


async def test_reset_in_a_critical_section_fails_queued_deliveries_too(lab):
    class Gate(DurableObject):
        async def explode(self):
            async def cs():
                await asyncio.sleep(0.01)
                raise RuntimeError("inside")
            await self.ctx.blockConcurrencyWhile(cs)

        async def ping(self):
            return "pong"

    stub = lab.bind("G", Gate).getByName("g")
    results = await asyncio.gather(stub.explode(), stub.ping(), stub.ping(),
                                   return_exceptions=True)
    assert [type(r) for r in results] == [DurableObjectResetError] * 3
    assert all(str(r) == "inside" for r in results)


async def test_results_cross_the_stub_as_copies(lab):
    class Holder(DurableObject):
        def __init__(self, ctx, env):
            super().__init__(ctx, env)
            self.items = ["a"]

        async def items_list(self):
            return self.items

        async def add(self, item_list):
            self.items.extend(item_list)
            return len(self.items)

    stub = lab.bind("H", Holder).getByName("copies")
    got = await stub.items_list()
    got.append("mutated by caller")
    mine = ["b"]
    await stub.add(mine)
    mine.append("mutated after the call")
    assert await stub.items_list() == ["a", "b"]


async def test_returning_an_unsupported_type_is_a_clear_remote_error(lab):
    class Leaks(DurableObject):
        async def me(self):
            return self

    with pytest.raises(TypeError, match="cannot hold a value of type") as info:
        await lab.bind("L", Leaks).getByName("x").me()
    assert info.value.remote


async def test_fetch_round_trip_with_json(lab):
    class Api(DurableObject):
        async def fetch(self, request):
            if request.method == "POST":
                body = await request.json()
                self.ctx.storage.put("last", body)
                return Response.json({"stored": body}, status=201)
            return Response(f"path={request.path} last={await self.ctx.storage.get('last')}")

    stub = lab.bind("API", Api).getByName("x")
    created = await stub.fetch(Request("https://lab/items", method="POST", json={"n": 1}))
    assert created.status == 201 and await created.json() == {"stored": {"n": 1}}
    got = await stub.fetch("https://lab/items")
    assert await got.text() == "path=/items last={'n': 1}"


async def test_fetch_handler_must_return_a_response(lab):
    class NotHttp(DurableObject):
        async def fetch(self, request):
            return "plain string"

    with pytest.raises(TypeError, match="did not resolve to 'Response'"):
        await lab.bind("N", NotHttp).getByName("x").fetch("https://lab/")


async def test_wait_until_keeps_work_running_after_the_reply(lab):
    class Background(DurableObject):
        async def start(self):
            async def later():
                await asyncio.sleep(0.01)
                self.ctx.storage.put("done", True)
            self.ctx.waitUntil(later())
            return "replied"

        async def done(self):
            return await self.ctx.storage.get("done")

    stub = lab.bind("B", Background).getByName("x")
    assert await stub.start() == "replied"
    await lab.wait_idle()
    assert await stub.done() is True


async def test_calls_after_close_are_refused(tmp_path):
    lab = Lab(tmp_path / "closed")
    stub = lab.bind("A", Account).getByName("x")
    await stub.deposit(1)
    await lab.close()
    with pytest.raises(RuntimeError, match="lab is closed"):
        lab.bind("B", Account)
    reopened = Lab(tmp_path / "closed")
    try:
        assert await reopened.bind("A", Account).getByName("x").balance() == 1
    finally:
        await reopened.close()
