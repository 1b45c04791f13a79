"""The lab's clock: the one place the runtime reads the time.

Events are stamped with ``lab.clock.now()`` (epoch seconds, as Cloudflare's ``Date.now()`` is
epoch milliseconds). Keeping every read of time behind this seam is what lets alarms, retries
and idle eviction run on a manual or accelerated clock in lessons and tests.
"""

from __future__ import annotations

import time
from typing import Protocol

__all__ = ["Clock", "RealClock"]


class Clock(Protocol):
    def now(self) -> float:
        """Seconds since the epoch."""
        ...


class RealClock:
    """Wall-clock time."""

    __slots__ = ()

    def now(self) -> float:
        return time.time()

    def __repr__(self) -> str:
        return "<RealClock>"
