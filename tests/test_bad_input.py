"""Bad input gets a clear error and leaves everything as it was.

Each test makes one mistake a learner could make (an oversize key, a value that cannot be
stored, a missing method, a bad binding...) and checks two things: the error says what was
wrong, and the object's stored data and in-memory state are untouched afterwards (read back in
the same instance, whose cache would show a half-applied write, and in a fresh instance, which
reads what was committed).

Errors raised by storage calls inside object code reach the caller as *remote* errors of the
same type (``err.remote is True``), so ``except TypeError`` works across the stub.
"""

from __future__ import annotations

import re

import pytest

from durable_lab import DurableObject, Lab, Request, Response
from durable_lab.storage import MAX_KEY_SIZE, MAX_KEYS, MAX_VALUE_SIZE
from durable_lab.values import v8_size

SEED = {"a": 1, "b": [1, 2, {"c": "three"}], "k" * MAX_KEY_SIZE: "longest key"}


class Unstorable:
    def __init__(self):
        self.x = 1


def _max_value() -> str:
    """A value whose size as workerd measures it (V8's serialization) is exactly
    MAX_VALUE_SIZE: a one-byte string costs its length plus the header, tag and length."""
    n = MAX_VALUE_SIZE - 6  # header 2, tag 1, length varint 3
    assert v8_size("x" * n) == MAX_VALUE_SIZE
    return "x" * n


#: What a handler does with ``storage`` (built inside the object: most of these values could
#: not even cross a stub) -> (expected error type, regex the message must match).
STORAGE_MISTAKES = {
    "put key of 2049 bytes": (
        lambda s: s.put("k" * (MAX_KEY_SIZE + 1), 1),
        ValueError, "Keys cannot be larger than 2048 bytes",
    ),
    "put key of 2050 utf-8 bytes": (
        lambda s: s.put("é" * 1025, 1),
        ValueError, "Keys cannot be larger than 2048 bytes",
    ),
    "get key of 2049 bytes": (
        lambda s: s.get("k" * (MAX_KEY_SIZE + 1)),
        ValueError, "Keys cannot be larger than 2048 bytes",
    ),
    "delete key of 2049 bytes": (
        lambda s: s.delete("k" * (MAX_KEY_SIZE + 1)),
        ValueError, "Keys cannot be larger than 2048 bytes",
    ),
    "oversize key inside put(dict)": (
        lambda s: s.put({"a": 100, "new": 1, "k" * (MAX_KEY_SIZE + 1): 2}),
        ValueError, "Keys cannot be larger than 2048 bytes",
    ),
    "oversize key inside get(list)": (
        lambda s: s.get(["a", "k" * (MAX_KEY_SIZE + 1)]),
        ValueError, "Keys cannot be larger than 2048 bytes",
    ),
    "oversize key inside delete(list)": (
        lambda s: s.delete(["a", "b", "k" * (MAX_KEY_SIZE + 1)]),
        ValueError, "Keys cannot be larger than 2048 bytes",
    ),
    "put value over 131072 bytes": (
        lambda s: s.put("a", b"x" * MAX_VALUE_SIZE),
        ValueError, "Values cannot be larger than 131072 bytes",
    ),
    "put value one byte over": (
        lambda s: s.put("a", _max_value() + "x"),
        ValueError, "Values cannot be larger than 131072 bytes",
    ),
    "oversize value inside put(dict)": (
        lambda s: s.put({"new": 1, "a": 100, "big": "x" * MAX_VALUE_SIZE}),
        ValueError, "Values cannot be larger than 131072 bytes",
    ),
    "put(dict) of 129 entries": (
        lambda s: s.put({f"n{i}": i for i in range(MAX_KEYS + 1)}),
        ValueError, "128",
    ),
    "get(list) of 129 keys": (
        lambda s: s.get([f"n{i}" for i in range(MAX_KEYS + 1)]),
        ValueError, "128",
    ),
    "delete(list) of 129 keys": (
        lambda s: s.delete(["a", "b", *(f"n{i}" for i in range(MAX_KEYS - 1))]),
        ValueError, "128",
    ),
    "put of a class instance": (
        lambda s: s.put("a", Unstorable()),
        TypeError, "Unstorable",
    ),
    "put of a function": (
        lambda s: s.put("a", print),
        TypeError, "builtin_function_or_method",
    ),
    "put of a nested class instance": (
        lambda s: s.put("a", {"ok": [1, Unstorable()]}),
        TypeError, "Unstorable",
    ),
    "put(dict) where one of several values is bad": (
        lambda s: s.put({"a": 100, "new": 1, "bad": Unstorable(), "zzz": 2}),
        TypeError, "Unstorable",
    ),
    "put of an int beyond 64 bits": (
        lambda s: s.put("a", 2**64),
        ValueError, "64-bit",
    ),
    "put of a cyclic list": (
        lambda s: s.put("a", (lambda x: (x.append(x), x)[1])([])),
        ValueError, "cycle",
    ),
    "put of a cycle through a tuple": (
        lambda s: s.put("a", (lambda x: (x.append((x,)), x)[1])([])),
        ValueError, "cycle",
    ),
    "put with an int key": (lambda s: s.put(1, "x"), TypeError, "str"),
    "put with a bytes key": (lambda s: s.put(b"a", "x"), TypeError, "str"),
    "put(dict) with a non-str key": (
        lambda s: s.put({"a": 100, "new": 1, 3: "x"}), TypeError, "str",
    ),
    "get with an int key": (lambda s: s.get(1), TypeError, "str"),
    "get(list) with a non-str key": (lambda s: s.get(["a", None]), TypeError, "str"),
    "delete with an int key": (lambda s: s.delete(1), TypeError, "str"),
    "delete(list) with a non-str key": (
        lambda s: s.delete(["a", "b", 2]), TypeError, "str",
    ),
    "put with a key and no value": (lambda s: s.put("a"), TypeError, "value"),
    "put(dict) with a value as well": (
        lambda s: s.put({"a": 100}, 1), TypeError, "not both",
    ),
    "list with start and startAfter": (
        lambda s: s.list(start="a", startAfter="b"),
        TypeError, re.escape("list() cannot be called with both start and startAfter values."),
    ),
    "list with a non-str prefix": (lambda s: s.list(prefix=1), TypeError, "prefix"),
    "list with limit 0": (lambda s: s.list(limit=0), Exception, "List limit must be positive"),
}


class Vault(DurableObject):
    """Holds SEED in storage and a note in memory; ``attempt`` makes one mistake."""

    def __init__(self, ctx, env):
        super().__init__(ctx, env)
        self.note = "fresh"
        self.calls = 0

    async def seed(self):
        await self.ctx.storage.put(SEED)
        self.note = "kept"
        return "seeded"

    async def state(self):
        self.calls += 1
        return {
            "storage": await self.ctx.storage.list(),
            "get": await self.ctx.storage.get(["a", "b", "new", "zzz", "n0"]),
            "note": self.note,
        }

    async def attempt(self, mistake):
        operation = STORAGE_MISTAKES[mistake][0]
        self.note = "kept"  # unchanged by the mistake
        await operation(self.ctx.storage)
        self.note = "changed after the mistake"  # never reached
        return "no error"

    async def attempt_and_recover(self, mistake):
        """The error is raised at the call, synchronously, so object code can catch it."""
        operation = STORAGE_MISTAKES[mistake][0]
        try:
            operation(self.ctx.storage)  # no await
        except Exception as exc:
            return {"caught": type(exc).__name__, "a": await self.ctx.storage.get("a")}
        return {"caught": None}

    async def fail(self, message):
        self.note = "set before raising"
        self.ctx.storage.put("written before raising", True)
        raise ValueError(message)

    async def echo(self, value=None, **kwargs):
        return [value, kwargs]

    async def _secret(self):
        return "secret"

    def sync_method(self):
        return "sync"

    async def fetch(self, request):
        return Response(f"{request.method} {request.path}")

    not_a_method = 42


EXPECTED_STORAGE = dict(sorted(SEED.items()))


@pytest.fixture
async def vault(lab):
    stub = lab.bind("VAULT", Vault).getByName("v")
    assert await stub.seed() == "seeded"
    return stub


async def assert_intact(lab, stub, *, note="kept"):
    """Storage holds exactly SEED, in this instance and in a fresh one."""
    now = await stub.state()
    assert now["storage"] == EXPECTED_STORAGE
    assert now["get"] == {"a": 1, "b": SEED["b"]}
    assert now["note"] == note
    lab.bind("VAULT", Vault)  # code update: fresh instance, empty cache
    fresh = await stub.state()
    assert fresh["storage"] == EXPECTED_STORAGE
    assert fresh["get"] == {"a": 1, "b": SEED["b"]}
    assert fresh["note"] == "fresh"


@pytest.mark.parametrize("mistake", list(STORAGE_MISTAKES))
async def test_storage_mistake_raises_a_remote_error_and_changes_nothing(lab, vault, mistake):
    _, error_type, pattern = STORAGE_MISTAKES[mistake]
    with pytest.raises(error_type, match=pattern) as info:
        await vault.attempt(mistake)
    error = info.value
    if error_type is not Exception:
        assert type(error) is error_type
    else:
        assert isinstance(error, (TypeError, ValueError))
    assert error.remote is True
    assert error.retryable is False
    assert error.durableObjectReset is False
    await assert_intact(lab, vault)


@pytest.mark.parametrize(
    "mistake",
    ["put value over 131072 bytes", "put(dict) where one of several values is bad",
     "put with an int key", "put key of 2049 bytes"],
)
async def test_storage_mistakes_raise_at_the_call_so_object_code_can_catch_them(
    lab, vault, mistake
):
    _, error_type, _ = STORAGE_MISTAKES[mistake]
    result = await vault.attempt_and_recover(mistake)
    assert result == {"caught": error_type.__name__, "a": 1}
    await assert_intact(lab, vault)


async def test_limits_themselves_are_accepted(lab):
    class Edge(Vault):
        async def at_limits(self):
            storage = self.ctx.storage
            await storage.put("é" * (MAX_KEY_SIZE // 2), "2048 utf-8 bytes")
            await storage.put("max", _max_value())
            await storage.put({f"n{i}": i for i in range(MAX_KEYS)})
            got = await storage.get([f"n{i}" for i in range(MAX_KEYS)])
            deleted = await storage.delete([f"n{i}" for i in range(MAX_KEYS)])
            return [len(got), deleted, len(await storage.get("max"))]

    stub = lab.bind("EDGE", Edge).getByName("e")
    assert await stub.at_limits() == [MAX_KEYS, MAX_KEYS, MAX_VALUE_SIZE - 6]


# -- handler errors ----------------------------------------------------------------------


async def test_a_handler_raising_value_error_reaches_the_caller_as_a_remote_value_error(lab, vault):
    with pytest.raises(ValueError, match=r"^bad amount$") as info:
        await vault.fail("bad amount")
    assert type(info.value) is ValueError
    assert info.value.remote is True
    assert info.value.retryable is False
    assert info.value.overloaded is False
    assert info.value.durableObjectReset is False


async def test_a_handler_error_keeps_the_objects_memory_and_storage(lab, vault):
    with pytest.raises(ValueError):
        await vault.fail("boom")
    state = await vault.state()
    # The object was not reset: its in-memory state is what the handler left.
    assert state["note"] == "set before raising"
    # Previously stored values are intact (the write made before raising is kept too, as on
    # Cloudflare: there is no rollback without a transaction).
    for key, value in SEED.items():
        assert state["storage"][key] == value
    assert await vault.echo("still alive") == ["still alive", {}]


async def test_a_handler_error_does_not_break_the_stub_or_other_callers(lab, vault):
    with pytest.raises(ValueError):
        await vault.fail("once")
    other_stub = lab.env.VAULT.getByName("v")
    assert await vault.echo(1) == [1, {}]
    assert await other_stub.echo(2) == [2, {}]


# -- RPC mistakes --------------------------------------------------------------------------


async def test_calling_a_missing_method_is_a_type_error_naming_it(lab, vault):
    with pytest.raises(TypeError, match=re.escape(
        'The RPC receiver does not implement the method "x".'
    )):
        await vault.x()
    await assert_intact(lab, vault)


async def test_calling_a_non_callable_attribute_is_a_type_error(lab, vault):
    with pytest.raises(TypeError, match="does not implement the method \"not_a_method\""):
        await vault.not_a_method()
    await assert_intact(lab, vault)


async def test_a_private_method_cannot_be_reached_through_a_stub(lab, vault):
    with pytest.raises(AttributeError, match="private"):
        vault._secret  # noqa: B018
    with pytest.raises(AttributeError, match="private"):
        await vault._missing_private()
    await assert_intact(lab, vault)


@pytest.mark.parametrize("name", ["alarm", "webSocketMessage", "webSocketClose",
                                  "webSocketError", "connect", "dup", "constructor"])
async def test_reserved_methods_cannot_be_called_over_rpc(lab, vault, name):
    with pytest.raises(TypeError, match="reserved method"):
        await getattr(vault, name)()
    await assert_intact(lab, vault)


@pytest.mark.parametrize(
    ("args", "kwargs", "type_name"),
    [
        ((Unstorable(),), {}, "Unstorable"),
        (([1, {"x": object()}],), {}, "object"),
        ((), {"value": lambda: 1}, "function"),
        ((), {"extra": Unstorable()}, "Unstorable"),
    ],
    ids=["instance", "nested object", "lambda kwarg", "instance kwarg"],
)
async def test_an_unsupported_argument_type_is_a_type_error(lab, vault, args, kwargs, type_name):
    with pytest.raises(TypeError, match=type_name):
        await vault.echo(*args, **kwargs)
    await assert_intact(lab, vault)


async def test_an_argument_int_beyond_64_bits_is_a_value_error(lab, vault):
    with pytest.raises(ValueError, match="64-bit"):
        await vault.echo(2**64)
    await assert_intact(lab, vault)


async def test_a_sync_public_method_is_callable_through_a_stub(vault):
    assert await vault.sync_method() == "sync"


async def test_fetch_with_a_relative_url_is_a_type_error_about_absolute_urls(lab, vault):
    for request in ("/relative", "relative/path", "lab/path"):
        with pytest.raises(TypeError, match="absolute URL"):
            await vault.fetch(request)
    with pytest.raises(TypeError, match="absolute URL"):
        Request("/relative")
    assert await (await vault.fetch("https://lab/ok")).text() == "GET /ok"
    await assert_intact(lab, vault)


# -- lab mistakes --------------------------------------------------------------------------


class NotAnObject:
    async def ping(self):
        return "pong"


@pytest.mark.parametrize(
    "cls",
    [NotAnObject, NotAnObject(), object, "Vault", None],
    ids=["plain class", "instance", "object", "str", "None"],
)
async def test_bind_refuses_a_class_that_is_not_a_durable_object(lab, vault, cls):
    with pytest.raises(TypeError, match="DurableObject"):
        lab.bind("OTHER", cls)
    with pytest.raises(AttributeError):
        lab.env.OTHER  # noqa: B018 - nothing was bound
    # Rebinding an existing name with a bad class changes nothing either: no code update.
    with pytest.raises(TypeError, match="DurableObject"):
        lab.bind("VAULT", cls)
    assert lab.env.VAULT.cls is Vault
    await assert_intact(lab, vault)


@pytest.mark.parametrize("name", ["1ABC", "_PRIVATE", "has space", "", "a-b", 5, None])
async def test_bind_refuses_a_bad_binding_name(lab, vault, name):
    with pytest.raises(ValueError, match="binding name"):
        lab.bind(name, Vault)
    assert set(dir(lab.env)) == {"VAULT"}
    await assert_intact(lab, vault)


async def test_rebinding_with_a_bad_name_does_not_reset_the_live_object(lab, vault):
    assert (await vault.state())["note"] == "kept"
    with pytest.raises(ValueError):
        lab.bind("bad name", Vault)
    assert (await vault.state())["note"] == "kept"  # no code update happened


@pytest.mark.parametrize("storage", ["nope", "SQLITE", "", None])
def test_lab_refuses_an_unknown_storage_kind(storage):
    with pytest.raises(ValueError, match="storage must be 'sqlite' or 'memory'"):
        Lab(storage=storage)


def test_lab_refuses_a_path_with_memory_storage(tmp_path):
    with pytest.raises(ValueError, match="path"):
        Lab(tmp_path / "x", storage="memory")
    assert not (tmp_path / "x").exists()


async def test_a_refused_lab_leaves_another_labs_storage_intact(tmp_path):
    path = tmp_path / "lab"
    async with Lab(path) as lab:
        await lab.bind("VAULT", Vault).getByName("v").seed()
    with pytest.raises(ValueError):
        Lab(path, storage="nope")
    async with Lab(path) as lab:
        state = await lab.bind("VAULT", Vault).getByName("v").state()
        assert state["storage"] == EXPECTED_STORAGE
