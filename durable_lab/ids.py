"""Durable Object ids: 32 bytes that name exactly one object in one namespace.

Every Durable Object is addressed by an id. Whoever holds the id can reach the one instance that
owns the state behind it; that single owner is what makes coordination easy.

The construction follows workerd (``src/workerd/server/actor-id-impl.c++``), with the namespace
key being SHA-256 of ``"durable_lab:" + binding name``:

- ``idFromName(name)`` is deterministic: ``HMAC(key, name)[:16] + HMAC(key, first16)[:16]``.
  The same name in the same namespace always gives the same id (so the same stored state, also
  after a kernel restart on the same folder); another namespace gives another id.
- ``newUniqueId()`` is ``random16 + HMAC(key, random16)[:16]``; the random bytes come from the
  lab's seeded ``random.Random``, so a seeded run makes the same ids every time. A lab that
  reopens a folder is told how many sessions opened it before (``lab.session``); from the
  second session on, ``random16`` is ``SHA-256("durable_lab:session:<n>:" + drawn16)[:16]``,
  so a "new" id never names an object of an earlier session on that folder (seeded runs stay
  reproducible: session n of a folder gives the same ids every time).
- ``idFromString(hex)`` accepts either kind and checks the MAC, so an id from another namespace
  (or a typo) is refused with Cloudflare's error messages.
- A jurisdictional sub-namespace (``ns.jurisdiction("eu")``) uses its own key, SHA-256 of
  ``"durable_lab:" + binding + ":jurisdiction:" + jurisdiction``: the same name gives another id
  there, as on Cloudflare ("It is possible to have the same name represent different IDs in
  different jurisdictions"). workerd does not implement jurisdictions at all (its error is
  "Jurisdiction restrictions are not implemented in workerd."); production ids encode theirs,
  and so do the lab's: ``idFromString`` recognises which key made an id and gives it its
  ``id.jurisdiction`` back (``None`` for the plain namespace).

An id prints as 64 lowercase hex digits. ``id.name`` is the name for ids made from a name
(workerd keeps it for names up to 1024 bytes, also inside the object as ``ctx.id.name``) and
``None`` otherwise.
"""

from __future__ import annotations

import hashlib
import hmac
import random
import re
from functools import lru_cache

__all__ = ["DurableObjectId", "IdFactory"]

_HEX64 = re.compile(r"[0-9a-f]{64}")
_MAX_NAME_BYTES = 1024


class DurableObjectId:
    """The id of one Durable Object. Immutable; equal and hashed by its 32 bytes."""

    __slots__ = ("_hex", "jurisdiction", "name", "namespace")
    _durable_lab_by_reference = True  # may cross a stub as is (it is immutable)

    def __init__(self, hex_id: str, *, namespace: str, name: str | None = None,
                 jurisdiction: str | None = None) -> None:
        self._hex = hex_id
        self.namespace = namespace
        self.name = name
        #: The jurisdiction the id was made in (``"eu"``...), ``None`` outside any.
        self.jurisdiction = jurisdiction

    def toString(self) -> str:
        """The id as 64 lowercase hex digits (what ``idFromString`` accepts)."""
        return self._hex

    to_string = toString

    def equals(self, other: DurableObjectId) -> bool:
        """True if ``other`` names the same object."""
        return isinstance(other, DurableObjectId) and other._hex == self._hex

    def __eq__(self, other: object) -> bool:
        return isinstance(other, DurableObjectId) and other._hex == self._hex

    def __hash__(self) -> int:
        return hash(self._hex)

    def __str__(self) -> str:
        return self._hex

    def __repr__(self) -> str:
        label = f" name={self.name!r}" if self.name is not None else ""
        where = f" jurisdiction={self.jurisdiction!r}" if self.jurisdiction is not None else ""
        return f"<DurableObjectId {self.namespace}:{self._hex[:12]}…{label}{where}>"

    def __copy__(self) -> DurableObjectId:
        return self

    def __deepcopy__(self, memo: object) -> DurableObjectId:
        return self


def _named_id(key: bytes, encoded: bytes) -> str:
    """The hex id of a name under a namespace key: two MACs."""
    first = hmac.new(key, encoded, hashlib.sha256).digest()[:16]
    return (first + hmac.new(key, first, hashlib.sha256).digest()[:16]).hex()


#: The same, remembered for names of up to 1024 bytes (a pure function: ``durable_lab.explore``
#: makes the same few names in thousands of fresh labs). Longer names are not kept, so the
#: cache holds at most a few MiB.
_named_id_cached = lru_cache(maxsize=4096)(_named_id)


def _namespace_key(namespace: str, jurisdiction: str | None) -> bytes:
    text = f"durable_lab:{namespace}"
    if jurisdiction is not None:
        text += f":jurisdiction:{jurisdiction}"
    return hashlib.sha256(text.encode()).digest()


class IdFactory:
    """Makes and checks the ids of one namespace (or of one jurisdiction of it).

    ``jurisdictions`` are every jurisdiction an id of this binding may come from, so that an
    id string made in one is recognised (with its jurisdiction) wherever it is parsed.
    """

    __slots__ = ("_key", "_keys", "_random", "_session", "jurisdiction", "namespace")

    def __init__(self, namespace: str, rng: random.Random, *, jurisdiction: str | None = None,
                 jurisdictions: tuple[str, ...] = (), session: int = 0) -> None:
        self.namespace = namespace
        self.jurisdiction = jurisdiction
        self._key = _namespace_key(namespace, jurisdiction)
        # Own key first: the usual case costs one MAC.
        self._keys: tuple[tuple[str | None, bytes], ...] = ((jurisdiction, self._key), *(
            (j, _namespace_key(namespace, j))
            for j in (None, *jurisdictions) if j != jurisdiction))
        self._random = rng
        self._session = session

    def _mac(self, data: bytes, key: bytes | None = None) -> bytes:
        return hmac.new(key or self._key, data, hashlib.sha256).digest()[:16]

    def from_name(self, name: str) -> DurableObjectId:
        if not isinstance(name, str):
            raise TypeError(f"idFromName() takes a str name, got {type(name).__name__}: {name!r}")
        try:
            encoded = name.encode()
        except UnicodeEncodeError as exc:
            raise ValueError(
                f"idFromName() takes a name that is valid Unicode text; {name[:40]!r} holds the "
                f"lone surrogate {exc.object[exc.start:exc.end]!r}, which cannot be encoded as "
                "UTF-8"
            ) from None
        short = len(encoded) <= _MAX_NAME_BYTES
        hex_id = (_named_id_cached if short else _named_id)(self._key, encoded)
        kept_name = name if short else None
        return DurableObjectId(hex_id, namespace=self.namespace, name=kept_name,
                               jurisdiction=self.jurisdiction)

    def new_unique(self) -> DurableObjectId:
        first = self._random.getrandbits(128).to_bytes(16, "big")
        if self._session:
            # A seeded generator repeats itself in every session; the folder's session number
            # (see _folder.py) makes the ids of each session on one folder different.
            first = hashlib.sha256(b"durable_lab:session:%d:" % self._session + first).digest()[:16]
        return DurableObjectId((first + self._mac(first)).hex(), namespace=self.namespace,
                               jurisdiction=self.jurisdiction)

    def from_string(self, text: str) -> DurableObjectId:
        if not isinstance(text, str) or not _HEX64.fullmatch(text):
            raise TypeError(
                f"Invalid Durable Object ID: must be 64 hex digits (got {text!r})"
            )
        raw = bytes.fromhex(text)
        for jurisdiction, key in self._keys:
            if hmac.compare_digest(self._mac(raw[:16], key), raw[16:]):
                return DurableObjectId(text, namespace=self.namespace, jurisdiction=jurisdiction)
        raise TypeError(
            f"Durable Object ID is not valid for this namespace. ({text[:12]}… was not "
            f"made by namespace {self.namespace!r})"
        )
