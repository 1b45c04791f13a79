"""Small ``Request`` and ``Response`` types for ``stub.fetch()`` and an object's ``fetch``.

Enough of the Fetch API for lessons: url, method, headers (case-insensitive), a body (str or
bytes) and JSON helpers, with the names Cloudflare's Python Workers use (``Response.json(...)``,
``await request.json()``, ``await response.text()``). Both are immutable-ish values: the runtime
copies them when they cross a stub.
"""

from __future__ import annotations

import json as _json
from collections.abc import Iterator, Mapping
from typing import Any
from urllib.parse import urlsplit

__all__ = ["Headers", "Request", "Response"]

Body = str | bytes | None


class Headers(Mapping[str, str]):
    """Case-insensitive header names (stored lower-case), string values."""

    __slots__ = ("_items",)

    def __init__(self, init: Mapping[str, str] | None = None) -> None:
        self._items: dict[str, str] = {}
        for name, value in (init or {}).items():
            if not isinstance(name, str) or not isinstance(value, str):
                raise TypeError(f"header names and values must be str, got {name!r}: {value!r}")
            self._items[name.lower()] = value

    def __getitem__(self, name: str) -> str:
        return self._items[name.lower()]

    def get(self, name: str, default: Any = None) -> Any:
        return self._items.get(name.lower(), default)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return f"Headers({self._items!r})"


def _check_body(body: object) -> Body:
    if body is None or isinstance(body, (str, bytes)):
        return body
    if isinstance(body, bytearray):
        return bytes(body)
    raise TypeError(
        f"a body must be str, bytes or None, got {type(body).__name__}; "
        "for JSON use Response.json(data) or Request(url, json=data)"
    )


class _Body:
    __slots__ = ()
    body: Body

    async def text(self) -> str:
        if self.body is None:
            return ""
        return self.body if isinstance(self.body, str) else self.body.decode()

    async def json(self) -> Any:
        return _json.loads(await self.text())

    async def bytes(self) -> bytes:
        if self.body is None:
            return b""
        return self.body if isinstance(self.body, bytes) else self.body.encode()


class Request(_Body):
    """An HTTP request to an object: ``Request("https://lab/path", method="POST", json={...})``."""

    __slots__ = ("body", "headers", "method", "url")

    def __init__(self, url: str, *, method: str = "GET", headers: Mapping[str, str] | None = None,
                 body: Body = None, json: Any = None) -> None:
        if not isinstance(url, str):
            raise TypeError(f"a request url must be a str, got {type(url).__name__}")
        parts = urlsplit(url)
        if not parts.scheme or not parts.netloc:
            raise TypeError(
                f"Fetch API cannot load: {url!r}. A Durable Object stub needs an absolute URL "
                "such as 'https://lab/path' (the host part is not used)."
            )
        self.url = url
        self.method = method.upper()
        self.headers = Headers(headers)
        if json is not None:
            if body is not None:
                raise TypeError("give a Request either body= or json=, not both")
            body = _json.dumps(json)
            if "content-type" not in self.headers:
                self.headers._items["content-type"] = "application/json"
        self.body = _check_body(body)

    @property
    def path(self) -> str:
        """The URL's path (``/rooms/1``), handy for routing inside ``fetch``."""
        return urlsplit(self.url).path or "/"

    def _copy(self) -> Request:
        return Request(self.url, method=self.method, headers=dict(self.headers), body=self.body)

    def __repr__(self) -> str:
        return f"<Request {self.method} {self.url}>"


class _ClassOrInstanceMethod:
    """``Response.json(data)`` makes a response; ``await response.json()`` reads one (as in JS)."""

    def __init__(self, on_class: Any, on_instance: Any) -> None:
        self._on_class = on_class
        self._on_instance = on_instance

    def __get__(self, instance: Any, owner: type) -> Any:
        if instance is None:
            return self._on_class.__get__(owner, owner)
        return self._on_instance.__get__(instance, owner)


class Response(_Body):
    """An HTTP response: ``Response("hi")``, ``Response.json({...}, status=201)``."""

    __slots__ = ("body", "headers", "status", "web_socket")

    def __init__(self, body: Body = None, *, status: int = 200,
                 headers: Mapping[str, str] | None = None, web_socket: Any = None) -> None:
        if not isinstance(status, int) or not 100 <= status <= 599:
            raise ValueError(f"a response status must be an int from 100 to 599, got {status!r}")
        self.body = _check_body(body)
        self.status = status
        self.headers = Headers(headers)
        self.web_socket = web_socket

    def _make_json(cls: Any, data: Any, *, status: int = 200,
                   headers: Mapping[str, str] | None = None) -> Response:
        """A response whose body is ``data`` as JSON (Cloudflare's ``Response.json``)."""
        merged = {"content-type": "application/json", **(headers or {})}
        return cls(_json.dumps(data), status=status, headers=merged)

    json = _ClassOrInstanceMethod(_make_json, _Body.json)

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    def _copy(self) -> Response:
        return Response(self.body, status=self.status, headers=dict(self.headers),
                        web_socket=self.web_socket)

    def __repr__(self) -> str:
        return f"<Response {self.status}>"
