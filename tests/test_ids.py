"""Tests of Durable Object ids: idFromName, newUniqueId, idFromString, and what stubs expose.

An id names exactly one object in one namespace. Names must map to the same id every time (also
in another Lab on the same folder: stored state is found by id), unique ids must be
reproducible with a seed, and ``idFromString`` must refuse typos and ids of other namespaces
with Cloudflare's messages.
"""

from __future__ import annotations

import hashlib
import hmac
import re

import pytest

from durable_lab import DurableObject, DurableObjectId, Lab

HEX64 = re.compile(r"[0-9a-f]{64}")
INVALID = "Invalid Durable Object ID: must be 64 hex digits"
WRONG_NAMESPACE = "Durable Object ID is not valid for this namespace"


class Echo(DurableObject):
    async def whoami(self):
        return {"id": str(self.ctx.id), "name": self.ctx.id.name}


class Other(DurableObject):
    pass


@pytest.fixture
async def ns(memory_lab):
    return memory_lab.bind("ECHO", Echo)


@pytest.fixture
async def other(memory_lab):
    return memory_lab.bind("OTHER", Other)


# -- idFromName ------------------------------------------------------------------------------


async def test_id_from_name_is_deterministic_for_the_same_namespace_and_name(ns):
    first = ns.idFromName("room-1")
    second = ns.idFromName("room-1")
    assert first == second
    assert str(first) == str(second)
    assert first is not second


async def test_id_from_name_differs_across_names(ns):
    ids = {str(ns.idFromName(name)) for name in ("a", "b", "A", "a ", "", "room-1", "room-2")}
    assert len(ids) == 7


async def test_the_same_name_in_two_namespaces_gives_different_ids(ns, other):
    assert str(ns.idFromName("room")) != str(other.idFromName("room"))
    assert ns.idFromName("room") != other.idFromName("room")


async def test_id_from_name_is_the_same_in_a_second_lab_so_state_survives_restarts(tmp_path):
    async with Lab(tmp_path / "one", seed=1) as lab1:
        first = lab1.bind("ECHO", Echo).idFromName("room-1")
    async with Lab(storage="memory", seed=99) as lab2:
        second = lab2.bind("ECHO", Echo).idFromName("room-1")
        other = lab2.bind("ELSE", Echo).idFromName("room-1")
    assert str(first) == str(second)
    assert str(other) != str(first)


async def test_id_from_name_follows_the_documented_hmac_construction(ns):
    # Stable across processes and versions: this is what stored state is keyed by.
    key = hashlib.sha256(b"durable_lab:ECHO").digest()

    def mac(data: bytes) -> bytes:
        return hmac.new(key, data, hashlib.sha256).digest()[:16]

    first = mac(b"room-1")
    assert str(ns.idFromName("room-1")) == (first + mac(first)).hex()


async def test_ids_print_as_64_lowercase_hex_digits(ns):
    for object_id in (ns.idFromName("x"), ns.newUniqueId(), ns.idFromName("Ünïcode ✓")):
        text = str(object_id)
        assert HEX64.fullmatch(text)
        assert object_id.toString() == text
        assert object_id.to_string() == text


async def test_id_from_name_keeps_the_name(ns):
    assert ns.idFromName("room-1").name == "room-1"
    assert ns.idFromName("").name == ""


async def test_id_from_name_drops_names_longer_than_1024_bytes_but_stays_deterministic(ns):
    kept = "x" * 1024
    dropped = "x" * 1025
    assert ns.idFromName(kept).name == kept
    assert ns.idFromName(dropped).name is None
    assert ns.idFromName(dropped) == ns.idFromName(dropped)
    assert ns.idFromName(dropped) != ns.idFromName(kept)


@pytest.mark.parametrize("bad", [1, None, b"room", ["room"]])
async def test_id_from_name_refuses_a_non_str_name(ns, bad):
    with pytest.raises(TypeError, match="str"):
        ns.idFromName(bad)


# -- newUniqueId -----------------------------------------------------------------------------


async def test_new_unique_id_has_no_name_and_is_new_each_time(ns):
    ids = [ns.newUniqueId() for _ in range(20)]
    assert all(object_id.name is None for object_id in ids)
    assert len(set(ids)) == 20
    assert len({str(i) for i in ids}) == 20


async def test_new_unique_id_is_reproducible_with_the_same_seed():
    async def three(seed):
        async with Lab(storage="memory", seed=seed) as lab:
            ns = lab.bind("ECHO", Echo)
            return [str(ns.newUniqueId()) for _ in range(3)]

    assert await three(7) == await three(7)
    assert await three(7) != await three(8)


async def test_new_unique_id_differs_between_namespaces_of_one_lab():
    async with Lab(storage="memory", seed=7) as lab:
        a = lab.bind("A", Echo).newUniqueId()
        b = lab.bind("B", Echo).newUniqueId()
    assert str(a) != str(b)


async def test_new_unique_id_takes_a_jurisdiction(ns):
    # Jurisdictions are implemented since issue 12 (tests/test_placement.py has the rest).
    made = ns.newUniqueId({"jurisdiction": "eu"})
    assert made.jurisdiction == "eu"
    assert ns.idFromString(str(made)).jurisdiction == "eu"
    with pytest.raises(TypeError, match=r"^invalid jurisdiction 'mars': a jurisdiction is one of "):
        ns.newUniqueId({"jurisdiction": "mars"})


# -- idFromString ----------------------------------------------------------------------------


async def test_id_from_string_accepts_an_id_made_from_a_name(ns):
    original = ns.idFromName("room-1")
    parsed = ns.idFromString(str(original))
    assert parsed == original
    assert str(parsed) == str(original)
    assert parsed.name is None  # the name is not recoverable from the hex


async def test_id_from_string_accepts_a_unique_id(ns):
    original = ns.newUniqueId()
    parsed = ns.idFromString(original.toString())
    assert parsed == original
    assert parsed.name is None


@pytest.mark.parametrize(
    "text",
    [
        "",
        "abc",
        "0" * 63,
        "0" * 65,
        "g" * 64,
        "z" + "0" * 63,
        " " + "0" * 63,
        "0" * 62 + "-1",
    ],
    ids=["empty", "short", "63 digits", "65 digits", "non-hex", "one non-hex", "space", "minus"],
)
async def test_id_from_string_refuses_malformed_text(ns, text):
    with pytest.raises(TypeError, match=re.escape(INVALID)):
        ns.idFromString(text)


async def test_id_from_string_refuses_an_id_with_trailing_whitespace(ns):
    with pytest.raises(TypeError, match=re.escape(INVALID)):
        ns.idFromString(str(ns.idFromName("a")) + "\n")


@pytest.mark.parametrize("bad", [None, 42, b"0" * 64])
async def test_id_from_string_refuses_non_str(ns, bad):
    with pytest.raises(TypeError, match=re.escape(INVALID)):
        ns.idFromString(bad)


async def test_id_from_string_refuses_64_hex_digits_that_no_namespace_made(ns):
    with pytest.raises(TypeError, match=re.escape(WRONG_NAMESPACE)):
        ns.idFromString("0" * 64)


async def test_id_from_string_refuses_an_id_of_another_namespace(ns, other):
    for foreign in (other.idFromName("room"), other.newUniqueId()):
        with pytest.raises(TypeError, match=re.escape(WRONG_NAMESPACE)):
            ns.idFromString(str(foreign))


async def test_id_from_string_refuses_an_id_with_one_digit_changed(ns):
    text = str(ns.idFromName("room"))
    tampered = text[:-1] + ("0" if text[-1] != "0" else "1")
    with pytest.raises(TypeError, match=re.escape(WRONG_NAMESPACE)):
        ns.idFromString(tampered)


# -- equality and hashing ------------------------------------------------------------------


async def test_ids_are_equal_and_hashed_by_value(ns):
    a = ns.idFromName("room")
    b = ns.idFromName("room")
    c = ns.idFromString(str(a))
    assert a == b == c
    assert hash(a) == hash(b) == hash(c)
    assert len({a, b, c}) == 1
    assert {a: 1}[c] == 1
    assert a.equals(c)
    assert not a.equals(ns.idFromName("other"))
    assert a != ns.idFromName("other")


async def test_an_id_is_not_equal_to_its_string(ns):
    a = ns.idFromName("room")
    assert a != str(a)
    assert not a.equals(str(a))


async def test_ids_of_different_namespaces_are_not_equal(ns, other):
    assert ns.idFromName("x") != other.idFromName("x")
    assert len({ns.idFromName("x"), other.idFromName("x")}) == 2


# -- get() and stubs -------------------------------------------------------------------------


async def test_get_refuses_an_id_from_another_namespace(ns, other):
    foreign = other.idFromName("room")
    with pytest.raises(TypeError, match=WRONG_NAMESPACE):
        ns.get(foreign)


@pytest.mark.parametrize("bad", ["room", None, 1])
async def test_get_refuses_something_that_is_not_an_id(ns, bad):
    with pytest.raises(TypeError, match="DurableObjectId"):
        ns.get(bad)


async def test_get_refuses_the_hex_string_of_a_valid_id(ns):
    with pytest.raises(TypeError, match="DurableObjectId"):
        ns.get(str(ns.idFromName("room")))


async def test_stub_exposes_its_id_and_name(ns):
    by_name = ns.getByName("room-1")
    assert by_name.id == ns.idFromName("room-1")
    assert isinstance(by_name.id, DurableObjectId)
    assert by_name.name == "room-1"

    unique = ns.newUniqueId()
    stub = ns.get(unique)
    assert stub.id == unique
    assert stub.name is None

    parsed = ns.get(ns.idFromString(str(ns.idFromName("room-2"))))
    assert parsed.name is None


async def test_get_and_get_by_name_reach_the_same_object(ns):
    via_get = await ns.get(ns.idFromName("room-1")).whoami()
    via_name = await ns.getByName("room-1").whoami()
    via_string = await ns.get(ns.idFromString(str(ns.idFromName("room-1")))).whoami()
    assert via_get["id"] == via_name["id"] == via_string["id"] == str(ns.idFromName("room-1"))


async def test_object_sees_its_own_id_and_name_as_ctx_id(ns):
    assert await ns.getByName("room-9").whoami() == {
        "id": str(ns.idFromName("room-9")),
        "name": "room-9",
    }
    unique = ns.newUniqueId()
    assert await ns.get(unique).whoami() == {"id": str(unique), "name": None}


async def test_snake_case_aliases_behave_like_the_cloudflare_names(ns):
    assert ns.id_from_name("a") == ns.idFromName("a")
    assert ns.id_from_string(str(ns.idFromName("a"))) == ns.idFromName("a")
    assert ns.get_by_name("a").id == ns.idFromName("a")
    assert ns.new_unique_id().name is None
