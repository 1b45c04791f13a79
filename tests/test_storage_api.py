"""Tests of ``ctx.storage``: get, put, delete, deleteAll and list, as a learner calls them.

Every test runs on memory and on SQLite storage (the ``lab`` fixture). Storage is only reachable
from inside an object, so :class:`Store` exposes the operations as RPC methods. "Only in
storage" means the instance's cache has never seen the key: the tests get there by rebinding
the class (a code update resets the instance, its cache is gone, the data stays) or by opening
a fresh Lab on the same SQLite folder.
"""

from __future__ import annotations

import pytest

from durable_lab import DurableObject, Lab
from durable_lab.events import StorageOp


class Store(DurableObject):
    """Storage operations as RPC methods (arguments and results are copies)."""

    async def get(self, keys):
        return await self.ctx.storage.get(keys)

    async def put(self, key, value):
        await self.ctx.storage.put(key, value)

    async def put_many(self, entries):
        await self.ctx.storage.put(entries)

    async def delete(self, keys):
        return await self.ctx.storage.delete(keys)

    async def delete_all(self):
        await self.ctx.storage.deleteAll()

    async def list(self, **options):
        result = await self.ctx.storage.list(**options)
        return list(result.items())  # keep the order visible to the caller

    async def keys(self, **options):
        return list(await self.ctx.storage.list(**options))

    # -- things that only make sense inside one call --------------------------------------

    async def put_without_await_then_get(self, key, value):
        self.ctx.storage.put(key, value)  # no await: it still takes effect
        return await self.ctx.storage.get(key)

    async def put_without_await(self, key, value):
        self.ctx.storage.put(key, value)
        return "done"

    async def put_many_without_await_then_get(self, entries):
        self.ctx.storage.put(entries)
        return await self.ctx.storage.get(list(entries))

    async def delete_without_await_then_get(self, key):
        self.ctx.storage.delete(key)
        return await self.ctx.storage.get(key)

    async def delete_all_then_put(self, key, value):
        self.ctx.storage.deleteAll()
        self.ctx.storage.put(key, value)
        return {
            "get": await self.ctx.storage.get(key),
            "list": list((await self.ctx.storage.list()).items()),
        }

    async def delete_all_then_get(self, keys):
        self.ctx.storage.deleteAll()
        return await self.ctx.storage.get(keys)

    async def put_after_delete_all_in_same_turn_twice(self):
        self.ctx.storage.put("a", "old")
        self.ctx.storage.deleteAll()
        self.ctx.storage.put("b", "new")
        self.ctx.storage.deleteAll()
        self.ctx.storage.put("c", "newest")

    async def delete_then_list(self, deleted, puts, **options):
        """Deletes and puts that are still only in the cache, then a list() in the same turn."""
        for key in deleted:
            self.ctx.storage.delete(key)
        if puts:
            self.ctx.storage.put(puts)
        return list((await self.ctx.storage.list(**options)).items())

    async def mutate_got_value(self, key):
        value = await self.ctx.storage.get(key)
        value["mutated"] = True
        value.setdefault("items", []).append("x")
        return await self.ctx.storage.get(key)

    async def mutate_put_value(self, key):
        value = {"items": [1]}
        self.ctx.storage.put(key, value)
        value["items"].append(2)
        value["extra"] = True
        return await self.ctx.storage.get(key)

    async def mutate_listed_value(self, key):
        listed = await self.ctx.storage.list()
        listed[key]["mutated"] = True
        return (await self.ctx.storage.list())[key]

    async def mutate_get_many_value(self, key):
        got = await self.ctx.storage.get([key])
        got[key]["mutated"] = True
        return await self.ctx.storage.get(key)


@pytest.fixture
def store(lab):
    return lab.bind("STORE", Store)


def reset(lab):
    """A code update with the same class: the instance (and its cache) is dropped."""
    lab.bind("STORE", Store)


# -- get ---------------------------------------------------------------------------------------


async def test_get_of_a_missing_key_is_none(store):
    stub = store.getByName("s")
    assert await stub.get("missing") is None


async def test_get_returns_what_put_stored(lab, store):
    stub = store.getByName("s")
    await stub.put("k", {"a": [1, 2], "b": (3, 4)})
    assert await stub.get("k") == {"a": [1, 2], "b": (3, 4)}
    reset(lab)
    assert await stub.get("k") == {"a": [1, 2], "b": (3, 4)}


async def test_get_of_falsy_values_is_not_confused_with_missing(lab, store):
    stub = store.getByName("s")
    # (an entry whose value is None is skipped, as workerd skips undefined: issue #20)
    await stub.put_many({"zero": 0, "empty": "", "false": False, "none": None, "list": []})
    for source in ("cache", "storage"):
        assert await stub.get("zero") == 0, source
        assert await stub.get("false") is False, source
        assert await stub.get("empty") == "", source
        assert await stub.get("list") == [], source
        assert await stub.get(["zero", "empty", "false", "none", "list", "nope"]) == {
            "empty": "", "false": False, "list": [], "zero": 0,
        }, source
        reset(lab)


async def test_get_list_returns_only_existing_keys_sorted_with_duplicates_collapsed(lab, store):
    stub = store.getByName("s")
    await stub.put_many({"c": 3, "a": 1, "b": 2})
    for source in ("cache", "storage"):
        result = await stub.get(["c", "zz", "a", "c", "missing", "a"])
        assert result == {"a": 1, "c": 3}, source
        assert list(result) == ["a", "c"], source
        reset(lab)


async def test_get_list_mixes_cached_and_uncached_keys(lab, store):
    stub = store.getByName("s")
    await stub.put_many({"a": 1, "b": 2, "c": 3})
    reset(lab)
    assert await stub.get("b") == 2  # now only b is cached
    result = await stub.get(["c", "b", "a", "d"])
    assert list(result.items()) == [("a", 1), ("b", 2), ("c", 3)]


async def test_get_of_an_empty_list_is_an_empty_dict(store):
    assert await store.getByName("s").get([]) == {}


async def test_get_list_accepts_a_tuple_of_keys(store):
    stub = store.getByName("s")
    await stub.put("a", 1)
    assert await stub.get(("a", "b")) == {"a": 1}


# -- put ---------------------------------------------------------------------------------------


async def test_put_dict_stores_every_entry(lab, store):
    stub = store.getByName("s")
    entries = {"k1": 1, "k2": "two", "k3": [3], "k4": {"four": 4}, "k5": {"none": None}}
    await stub.put_many(entries)
    for source in ("cache", "storage"):
        assert await stub.get(list(entries)) == entries, source
        assert await stub.list() == list(entries.items()), source
        reset(lab)


async def test_put_overwrites_a_previous_value(lab, store):
    stub = store.getByName("s")
    await stub.put("k", 1)
    await stub.put("k", 2)
    await stub.put_many({"k": 3, "j": 0})
    assert await stub.get("k") == 3
    reset(lab)
    assert await stub.get("k") == 3


async def test_put_without_await_is_visible_to_the_next_get_in_the_same_call(store):
    stub = store.getByName("s")
    assert await stub.put_without_await_then_get("k", [1, 2]) == [1, 2]
    entries = {"x": 1, "y": 2}
    assert await stub.put_many_without_await_then_get(entries) == entries


async def test_put_without_await_takes_effect_for_the_next_call_and_is_durable(lab, store):
    stub = store.getByName("s")
    assert await stub.put_without_await("k", "v") == "done"
    assert await stub.get("k") == "v"
    reset(lab)
    assert await stub.get("k") == "v"


async def test_delete_without_await_is_visible_to_the_next_get(lab, store):
    stub = store.getByName("s")
    await stub.put("k", 1)
    assert await stub.delete_without_await_then_get("k") is None
    reset(lab)
    assert await stub.get("k") is None


async def test_put_of_none_is_refused_as_workerd_refuses_undefined(lab, store):
    """A Python Worker's None is JavaScript undefined on Cloudflare (issue #20, item 8)."""
    stub = store.getByName("s")
    with pytest.raises(TypeError, match=r"^put\(\) called with undefined value\."):
        await stub.put("k", None)
    await stub.put("k", [None])  # inside a value it stays
    reset(lab)
    assert await stub.list() == [("k", [None])]


async def test_objects_do_not_share_storage(store):
    a, b = store.getByName("a"), store.getByName("b")
    await a.put("k", "from a")
    assert await b.get("k") is None
    await b.put("k", "from b")
    assert await a.get("k") == "from a"


async def test_namespaces_do_not_share_storage_for_the_same_name(lab, store):
    other = lab.bind("OTHER", Store)
    await store.getByName("x").put("k", 1)
    assert await other.getByName("x").get("k") is None


# -- delete ------------------------------------------------------------------------------------


async def test_delete_of_a_cached_key_returns_true_then_false(store):
    stub = store.getByName("s")
    await stub.put("k", 1)
    assert await stub.delete("k") is True
    assert await stub.delete("k") is False
    assert await stub.get("k") is None


async def test_delete_of_a_never_written_key_returns_false(lab, store):
    stub = store.getByName("s")
    assert await stub.delete("never") is False
    reset(lab)
    assert await stub.delete("never") is False


async def test_delete_of_a_key_only_in_storage_returns_true_and_is_durable(lab, store):
    stub = store.getByName("s")
    await stub.put("k", 1)
    reset(lab)
    with lab.record() as recording:
        assert await stub.delete("k") is True
    ops = [e for e in recording.events if isinstance(e, StorageOp) and e.op == "delete"]
    assert [e.cache for e in ops] == ["miss"]  # the cache did not know the key
    assert await stub.get("k") is None
    reset(lab)
    assert await stub.get("k") is None
    assert await stub.delete("k") is False


async def test_delete_list_returns_how_many_existed_for_cached_keys(store):
    stub = store.getByName("s")
    await stub.put_many({"a": 1, "b": 2, "c": 3})
    assert await stub.delete(["a", "b", "x"]) == 2
    assert await stub.delete(["a", "b", "x"]) == 0
    assert await stub.get(["a", "b", "c"]) == {"c": 3}


async def test_delete_list_returns_how_many_existed_for_keys_only_in_storage(lab, store):
    stub = store.getByName("s")
    await stub.put_many({"a": 1, "b": 2, "c": 3})
    reset(lab)
    assert await stub.delete(["a", "b", "x", "y"]) == 2
    reset(lab)
    assert await stub.get(["a", "b", "c"]) == {"c": 3}
    assert await stub.delete(["a", "b"]) == 0


async def test_delete_list_counts_a_mix_of_cached_and_uncached_keys(lab, store):
    stub = store.getByName("s")
    await stub.put_many({"cached": 1, "stored": 2, "cached_absent_later": 3})
    reset(lab)
    assert await stub.get("cached") == 1  # cached, exists
    assert await stub.get("known_absent") is None  # cached, absent
    # cached (exists), cached (absent), only in storage (exists), unknown (absent)
    assert await stub.delete(["cached", "known_absent", "stored", "nowhere"]) == 2
    reset(lab)
    assert await stub.list() == [("cached_absent_later", 3)]


async def test_delete_of_an_empty_list_returns_zero(store):
    assert await store.getByName("s").delete([]) == 0


async def test_delete_list_with_a_repeated_key_counts_it_once(lab, store):
    stub = store.getByName("s")
    await stub.put("a", 1)
    assert await stub.delete(["a", "a"]) == 1
    await stub.put("a", 1)
    reset(lab)
    assert await stub.delete(["a", "a"]) == 1


# -- deleteAll -------------------------------------------------------------------------------


async def test_delete_all_then_get_returns_none(lab, store):
    stub = store.getByName("s")
    await stub.put_many({"a": 1, "b": 2})
    await stub.delete_all()
    assert await stub.get("a") is None
    assert await stub.get(["a", "b"]) == {}
    assert await stub.list() == []
    reset(lab)
    assert await stub.get("a") is None
    assert await stub.list() == []


async def test_delete_all_hides_keys_the_cache_never_saw(lab, store):
    stub = store.getByName("s")
    await stub.put_many({"a": 1, "b": 2})
    reset(lab)
    assert await stub.delete_all_then_get(["a", "b"]) == {}
    assert await stub.get("a") is None
    reset(lab)
    assert await stub.get(["a", "b"]) == {}


async def test_delete_all_then_put_in_the_same_turn_keeps_the_later_put(lab, store):
    stub = store.getByName("s")
    await stub.put_many({"a": 1, "b": 2, "k": "old"})
    result = await stub.delete_all_then_put("k", "new")
    assert result == {"get": "new", "list": [("k", "new")]}
    assert await stub.list() == [("k", "new")]
    reset(lab)
    assert await stub.list() == [("k", "new")]


async def test_delete_all_then_put_when_nothing_was_cached_keeps_the_later_put(lab, store):
    stub = store.getByName("s")
    await stub.put_many({"a": 1, "b": 2})
    reset(lab)
    assert await stub.delete_all_then_put("c", 3) == {"get": 3, "list": [("c", 3)]}
    reset(lab)
    assert await stub.list() == [("c", 3)]


async def test_several_delete_alls_in_one_turn_keep_only_the_last_put(lab, store):
    stub = store.getByName("s")
    await stub.put("z", 0)
    await stub.put_after_delete_all_in_same_turn_twice()
    assert await stub.list() == [("c", "newest")]
    reset(lab)
    assert await stub.list() == [("c", "newest")]


async def test_delete_after_delete_all_returns_false(lab, store):
    stub = store.getByName("s")
    await stub.put("a", 1)
    await stub.delete_all()
    assert await stub.delete("a") is False
    assert await stub.delete(["a", "b"]) == 0


# -- list ----------------------------------------------------------------------------------

KEYS = ["a", "ab", "abc", "abd", "b", "ba", "c"]


@pytest.fixture
async def listed(lab, store):
    stub = store.getByName("list")
    await stub.put_many({k: k.upper() for k in KEYS})
    return stub


LIST_CASES = [
    ({}, KEYS),
    ({"prefix": "ab"}, ["ab", "abc", "abd"]),
    ({"prefix": "a"}, ["a", "ab", "abc", "abd"]),
    ({"prefix": "x"}, []),
    ({"prefix": ""}, KEYS),
    ({"start": "ab"}, ["ab", "abc", "abd", "b", "ba", "c"]),
    ({"start": "abb"}, ["abc", "abd", "b", "ba", "c"]),
    ({"startAfter": "ab"}, ["abc", "abd", "b", "ba", "c"]),
    ({"startAfter": "c"}, []),
    ({"end": "b"}, ["a", "ab", "abc", "abd"]),
    ({"end": "a"}, []),
    ({"start": "ab", "end": "b"}, ["ab", "abc", "abd"]),
    ({"start": "b", "end": "b"}, []),
    ({"start": "c", "end": "a"}, []),
    ({"startAfter": "a", "end": "abd"}, ["ab", "abc"]),
    ({"reverse": True}, KEYS[::-1]),
    ({"limit": 2}, ["a", "ab"]),
    ({"limit": 100}, KEYS),
    ({"reverse": True, "limit": 2}, ["c", "ba"]),
    ({"prefix": "ab", "reverse": True}, ["abd", "abc", "ab"]),
    ({"prefix": "ab", "limit": 2}, ["ab", "abc"]),
    ({"prefix": "ab", "reverse": True, "limit": 2}, ["abd", "abc"]),
    ({"prefix": "a", "start": "abc"}, ["abc", "abd"]),
    ({"prefix": "ab", "start": "a"}, ["ab", "abc", "abd"]),
    ({"prefix": "a", "startAfter": "a"}, ["ab", "abc", "abd"]),
    ({"prefix": "a", "end": "abd"}, ["a", "ab", "abc"]),
    ({"prefix": "ab", "end": "z"}, ["ab", "abc", "abd"]),
    ({"start": "ab", "end": "ba", "reverse": True}, ["b", "abd", "abc", "ab"]),
    ({"start": "ab", "end": "ba", "reverse": True, "limit": 3}, ["b", "abd", "abc"]),
    ({"startAfter": "ab", "end": "ba", "reverse": True, "limit": 1}, ["b"]),
]


@pytest.mark.parametrize(("options", "expected"), LIST_CASES,
                         ids=[repr(o) for o, _ in LIST_CASES])
async def test_list_returns_keys_in_order_with_options(lab, listed, options, expected):
    for source in ("cache", "storage"):
        items = await listed.list(**options)
        assert [k for k, _ in items] == expected, source
        assert [v for _, v in items] == [k.upper() for k in expected], source
        reset(lab)


async def test_list_orders_keys_by_code_point_on_every_backend(lab, store):
    stub = store.getByName("unicode")
    keys = ["z", "\uffff", "\U0001f600", "é", "Z", "", "a\x00", "a"]
    await stub.put_many({k: i for i, k in enumerate(keys)})
    expected = sorted(keys)
    assert await stub.keys() == expected
    reset(lab)
    assert await stub.keys() == expected
    assert await stub.keys(reverse=True) == expected[::-1]
    assert await stub.keys(prefix="a") == ["a", "a\x00"]


@pytest.mark.parametrize(
    ("deleted", "puts", "options", "expected"),
    [
        (["a", "ab"], {}, {}, ["abc", "abd", "b", "ba", "c"]),
        (["a", "ab"], {}, {"limit": 2}, ["abc", "abd"]),
        (["a", "ab", "abc"], {}, {"prefix": "a", "limit": 1}, ["abd"]),
        (["c", "ba"], {}, {"reverse": True, "limit": 2}, ["b", "abd"]),
        (["b"], {"aa": 1, "bb": 2}, {"limit": 4}, ["a", "aa", "ab", "abc"]),
        (["b"], {"aa": 1, "bb": 2}, {"reverse": True, "limit": 3}, ["c", "bb", "ba"]),
        (["abc"], {"abz": 0}, {"startAfter": "ab", "limit": 2}, ["abd", "abz"]),
        (["abd"], {"abz": 0}, {"prefix": "ab", "reverse": True}, ["abz", "abc", "ab"]),
        (KEYS, {}, {"limit": 3}, []),
        (KEYS, {"q": 1}, {"limit": 3}, ["q"]),
    ],
)
async def test_list_in_the_same_turn_as_uncommitted_deletes_and_puts(
    lab, listed, deleted, puts, options, expected
):
    # Deletes and puts are still only in the cache when list() reads storage: the result must
    # merge them over the stored rows, and a limit must count the merged result.
    for source in ("cold cache", "warm cache"):
        reset(lab)
        if source == "warm cache":
            await listed.get([*KEYS, *puts])  # every key known to the cache
        items = await listed.delete_then_list(deleted, puts, **options)
        assert [k for k, _ in items] == expected, source
        # The same list once the writes are committed and the cache is gone.
        reset(lab)
        assert [k for k, _ in await listed.list(**options)] == expected, source
        # Put everything back for the next round.
        await listed.delete(list(puts))
        await listed.put_many({k: k.upper() for k in KEYS})
        assert await listed.keys() == KEYS


async def test_list_after_committed_deletes_skips_them(lab, listed):
    assert await listed.delete(["ab", "b"]) == 2
    assert await listed.keys(limit=3) == ["a", "abc", "abd"]
    reset(lab)
    assert await listed.keys(limit=3) == ["a", "abc", "abd"]
    assert await listed.keys(reverse=True, limit=3) == ["c", "ba", "abd"]


async def test_list_of_an_empty_object_is_empty(store):
    stub = store.getByName("empty")
    assert await stub.list() == []
    assert await stub.list(prefix="a", limit=5) == []


async def test_list_refuses_start_together_with_start_after(listed):
    with pytest.raises(TypeError) as info:
        await listed.list(start="a", startAfter="b")
    assert str(info.value) == "list() cannot be called with both start and startAfter values."
    assert info.value.remote is True


@pytest.mark.parametrize("limit", [0, -1, -100])
async def test_list_refuses_a_limit_that_is_not_positive(listed, limit):
    with pytest.raises(Exception, match="List limit must be positive") as info:
        await listed.list(limit=limit)
    assert isinstance(info.value, (TypeError, ValueError))
    assert info.value.remote is True


# -- values are copies ---------------------------------------------------------------------


async def test_mutating_a_got_value_does_not_change_the_stored_value(lab, store):
    stub = store.getByName("s")
    await stub.put("k", {"items": [1]})
    assert await stub.mutate_got_value("k") == {"items": [1]}
    assert await stub.get("k") == {"items": [1]}
    reset(lab)
    assert await stub.mutate_got_value("k") == {"items": [1]}


async def test_mutating_a_value_after_put_does_not_change_the_stored_value(lab, store):
    stub = store.getByName("s")
    assert await stub.mutate_put_value("k") == {"items": [1]}
    reset(lab)
    assert await stub.get("k") == {"items": [1]}


async def test_mutating_listed_or_multi_got_values_does_not_change_storage(store):
    stub = store.getByName("s")
    await stub.put("k", {"v": 1})
    assert await stub.mutate_listed_value("k") == {"v": 1}
    assert await stub.mutate_get_many_value("k") == {"v": 1}


async def test_mutating_a_value_returned_through_the_stub_does_not_change_storage(store):
    stub = store.getByName("s")
    await stub.put("k", [1, 2])
    got = await stub.get("k")
    got.append(3)
    assert await stub.get("k") == [1, 2]


async def test_mutating_an_argument_after_the_call_does_not_change_storage(store):
    stub = store.getByName("s")
    value = {"a": [1]}
    pending = stub.put("k", value)
    value["a"].append(2)  # after the call was made, before it ran
    await pending
    assert await stub.get("k") == {"a": [1]}


# -- persistence ---------------------------------------------------------------------------


async def test_storage_persists_across_labs_on_the_same_sqlite_folder(tmp_path):
    path = tmp_path / "persist"
    lab = Lab(path)
    ns = lab.bind("STORE", Store)
    stub = ns.getByName("room")
    await stub.put_many({"a": 1, "b": [1, (2, 3)], "c": {"d": {4}}})
    await stub.put_without_await("later", "also durable")
    await stub.delete("a")
    unique = ns.newUniqueId()
    await ns.get(unique).put("u", "unique")
    await lab.close()

    lab = Lab(path)
    try:
        ns = lab.bind("STORE", Store)
        stub = ns.getByName("room")
        assert await stub.get("a") is None
        assert await stub.get("b") == [1, (2, 3)]
        assert await stub.list() == [("b", [1, (2, 3)]), ("c", {"d": {4}}),
                                     ("later", "also durable")]
        assert await ns.get(ns.idFromString(str(unique))).get("u") == "unique"
        assert await ns.getByName("other").list() == []
        # A key only in storage, deleted through a fresh cache.
        assert await stub.delete(["b", "x"]) == 1
    finally:
        await lab.close()

    lab = Lab(path)
    try:
        stub = lab.bind("STORE", Store).getByName("room")
        assert await stub.keys() == ["c", "later"]
    finally:
        await lab.close()


async def test_delete_all_persists_across_labs(tmp_path):
    path = tmp_path / "persist"
    async with Lab(path) as lab:
        stub = lab.bind("STORE", Store).getByName("room")
        await stub.put_many({"a": 1, "b": 2})
    async with Lab(path) as lab:
        stub = lab.bind("STORE", Store).getByName("room")
        assert await stub.delete_all_then_put("c", 3) == {"get": 3, "list": [("c", 3)]}
    async with Lab(path) as lab:
        stub = lab.bind("STORE", Store).getByName("room")
        assert await stub.list() == [("c", 3)]


async def test_a_memory_lab_does_not_share_storage_with_another_memory_lab():
    async with Lab(storage="memory") as lab:
        await lab.bind("STORE", Store).getByName("room").put("k", 1)
    async with Lab(storage="memory") as lab:
        assert await lab.bind("STORE", Store).getByName("room").get("k") is None
