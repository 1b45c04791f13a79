"""Checked exercises for the lesson notebooks: ``await check_counter(MyCounter)``.

Every ``check_*`` function runs hidden scenarios against the learner's class (fresh labs,
concurrent calls, adversarial schedules via ``lab.pause()``/``choices()``/``choose()``, faults
from ``lab.faults``, the history checker) and returns a :class:`CheckResult` that prints what
passed, what happened where it did not, and a hint. A check never raises on a wrong answer;
``result.assert_passed()`` does, for graders. ``await check("02", Seat)`` runs a check by its
exercise number (otter-grader style).

=========  =========================  ========================================
exercise   check                      the learner writes
=========  =========================  ========================================
00         check_counter              a counter that survives eviction
01         check_locked_counter       a counter that loses nothing with model="none"
02         check_seat                 one seat, one payment (input gate limits)
03         check_ledger               no false acknowledgments (output gate)
04         check_bulk_save            n writes, one atomic commit
05         check_batcher              an alarm-driven batcher (retries, at-least-once)
06a        check_profile              no head-of-line blocking
06b        check_router               route(env, room, user): shard by room
07         check_leaderboard          SQL API, bindings, ORDER BY ... LIMIT
08         check_chat_room            WebSockets that survive hibernation
09         check_rate_limiter         capstone: a sliding-window rate limiter
10         check_placement            route(env, room, user): shard key and location hints
=========  =========================  ========================================
"""

from __future__ import annotations

from typing import Any

from ._core import CheckResult as CheckResult
from .batcher import check_batcher as check_batcher
from .bulk import check_bulk_save as check_bulk_save
from .chat import check_chat_room as check_chat_room
from .contention import check_profile as check_profile
from .contention import check_router as check_router
from .counter import check_counter as check_counter
from .counter import check_locked_counter as check_locked_counter
from .helpers import Exporter as Exporter
from .helpers import Outbox as Outbox
from .helpers import Payments as Payments
from .helpers import RoomLog as RoomLog
from .leaderboard import check_leaderboard as check_leaderboard
from .ledger import check_ledger as check_ledger
from .placement import check_placement as check_placement
from .ratelimit import check_rate_limiter as check_rate_limiter
from .seats import check_seat as check_seat

CHECKS = {
    "00": check_counter,
    "01": check_locked_counter,
    "02": check_seat,
    "03": check_ledger,
    "04": check_bulk_save,
    "05": check_batcher,
    "06a": check_profile,
    "06b": check_router,
    "07": check_leaderboard,
    "08": check_chat_room,
    "09": check_rate_limiter,
    "10": check_placement,
}


async def check(exercise: str, subject: Any) -> CheckResult:
    """Run the check of ``exercise`` ("00" ... "10") against ``subject``."""
    key = str(exercise).zfill(2) if str(exercise).isdigit() else str(exercise)
    if key not in CHECKS:
        raise KeyError(f"no exercise {exercise!r}; exercises: {', '.join(CHECKS)}")
    return await CHECKS[key](subject)


__all__ = [
    "CHECKS",
    "CheckResult",
    "Exporter",
    "Outbox",
    "Payments",
    "RoomLog",
    "check",
    "check_batcher",
    "check_bulk_save",
    "check_chat_room",
    "check_counter",
    "check_leaderboard",
    "check_ledger",
    "check_locked_counter",
    "check_placement",
    "check_profile",
    "check_rate_limiter",
    "check_router",
    "check_seat",
]
