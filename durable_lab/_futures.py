"""Small helpers for asyncio futures shared by the runtime's modules."""

from __future__ import annotations

import asyncio
from typing import Any

__all__ = ["relay_outcome"]


def relay_outcome(source: asyncio.Future[Any], target: asyncio.Future[Any]) -> None:
    """Copy ``source``'s outcome (result, error or cancellation) into ``target``.

    Used as a done callback. If ``target`` is already done (its waiter gave up, or a reset
    answered it), ``source``'s error is marked as retrieved so asyncio does not log it.
    """
    if target.done():
        if not source.cancelled():
            source.exception()
        return
    if source.cancelled():
        target.cancel()
    elif source.exception() is not None:
        target.set_exception(source.exception())  # type: ignore[arg-type]
    else:
        target.set_result(source.result())
