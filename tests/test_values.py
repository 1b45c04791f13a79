"""Tests of durable_lab.values: the structured-clone-like codec (encode/decode) and clone.

Storage values go through ``encode``/``decode``; RPC arguments and results go through ``clone``.
Both must accept exactly the documented types, give back equal values of the *same* types (a
tuple stays a tuple, True stays a bool), copy deeply, and refuse everything else with an error
that names what was wrong.
"""

from __future__ import annotations

import collections
import datetime as dt
import math

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from durable_lab import DurableObject, Lab
from durable_lab.errors import StorageCorruptError
from durable_lab.values import MAX_DEPTH, clone, decode, encode, encoded_size

INT_MIN = -(2**63)
INT_MAX = 2**64 - 1


def roundtrip(value):
    return decode(encode(value))


def same(a, b) -> bool:
    """Equal *and* of the same types all the way down (``==`` alone says True == 1 == 1.0)."""
    if type(a) is not type(b):
        return False
    if type(a) is float:
        if math.isnan(a):
            return math.isnan(b)
        return a == b and math.copysign(1.0, a) == math.copysign(1.0, b)
    if type(a) is dt.datetime:
        return a == b and a.utcoffset() == b.utcoffset() and a.isoformat() == b.isoformat()
    if type(a) in (list, tuple):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if type(a) is dict:
        if len(a) != len(b):
            return False
        for key, value in a.items():
            matches = [k for k in b if same(k, key)]
            if len(matches) != 1 or not same(b[matches[0]], value):
                return False
        return True
    if type(a) in (set, frozenset):
        return len(a) == len(b) and all(any(same(x, y) for y in b) for x in a)
    return a == b


# -- round trips of every allowed type ---------------------------------------------------

UTC = dt.UTC
PLUS_0530 = dt.timezone(dt.timedelta(hours=5, minutes=30))
MINUS_0800 = dt.timezone(dt.timedelta(hours=-8))

ROUND_TRIP_CASES = {
    "none": None,
    "true": True,
    "false": False,
    "zero": 0,
    "negative int": -42,
    "int64 min": INT_MIN,
    "int64 max": 2**63 - 1,
    "uint64 max": INT_MAX,
    "float": 3.25,
    "negative zero": -0.0,
    "infinity": math.inf,
    "minus infinity": -math.inf,
    "empty str": "",
    "unicode str": "héllo wörld \U0001f600 \u2603",
    "empty bytes": b"",
    "bytes": b"\x00\xff\x80binary",
    "empty list": [],
    "list": [1, "two", 3.0, None, True],
    "empty tuple": (),
    "tuple": (1, "two", (3, (4,))),
    "empty dict": {},
    "dict": {"a": 1, "b": [1, 2], "c": {"d": None}},
    "dict with int keys": {1: "one", -2: "minus two", 2**40: "big"},
    "dict with mixed keys": {
        None: 0, True: "t", 1.5: "f", b"k": "b", (1, "x"): "tuple",
        frozenset({1, 2}): "fs", dt.date(2020, 2, 29): "date", "s": "str",
    },
    "empty set": set(),
    "set": {1, 2, 3},
    "set of mixed": {1, "a", (2, 3), frozenset({4}), None, b"x"},
    "empty frozenset": frozenset(),
    "frozenset": frozenset({"a", "b"}),
    "naive datetime": dt.datetime(2024, 2, 29, 23, 59, 58, 123456),
    "datetime at midnight": dt.datetime(2000, 1, 1),
    "utc datetime": dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC),
    "+05:30 datetime": dt.datetime(2024, 6, 30, 12, 0, 0, 1, tzinfo=PLUS_0530),
    "-08:00 datetime": dt.datetime(1999, 12, 31, 23, 59, 59, tzinfo=MINUS_0800),
    "date": dt.date(2024, 2, 29),
    "date min": dt.date.min,
    "nested everything": {
        "list": [(1, 2), {3, 4}, frozenset({5}), [dt.date(2021, 1, 1)]],
        7: {"deep": [[[{"deeper": (b"bytes", dt.datetime(2021, 5, 6, tzinfo=UTC))}]]]},
        (1, (2, 3)): {frozenset({"x"}): {None: [set(), (), {}]}},
    },
}


@pytest.mark.parametrize("value", ROUND_TRIP_CASES.values(), ids=list(ROUND_TRIP_CASES))
def test_encode_decode_round_trips_each_allowed_type_with_the_same_types(value):
    assert same(roundtrip(value), value)


@pytest.mark.parametrize("value", ROUND_TRIP_CASES.values(), ids=list(ROUND_TRIP_CASES))
def test_clone_returns_an_equal_value_of_the_same_types(value):
    assert same(clone(value), value)


def test_encode_returns_bytes_and_encoded_size_is_their_length():
    data = encode({"a": [1, 2, 3]})
    assert isinstance(data, bytes)
    assert encoded_size({"a": [1, 2, 3]}) == len(data)


def test_bool_stays_bool_and_int_stays_int_through_a_round_trip():
    back = roundtrip([True, 1, False, 0, 1.0])
    assert [type(x) for x in back] == [bool, int, bool, int, float]


def test_nan_round_trips_as_nan():
    assert math.isnan(roundtrip(math.nan))
    assert math.isnan(clone(math.nan))


def test_bytearray_comes_back_as_bytes_from_encode_and_from_clone():
    for back in (roundtrip(bytearray(b"abc")), clone(bytearray(b"abc"))):
        assert type(back) is bytes
        assert back == b"abc"
    nested = roundtrip({"k": [bytearray(b"\x00\x01")]})
    assert type(nested["k"][0]) is bytes


def test_tz_aware_datetime_keeps_its_offset_and_instant():
    value = dt.datetime(2024, 3, 10, 8, 30, tzinfo=PLUS_0530)
    back = roundtrip(value)
    assert back == value
    assert back.utcoffset() == dt.timedelta(hours=5, minutes=30)
    assert back.tzinfo is not None


def test_naive_datetime_stays_naive():
    back = roundtrip(dt.datetime(2024, 3, 10, 8, 30))
    assert back.tzinfo is None
    assert back == dt.datetime(2024, 3, 10, 8, 30)


def test_date_is_not_confused_with_datetime():
    back = roundtrip([dt.date(2024, 1, 1), dt.datetime(2024, 1, 1)])
    assert type(back[0]) is dt.date
    assert type(back[1]) is dt.datetime


def test_equal_sets_encode_to_equal_bytes_whatever_their_iteration_order():
    a, b = {8, 16}, {16, 8}
    assert list(a) != list(b)  # same set, different iteration order (hash collision)
    assert encode(a) == encode(b)
    assert encode(frozenset(a)) == encode(frozenset(b))


def test_set_and_frozenset_are_distinguished():
    back = roundtrip([{1}, frozenset({1})])
    assert type(back[0]) is set
    assert type(back[1]) is frozenset


def test_values_nested_below_the_depth_limit_are_accepted():
    value: list = []
    for _ in range(80):  # 240 levels: list, dict, tuple
        value = [{"k": (value,)}]
    assert roundtrip(value) == value
    assert clone(value) == value


@pytest.mark.parametrize("kind", ["list", "dict", "tuple", "frozenset"])
def test_a_value_nested_250_levels_is_accepted_by_encode_and_clone(kind):
    # The docstring allows nesting up to MAX_DEPTH (256) levels across a stub and 511 in
    # storage; 250 levels of any container must therefore work in both.
    wrap = {
        "list": lambda v: [v],
        "dict": lambda v: {"k": v},
        "tuple": lambda v: (v,),
        "frozenset": lambda v: frozenset({v}),
    }[kind]
    value: object = 0
    for _ in range(250):
        value = wrap(value)
    assert MAX_DEPTH > 250
    assert clone(value) == value
    assert roundtrip(value) == value


# -- refusals ------------------------------------------------------------------------------


class Point:
    def __init__(self, x, y):
        self.x = x
        self.y = y


class MyDict(dict):
    pass


REFUSED = {
    "object()": (object(), "object"),
    "lambda": (lambda: 1, "function"),
    "dict subclass": (MyDict(a=1), "MyDict"),
    "OrderedDict": (collections.OrderedDict(a=1), "OrderedDict"),
    "custom class": (Point(1, 2), "Point"),
    "generator": ((i for i in range(3)), "generator"),
    "class itself": (Point, "type"),
    "nested in a list": ([1, 2, [Point(1, 2)]], "Point"),
    "nested as a dict value": ({"a": {"b": object()}}, "object"),
    "as a dict key": ({Point(0, 0): 1}, "Point"),
    "inside a tuple": ((1, Point(0, 0)), "Point"),
    "inside a set": ({1, Point(0, 0)}, "Point"),
    "complex": (1j, "complex"),
}


@pytest.mark.parametrize(("value", "type_name"), REFUSED.values(), ids=list(REFUSED))
def test_encode_refuses_unsupported_types_with_a_type_error_naming_the_type(value, type_name):
    with pytest.raises(TypeError, match=type_name) as info:
        encode(value)
    assert "datetime.date" in str(info.value)  # lists what is allowed


@pytest.mark.parametrize(("value", "type_name"), REFUSED.values(), ids=list(REFUSED))
def test_clone_refuses_unsupported_types_with_a_type_error_naming_the_type(value, type_name):
    with pytest.raises(TypeError, match=type_name):
        clone(value)


def test_refusal_message_names_the_qualified_type_and_what_was_being_encoded():
    with pytest.raises(TypeError) as info:
        encode(Point(1, 2), what="the value for key 'p'")
    message = str(info.value)
    assert message.startswith("the value for key 'p' cannot hold")
    assert f"{Point.__module__}.Point" in message
    with pytest.raises(TypeError, match=r"^an argument of f\(\) cannot hold"):
        clone(object(), what="an argument of f()")


def test_default_what_is_a_stored_value_for_encode_and_an_rpc_argument_for_clone():
    with pytest.raises(TypeError, match=r"^a stored value cannot hold"):
        encode(object())
    with pytest.raises(TypeError, match=r"^an RPC argument cannot hold"):
        clone(object())


@pytest.mark.parametrize("number", [2**64, -(2**63) - 1, 2**100, -(2**100)])
@pytest.mark.parametrize("where", ["top", "nested"])
def test_ints_beyond_64_bits_are_refused_with_value_error(number, where):
    value = number if where == "top" else {"a": [1, (2, number)]}
    with pytest.raises(ValueError, match="64-bit"):
        encode(value)
    with pytest.raises(ValueError, match="64-bit"):
        clone(value)


def test_64_bit_bounds_are_accepted_by_encode_and_clone():
    for number in (INT_MIN, INT_MAX, 2**63, 2**63 - 1):
        assert roundtrip(number) == number
        assert clone(number) == number


def _list_cycle():
    a: list = []
    a.append(a)
    return a


def _dict_cycle():
    d: dict = {}
    d["self"] = [d]
    return d


def _cycle_through_a_tuple():
    a: list = []
    a.append((a,))
    return a


CYCLES = {"list": _list_cycle, "dict": _dict_cycle, "through a tuple": _cycle_through_a_tuple}


@pytest.mark.parametrize("make", CYCLES.values(), ids=list(CYCLES))
def test_encode_refuses_a_cycle_with_value_error(make):
    with pytest.raises(ValueError, match="cycle"):
        encode(make())


@pytest.mark.parametrize("make", CYCLES.values(), ids=list(CYCLES))
def test_clone_refuses_a_cycle_with_value_error(make):
    with pytest.raises(ValueError, match="cycle"):
        clone(make())


def test_clone_refuses_nesting_deeper_than_max_depth():
    value: list = []
    for _ in range(MAX_DEPTH + 1):
        value = [value]
    with pytest.raises(ValueError, match="nested too deeply"):
        clone(value)


# -- decode --------------------------------------------------------------------------------


@pytest.mark.parametrize("code", [0, 6, 42, 127])
def test_decode_refuses_an_unknown_extension_type_as_corrupt(code):
    data = msgpack.packb(msgpack.ExtType(code, b"payload"))
    with pytest.raises(StorageCorruptError, match=f"unknown extension type {code}"):
        decode(data)


def test_decode_refuses_an_unknown_extension_type_nested_in_a_value():
    data = msgpack.packb({"ok": [1, 2, msgpack.ExtType(99, b"x")]}, use_bin_type=True)
    with pytest.raises(StorageCorruptError, match="unknown extension type 99"):
        decode(data)


def test_decode_reads_plain_msgpack_data_as_python_values():
    data = msgpack.packb({"a": [1, "x", b"y", None]}, use_bin_type=True)
    assert decode(data) == {"a": [1, "x", b"y", None]}


# -- clone copies deeply ----------------------------------------------------------------------


def test_mutating_a_clone_never_changes_the_original():
    original = {
        "list": [1, [2, 3]],
        "dict": {"inner": {"x": 1}},
        "set": {1, 2},
        "tuple": ([1], {"y": 2}),
        7: [{"z": []}],
    }
    snapshot = encode(original)
    copy = clone(original)
    copy["list"].append(4)
    copy["list"][1].append(99)
    copy["dict"]["inner"]["x"] = "changed"
    copy["dict"]["new"] = 1
    copy["set"].add(3)
    copy["tuple"][0].append(2)
    copy["tuple"][1]["y"] = 3
    copy[7][0]["z"].append("w")
    copy["added"] = True
    assert encode(original) == snapshot
    assert original["list"] == [1, [2, 3]]
    assert original["tuple"] == ([1], {"y": 2})


def test_mutating_the_original_never_changes_a_clone():
    original = {"a": [1, 2], "b": {"c": {3}}}
    copy = clone(original)
    original["a"].append(3)
    original["b"]["c"].add(4)
    assert copy == {"a": [1, 2], "b": {"c": {3}}}


def test_clone_shares_no_mutable_container_with_the_original():
    inner = [1]
    original = [inner, (inner,), {"k": inner}, {frozenset({1})}]
    copy = clone(original)
    assert copy is not original
    assert copy[0] is not inner
    assert copy[1][0] is not inner
    assert copy[2]["k"] is not inner
    assert copy[2] is not original[2]
    assert copy[3] is not original[3]


def test_decoded_values_are_fresh_objects_each_time():
    data = encode({"a": [1]})
    first, second = decode(data), decode(data)
    first["a"].append(2)
    assert second == {"a": [1]}


def test_shared_references_are_not_preserved_by_clone_or_encode():
    shared = [1]
    for copy in (clone([shared, shared]), roundtrip([shared, shared])):
        assert copy == [[1], [1]]
        assert copy[0] is not copy[1]


# -- ids, stubs and namespaces travel by reference --------------------------------------------


class Thing(DurableObject):
    async def ping(self):
        return "pong"


async def test_clone_passes_ids_stubs_and_namespaces_by_reference():
    async with Lab(storage="memory", seed=3) as lab:
        ns = lab.bind("THING", Thing)
        object_id = ns.idFromName("a")
        stub = ns.get(object_id)
        assert clone(object_id) is object_id
        assert clone(stub) is stub
        assert clone(ns) is ns
        nested = clone({"id": object_id, "stubs": [stub], "pair": (ns, 1)})
        assert nested["id"] is object_id
        assert nested["stubs"][0] is stub
        assert nested["pair"][0] is ns


async def test_clone_without_references_refuses_ids_stubs_and_namespaces():
    async with Lab(storage="memory", seed=3) as lab:
        ns = lab.bind("THING", Thing)
        object_id = ns.idFromName("a")
        for value in (object_id, ns.get(object_id), ns):
            with pytest.raises(TypeError, match="cannot hold a value of type"):
                clone(value, references=False)


async def test_encode_refuses_ids_and_stubs_they_cannot_be_stored():
    async with Lab(storage="memory", seed=3) as lab:
        ns = lab.bind("THING", Thing)
        object_id = ns.idFromName("a")
        with pytest.raises(TypeError, match="DurableObjectId"):
            encode(object_id)
        with pytest.raises(TypeError, match="DurableObjectStub"):
            encode({"stub": ns.get(object_id)})
        assert roundtrip(str(object_id)) == str(object_id)  # the string form can be stored


def test_clone_refuses_an_object_merely_claiming_a_by_reference_attribute_on_the_instance():
    point = Point(1, 2)
    point._durable_lab_by_reference = True  # only the class-level marker counts
    with pytest.raises(TypeError, match="Point"):
        clone(point)


# -- property tests ----------------------------------------------------------------------------

# Whole-second UTC offsets (real zones have at most second precision, e.g. LMT +00:19:32).
_timezones = st.integers(min_value=-(24 * 3600 - 1), max_value=24 * 3600 - 1).map(
    lambda seconds: dt.timezone(dt.timedelta(seconds=seconds))
)
_hashable_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=INT_MIN, max_value=INT_MAX),
    st.floats(allow_nan=False),
    st.text(max_size=20),
    st.binary(max_size=20),
    st.dates(),
    st.datetimes(),
    st.datetimes(timezones=_timezones),
)
_hashables = st.recursive(
    _hashable_scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4).map(tuple),
        st.frozensets(children, max_size=4),
    ),
    max_leaves=10,
)
_scalars = st.one_of(_hashable_scalars, st.binary(max_size=20).map(bytearray))
allowed_values = st.recursive(
    _scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=5),
        st.lists(children, max_size=5).map(tuple),
        st.dictionaries(_hashables, children, max_size=5),
        st.sets(_hashables, max_size=5),
        st.frozensets(_hashables, max_size=5),
    ),
    max_leaves=25,
)


def _normalise(value):
    """What a value is expected to come back as: bytearray becomes bytes, the rest is equal."""
    if type(value) is bytearray:
        return bytes(value)
    if type(value) is list:
        return [_normalise(v) for v in value]
    if type(value) is tuple:
        return tuple(_normalise(v) for v in value)
    if type(value) is dict:
        return {k: _normalise(v) for k, v in value.items()}
    return value


@settings(max_examples=300, deadline=None)
@given(allowed_values)
def test_property_encode_decode_round_trips_any_allowed_value(value):
    assert same(roundtrip(value), _normalise(value))


@settings(max_examples=300, deadline=None)
@given(allowed_values)
def test_property_clone_round_trips_any_allowed_value_and_its_copy_encodes(value):
    copy = clone(value)
    assert same(copy, _normalise(value))
    assert same(roundtrip(copy), copy)
