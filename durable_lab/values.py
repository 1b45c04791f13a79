"""Values that cross a stub or go into storage: a structured-clone-like codec without pickle.

On Cloudflare, values passed to ``storage.put()`` and across RPC are copied with the
*structured clone* algorithm: plain data is copied deeply, anything with behaviour is refused.
A copy is the point: an object can never mutate a caller's value, and a caller can never mutate
an object's memory through a returned value.

durable_lab does the same for the Python types a learner would use:

    None, bool, int (64-bit), float, str, bytes/bytearray, list, tuple, dict, set, frozenset,
    datetime.datetime, datetime.date, and any nesting of these.

Everything else (a class instance, a function, a generator, a subclass of dict...) is refused
with a ``TypeError`` that names the type and lists what is allowed. Values are encoded
with msgpack plus a few extension types; decoding never executes code, so a storage file from
somewhere else cannot run anything when read (this is why pickle is not used).

Deliberate simplifications (see docs/semantics.md):

- ints must fit in 64 bits (JavaScript numbers are doubles anyway; BigInt has no Python twin);
- shared references and cycles are not preserved: a value nested deeper than 256 levels across a
  stub (msgpack's own limit in storage; a cycle becomes exactly that) is refused;
- a bytearray comes back as bytes (JavaScript has one ArrayBuffer type).

Across a stub (not into storage) a few live objects may also travel *by reference*, the way RPC
stubs do on Cloudflare: ids, stubs and namespaces. ``clone(value, references=True)`` allows them.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import re
import threading
from typing import Any

import msgpack

from .errors import StorageCorruptError

__all__ = ["MAX_DECODED_SIZE", "MAX_DEPTH", "clone", "decode", "encode", "encode_for_key",
           "encoded_size", "v8_size"]

#: How deep a value may nest. A cycle is refused by this limit.
MAX_DEPTH = 256

# msgpack extension type codes (stable: they are part of the storage file format).
#
# Containers (tuple, set, frozenset) are written as a one-entry map whose key is an empty
# extension value of their code and whose value is the list of items: msgpack then packs the
# items itself, in C, so nesting costs no Python stack (packing them into the extension's bytes
# would recurse through Python once per level). No user dict can have that key: the extension
# values are not storable types.
_EXT_TUPLE = 1
_EXT_SET = 2
_EXT_FROZENSET = 3
_EXT_DATETIME = 4
_EXT_DATE = 5

_TUPLE_KEY = msgpack.ExtType(_EXT_TUPLE, b"")
_SET_KEY = msgpack.ExtType(_EXT_SET, b"")
_FROZENSET_KEY = msgpack.ExtType(_EXT_FROZENSET, b"")


class _ContainerMarker:
    """What a container key decodes to, before ``_pairs_hook`` turns the map into the container."""

    __slots__ = ("build",)

    def __init__(self, build: Any) -> None:
        self.build = build


_MARKERS = {
    _EXT_TUPLE: _ContainerMarker(tuple),
    _EXT_SET: _ContainerMarker(set),
    _EXT_FROZENSET: _ContainerMarker(frozenset),
}

_PLAIN_SCALARS = (type(None), bool, int, float, str, bytes)
_ALLOWED = (
    "None, bool, int, float, str, bytes, bytearray, list, tuple, dict, set, frozenset, "
    "datetime.datetime, datetime.date"
)


def _describe(value: object) -> str:
    kind = type(value)
    module = kind.__module__
    return kind.__qualname__ if module == "builtins" else f"{module}.{kind.__qualname__}"


class _Encoder:
    """msgpack ``default`` hook: turns the non-msgpack types into extension values."""

    __slots__ = ("key", "label")

    def __init__(self, label: str) -> None:
        self.label = label
        self.key: str | None = None

    @property
    def what(self) -> str:
        # Built only when an error is reported: formatting it for every put would cost more
        # than packing a small value.
        return self.label if self.key is None else f"the value for key {self.key!r}"

    def __call__(self, value: Any) -> Any:
        kind = type(value)
        if kind is tuple:
            return {_TUPLE_KEY: list(value)}
        if kind is set or kind is frozenset:
            # Sort where possible so equal sets encode equally (stable storage bytes).
            items = list(value)
            if len(items) > _CHECK_FROM:
                try:
                    _check_hashes(items)
                except _Corrupt:
                    # Reading it back would be refused (see decode): refuse it now instead.
                    raise ValueError(
                        f"{self.what} holds a set in which more than {_MAX_SHARED_HASH} items "
                        "share one hash value; such a set costs quadratic time to rebuild and "
                        "is refused (store a list instead)"
                    ) from None
            with contextlib.suppress(TypeError):  # (unorderable items keep their order)
                items.sort()
            return {_SET_KEY if kind is set else _FROZENSET_KEY: items}
        if kind is _dt.datetime:
            return msgpack.ExtType(_EXT_DATETIME, value.isoformat().encode())
        if kind is _dt.date:
            return msgpack.ExtType(_EXT_DATE, value.isoformat().encode())
        if kind is bytearray:
            return bytes(value)
        if kind is int:  # msgpack hands us only the ints it cannot pack
            raise ValueError(
                f"{self.what} cannot hold an int outside the 64-bit range "
                "(-2**63 .. 2**64-1); store it as a str instead"
            )
        raise TypeError(
            f"{self.what} cannot hold a value of type {_describe(value)}: "
            f"only structured-clone-like data is allowed ({_ALLOWED}). "
            "Convert it first, e.g. to a dict of its fields."
        )


# One packer per thread, reused: constructing a Packer per call costs more than packing a small
# value. Packing never awaits, so within a thread (one event loop) sharing is safe; msgpack
# resets the packer's buffer when a pack fails.
_ENCODER = _Encoder("a stored value")
_local = threading.local()


def _packer() -> msgpack.Packer:
    packer = getattr(_local, "packer", None)
    if packer is None:
        packer = _local.packer = msgpack.Packer(default=_ENCODER, strict_types=True,
                                                use_bin_type=True)
    return packer


def _pack(value: Any, encoder: _Encoder) -> bytes:
    try:
        if encoder is _ENCODER:
            return _packer().pack(value)
        return msgpack.packb(value, default=encoder, strict_types=True, use_bin_type=True)
    except OverflowError:
        raise ValueError(
            f"{encoder.what} cannot hold an int outside the 64-bit range "
            "(-2**63 .. 2**64-1); store it as a str instead"
        ) from None
    except UnicodeEncodeError as exc:
        raise ValueError(
            f"{encoder.what} holds a str that is not valid Unicode text "
            f"({exc.object[exc.start:exc.end]!r} is a lone surrogate): only str that can be "
            "encoded as UTF-8 can be stored"
        ) from None
    except ValueError as exc:
        if "recursion" in str(exc) or "deep" in str(exc):
            raise ValueError(
                f"{encoder.what} is nested too deeply or contains a cycle "
                "(cycles are not supported)"
            ) from None
        raise



class _Corrupt(Exception):
    """Raised inside decoding; :func:`decode` turns it (and any other failure) into one
    :class:`StorageCorruptError`."""


def _ext_hook(code: int, data: bytes) -> Any:
    marker = _MARKERS.get(code)
    if marker is not None and not data:
        return marker
    if code == _EXT_DATETIME:
        return _dt.datetime.fromisoformat(data.decode())
    if code == _EXT_DATE:
        return _dt.date.fromisoformat(data.decode())
    raise _Corrupt(f"unknown extension type {code}")


# Decoding must cost time linear in the input, whatever the input. msgpack itself is linear;
# what is not is building a dict or a set: inserting n keys that all have the same hash costs
# n**2 comparisons, and hashes of ints, floats and tuples of them can be made to collide at
# will (str and bytes hashes are randomised per process, so they cannot). A value durable_lab
# wrote came from a real dict or set, whose keys are distinct and almost never share a hash;
# so more than _MAX_SHARED_HASH keys with one hash value means crafted (or damaged) bytes, and
# they are refused before the dict or set is built. Small containers are not checked: with at
# most _CHECK_FROM keys the worst case is bounded anyway.
_CHECK_FROM = 32
_MAX_SHARED_HASH = 16


def _check_hashes(keys: Any) -> None:
    counts: dict[int, int] = {}
    for key in keys:
        kind = type(key)
        if kind is str or kind is bytes:
            continue
        h = hash(key)  # raises TypeError for an unhashable key: also corrupt
        seen = counts.get(h, 0) + 1
        if seen > _MAX_SHARED_HASH:
            raise _Corrupt(
                f"more than {_MAX_SHARED_HASH} keys of one dict or set share a hash value "
                "(crafted data: building it would take quadratic time)"
            )
        counts[h] = seen


def _pairs_hook(pairs: list[tuple[Any, Any]]) -> Any:
    if len(pairs) == 1 and type(pairs[0][0]) is _ContainerMarker:
        marker, items = pairs[0]
        if type(items) is not list:
            raise _Corrupt(f"a container holds a {type(items).__name__}, not a list of items")
        if marker.build is not tuple and len(items) > _CHECK_FROM:
            _check_hashes(items)
        return marker.build(items)
    if len(pairs) > _CHECK_FROM:
        _check_hashes([k for k, _ in pairs])
    return dict(pairs)


#: Bytes that start a msgpack extension value (fixext 1-16, ext 8/16/32). Data without any of
#: them cannot decode to an extension (a container marker, a date, msgpack's own Timestamp):
#: it needs no check of the types it decoded to.
_EXT_BYTES = re.compile(rb"[\xc7-\xc9\xd4-\xd8]")
_LEAF_TYPES = frozenset({type(None), bool, int, float, str, bytes, _dt.datetime, _dt.date})


def _check_types(value: Any) -> None:
    """Refuse anything but the documented types (msgpack's Timestamp, a stray container
    marker). Iterative, so a deep value cannot exhaust the Python stack."""
    stack = [value]
    pop, push = stack.pop, stack.extend
    while stack:
        item = pop()
        kind = type(item)
        if kind in _LEAF_TYPES:
            continue
        if kind is dict:
            push(item.keys())
            push(item.values())
        elif kind is list or kind is tuple or kind is set or kind is frozenset:
            push(item)
        else:
            raise _Corrupt(f"it holds a {_describe(item)}, which durable_lab never stores")


def _unpack(data: bytes, ext_hook: Any) -> Any:
    return msgpack.unpackb(data, ext_hook=ext_hook, object_pairs_hook=_pairs_hook, raw=False,
                           strict_map_key=False, use_list=True)


def encode(value: object, *, what: str = "a stored value") -> bytes:
    """Encode ``value`` for storage. Raises TypeError/ValueError saying what is not allowed."""
    if what == "a stored value":
        _ENCODER.key = None
        return _pack(value, _ENCODER)
    return _pack(value, _Encoder(what))


def encode_for_key(key: str, value: object) -> bytes:
    """``encode`` for ``storage.put(key, value)``: errors name the key."""
    _ENCODER.key = key
    try:
        return _pack(value, _ENCODER)
    finally:
        _ENCODER.key = None


#: The largest stored value :func:`decode` accepts by default: twice SQLite-backed storage's
#: 2,200,000-byte row limit (the limit is on V8's bytes; this encoding of Latin-1 text is up to
#: twice as long). KV-backed storage passes its own, from its 128 KiB.
MAX_DECODED_SIZE = 2 * 2_200_000 + 64


def decode(data: bytes, *, limit: int = MAX_DECODED_SIZE) -> Any:
    """Decode bytes made by :func:`encode`. Never runs code: only data types are built.

    Anything else (bytes longer than ``limit``, damaged or crafted bytes, a type durable_lab
    never stores) raises :class:`~durable_lab.errors.StorageCorruptError`, and decoding costs
    time linear in ``len(data)`` whatever the bytes are.
    """
    if type(data) is not bytes:
        raise StorageCorruptError(
            f"the stored value is a {type(data).__name__}, not the bytes durable_lab writes"
        )
    if len(data) > limit:
        raise StorageCorruptError(
            f"the stored value has {len(data)} bytes, more than the {limit} a value may have"
        )
    try:
        value = _unpack(data, _ext_hook)
        # Without an extension byte the result can only hold msgpack's own types (None,
        # bool, int, float, str, bytes, list, dict): nothing to check.
        if type(value) not in _LEAF_TYPES and _EXT_BYTES.search(data) is not None:
            _check_types(value)
    except _Corrupt as exc:
        raise StorageCorruptError(f"the stored value is not a durable_lab value: {exc}") from None
    except Exception as exc:
        # msgpack's FormatError/StackError/ExtraData, a bad date, an unhashable set item...
        # all mean the same thing to the reader: these bytes are not a value we wrote.
        detail = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        raise StorageCorruptError(
            f"the stored value is not a durable_lab value ({detail})"
        ) from exc
    return value


def encoded_size(value: object) -> int:
    """Size in bytes of ``value`` once encoded (what the 128 KiB value limit is checked on)."""
    return len(encode(value))


def clone(value: object, *, what: str = "an RPC argument", references: bool = True) -> Any:
    """A deep copy of ``value`` with structured-clone rules (what crosses a stub).

    The same types as storage are allowed, checked the same way; ids, stubs and namespaces pass
    by reference when ``references`` is true. Written as a direct recursive copy rather than an
    encode/decode round trip because it runs on every RPC call and is several times faster for
    the small arguments calls usually carry.
    """
    return _copy(value, what, references, 0)


def _copy(value: Any, what: str, references: bool, depth: int) -> Any:
    kind = type(value)
    if (kind is str or kind is int or kind is float or kind is bool or value is None
            or kind is bytes):
        if kind is int and not (-(2**63) <= value < 2**64):
            raise ValueError(
                f"{what} cannot hold an int outside the 64-bit range "
                "(-2**63 .. 2**64-1); store it as a str instead"
            )
        return value
    if depth >= MAX_DEPTH:
        raise ValueError(
            f"{what} is nested too deeply or contains a cycle "
            f"(at most {MAX_DEPTH} levels; cycles are not supported)"
        )
    depth += 1
    if kind is list:
        return [_copy(item, what, references, depth) for item in value]
    if kind is dict or getattr(kind, "_durable_lab_clone_as_dict", False):
        # (the second case: SQL result rows, a dict subclass that crosses a stub as a dict)
        return {
            _copy(k, what, references, depth): _copy(v, what, references, depth)
            for k, v in value.items()
        }
    if kind is tuple:
        return tuple([_copy(item, what, references, depth) for item in value])
    if kind is set:
        return {_copy(item, what, references, depth) for item in value}
    if kind is frozenset:
        return frozenset([_copy(item, what, references, depth) for item in value])
    if kind is _dt.datetime or kind is _dt.date:
        return value  # immutable
    if kind is bytearray:
        return bytes(value)
    if references and getattr(kind, "_durable_lab_by_reference", False):
        return value
    raise TypeError(
        f"{what} cannot hold a value of type {_describe(value)}: "
        f"only structured-clone-like data is allowed ({_ALLOWED}). "
        "Convert it first, e.g. to a dict of its fields."
    )


# -- the size workerd measures: V8's serialization ---------------------------------------------

#: Smis (small integers V8 keeps unboxed, 31 bits with pointer compression) and
#: Number.MAX_SAFE_INTEGER.
_SMI_MIN, _SMI_MAX = -(2**30), 2**30 - 1
_MAX_SAFE = 2**53 - 1


def _varint_size(n: int) -> int:
    size = 1
    while n >= 0x80:
        n >>= 7
        size += 1
    return size


class _V8Size:
    """Counts the bytes V8's ``ValueSerializer`` (format 15) writes for the JavaScript value a
    Python value becomes on a Python Worker (Pyodide's conversion: str -> string, int within
    2**53 - 1 -> Number, larger -> BigInt, bytes -> Uint8Array, list/tuple -> Array, dict ->
    Object, set -> Set, datetime -> Date). workerd checks a stored value's size on these bytes
    (issue #20). The offset matters: V8 pads a two-byte string so its characters start at an
    even offset."""

    __slots__ = ("offset",)

    def __init__(self) -> None:
        self.offset = 2  # the header: 0xFF and the format version

    def string(self, text: str) -> None:
        if not text or max(text) <= "\xff":
            self.offset += 1 + _varint_size(len(text)) + len(text)  # one byte per character
            return
        units = len(text.encode("utf-16-le", "surrogatepass")) // 2
        head = 1 + _varint_size(2 * units)
        if (self.offset + head) & 1:
            self.offset += 1  # padding, so the UTF-16 units are aligned
        self.offset += head + 2 * units

    def number(self, value: int | float) -> None:
        if (isinstance(value, int) or value.is_integer()) and _SMI_MIN <= value <= _SMI_MAX:
            n = int(value)
            self.offset += 1 + _varint_size((n << 1) ^ (n >> 63))  # zigzag Smi
        else:
            self.offset += 9  # a double

    def value(self, value: Any, depth: int = 0) -> None:
        kind = type(value)
        if value is None or kind is bool:
            self.offset += 1
        elif kind is str:
            self.string(value)
        elif kind is float:
            self.number(value)
        elif isinstance(value, int):
            if -_MAX_SAFE <= value <= _MAX_SAFE:
                self.number(value)
            else:  # a BigInt: a bitfield, then 64-bit digits
                digits = (abs(value).bit_length() + 63) // 64
                self.offset += 1 + _varint_size(digits * 16) + 8 * digits
        elif isinstance(value, (bytes, bytearray, memoryview)):
            n = len(value)
            # the ArrayBuffer, then the Uint8Array view over it (offset, length, flags)
            self.offset += 1 + _varint_size(n) + n + 2 + 1 + _varint_size(n) + 1
        elif isinstance(value, (list, tuple)):
            self.offset += 1 + _varint_size(len(value))
            for item in value:
                self.value(item, depth + 1)
            self.offset += 1 + 1 + _varint_size(len(value))  # end: properties 0, length
        elif isinstance(value, dict):
            self.offset += 1
            for key, item in value.items():
                self.value(key, depth + 1)
                self.value(item, depth + 1)
            self.offset += 1 + _varint_size(len(value))
        elif isinstance(value, (set, frozenset)):
            self.offset += 1
            for item in value:
                self.value(item, depth + 1)
            self.offset += 1 + _varint_size(len(value))
        elif isinstance(value, (_dt.datetime, _dt.date)):
            self.offset += 9
        else:  # anything else was refused by encode() before sizes are asked for
            self.offset += len(encode(value))


def v8_size(value: object) -> int:
    """Bytes of ``value`` serialized by V8 as workerd stores it (see ``_V8Size``): one byte per
    character of a string whose characters are all Latin-1, two per UTF-16 unit otherwise, plus
    the header and tags. Call it on a value ``encode`` accepted."""
    counter = _V8Size()
    counter.value(value)
    return counter.offset
