"""What a learner subclasses (``DurableObject``) and what it gets as ``self.ctx``.

These mirror Cloudflare's Python Workers API, so a class written in the lab runs on Cloudflare
with only its import line changed::

    from durable_lab import DurableObject      # on Cloudflare: from workers import DurableObject

    class Counter(DurableObject):
        def __init__(self, ctx, env):
            super().__init__(ctx, env)

        async def increment(self, by=1):
            n = (await self.ctx.storage.get("n")) or 0
            self.ctx.storage.put("n", n + by)
            return n + by

Any public method (a name not starting with ``_``) is callable through a stub. ``fetch`` is
called by ``stub.fetch(request)``; the other handler names (``alarm``, ``webSocketMessage``, ...)
are reserved and cannot be called over RPC, as on Cloudflare.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from . import websockets as _websockets
from ._turns import current_driver
from .errors import DurableObjectResetError

if TYPE_CHECKING:
    from .ids import DurableObjectId
    from .storage import DurableObjectStorage

# Handed down from the rooms above (``_host.Instance``): named for the reader, not imported.
Instance = Any

__all__ = ["DurableObject", "DurableObjectState"]

#: workerd's limit on nested blockConcurrencyWhile calls.
MAX_BLOCK_CONCURRENCY_WHILE_DEPTH = 64
DEFAULT_ABORT_REASON = "Application called abort() to reset Durable Object."


class DurableObject:
    """Base class of every Durable Object class.

    The runtime constructs it with ``(ctx, env)``: ``ctx`` is this object's
    :class:`DurableObjectState`, ``env`` holds the lab's bindings (``env.COUNTER`` ...). The
    constructor is synchronous; start async initialisation with
    ``ctx.blockConcurrencyWhile(...)``.
    """

    ctx: DurableObjectState
    env: Any

    def __init__(self, ctx: DurableObjectState, env: Any) -> None:
        self.ctx = ctx
        self.env = env


class _Aborted(BaseException):
    """Unwinds object code after ``ctx.abort()``: the code after abort() never runs.

    A BaseException so that ``except Exception`` in object code cannot swallow it.
    """


class DurableObjectState:
    """``self.ctx``: the object's id, its storage, and its concurrency controls."""

    __slots__ = ("_instance", "id", "storage")

    def __init__(self, instance: Instance, storage: DurableObjectStorage) -> None:
        self._instance = instance
        self.id: DurableObjectId = instance.host.id
        self.storage = storage

    def blockConcurrencyWhile(self, callback: Callable[[], Awaitable[Any] | Any]
                              ) -> asyncio.Future[Any]:
        """Run ``callback`` with every other event kept out until it settles.

        The callback starts when the current turn ends, ahead of everything queued. Nothing else
        enters the object until it has finished *and* the code that called
        ``blockConcurrencyWhile`` has resumed. Works without ``await`` in the constructor. If the
        callback raises, the object is reset.
        """
        instance = self._instance
        instance.check_usable()
        driver = current_driver.get()
        if driver is None or driver.instance is not instance:
            raise RuntimeError(
                "blockConcurrencyWhile() must be called from this object's own code "
                "(its constructor or a handler), while it runs"
            )
        if not callable(callback):
            raise TypeError(
                f"blockConcurrencyWhile() takes a function (e.g. an async def), "
                f"got {type(callback).__name__}"
            )
        if driver.gate.depth >= MAX_BLOCK_CONCURRENCY_WHILE_DEPTH:
            raise RuntimeError("blockConcurrencyWhile() calls are nested too deeply.")
        return instance.start_critical_section(callback, driver)

    block_concurrency_while = blockConcurrencyWhile

    def waitUntil(self, awaitable: Awaitable[Any]) -> None:
        """Keep ``awaitable`` running after the reply. (In a Durable Object this is rarely
        needed: the object stays alive while it has work.) A coroutine becomes a task of this
        object: it runs through the object's input gate like the rest of its code."""
        if not inspect.isawaitable(awaitable):
            raise TypeError(f"waitUntil() takes an awaitable, got {type(awaitable).__name__}")
        self._instance.track(asyncio.ensure_future(awaitable))

    wait_until = waitUntil

    def abort(self, reason: str | None = None) -> None:
        """Reset the object now: unflushed writes are discarded and this call never returns.

        Every delivery in flight fails with ``reason`` (``durableObjectReset=True``), and stubs
        taken before now stay broken.
        """
        message = DEFAULT_ABORT_REASON if reason is None else str(reason)
        error = DurableObjectResetError(message, reason="outputGateBroken")
        self._instance.reset(error, reason="outputGateBroken")
        raise _Aborted(message)

    # -- WebSocket Hibernation API (implemented in durable_lab/websockets.py) -------------

    def acceptWebSocket(self, ws: Any, tags: list[str] | None = None) -> None:
        """Accept the server end of a ``WebSocketPair`` as a hibernatable socket, with up to 10
        tags (each up to 256 characters; duplicates dropped). Its events then arrive as
        ``webSocketMessage``/``webSocketClose``/``webSocketError`` calls, even after the object
        hibernated."""
        _websockets.accept_web_socket(self._instance, ws, tags)

    def getWebSockets(self, tag: str | None = None) -> list[Any]:
        """The accepted sockets not yet closed (those with ``tag`` if given), in accept order."""
        return _websockets.get_web_sockets(self._instance, tag)

    def getTags(self, ws: Any) -> list[str]:
        """The tags ``ws`` was accepted with."""
        return _websockets.get_tags(ws)

    def setWebSocketAutoResponse(self, pair: Any = None) -> None:
        """Answer a text message equal to ``pair.request`` with ``pair.response`` without
        running object code (a ``WebSocketRequestResponsePair``); no argument clears it."""
        _websockets.set_auto_response(self._instance, pair)

    def getWebSocketAutoResponse(self) -> Any:
        """The ``WebSocketRequestResponsePair`` set, or None."""
        return _websockets.get_auto_response(self._instance)

    def getWebSocketAutoResponseTimestamp(self, ws: Any) -> Any:
        """When the runtime last auto-responded on ``ws`` (a UTC datetime), or None."""
        return _websockets.get_auto_response_timestamp(ws)

    def setHibernatableWebSocketEventTimeout(self, timeout_ms: int | None = None
                                             ) -> None:
        """Store the handler time limit in ms (0 or nothing unsets; at most 604,800,000).
        durable_lab records it but does not enforce it."""
        _websockets.set_event_timeout(self._instance, timeout_ms)

    def getHibernatableWebSocketEventTimeout(self) -> int | None:
        return _websockets.get_event_timeout(self._instance)

    accept_web_socket = acceptWebSocket
    get_web_sockets = getWebSockets
    get_tags = getTags

    def __repr__(self) -> str:
        return f"<DurableObjectState of {self._instance.label}>"
