"""Fault injection: break things on purpose, and watch what the runtime promises still hold.

``lab.faults`` reaches every fault a lesson needs. A *target* is a stub, an id, or a name
(``"room-1"`` when the lab has one binding, ``"CHAT:room-1"`` otherwise); ``None`` means every
object. Each injected fault is announced on the event stream as a :class:`FaultInjected` event
when it is armed and marked ``injected=True`` where it strikes (``CommitFailed.injected``).

    lab.faults.fail_next_commit(stub)            # the next commit of that object fails
    lab.faults.fail_commits(probability=0.1)     # any commit fails with probability 0.1
    lab.faults.delay_commits(0.05, stub)         # commits take 50 ms longer (lab clock)
    lab.faults.fail_calls(stub, times=2)         # the next 2 calls to it never arrive
    lab.faults.delay_calls(0.01)                 # every call takes 10 ms to arrive
    lab.faults.fail_next_alarm(stub)             # its next alarm handler throws
    lab.faults.crash(stub)                       # reset it now, as a failure would
    lab.faults.code_update(stub)                 # reset it as a deploy does
    await lab.faults.evict(stub)                 # evict it (not a failure) once it is idle
    lab.faults.evict_now(stub)                   # evict it now (it must be idle)
    lab.faults.clear()                           # disarm everything

Probabilities draw from the lab's seeded random generator, so a seeded run fails the same
commits every time.
"""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .errors import DurableObjectError, DurableObjectResetError
from .events import FaultInjected

if TYPE_CHECKING:
    from ._host import Instance, ObjectHost
    from .services import LabServices

__all__ = ["Faults", "InjectedFault"]

Target = Any  # a stub, an id, a name, or None (every object)


class InjectedFault(Exception):
    """The error an injected storage or alarm failure raises."""

    injected = True


@dataclass
class _Rule:
    target: str | None  # object id hex, or None for every object
    times: int | None = None  # None: until cleared
    probability: float = 1.0
    seconds: float = 0.0
    detail: dict[str, Any] = field(default_factory=dict)

    def matches(self, object_id: str) -> bool:
        return self.target is None or self.target == object_id


class Faults:
    """The lab's fault switches (``lab.faults``)."""

    def __init__(self, services: LabServices) -> None:
        self._services = services
        self._commit_failures: list[_Rule] = []
        self._commit_delays: list[_Rule] = []
        self._call_failures: list[_Rule] = []
        self._call_delays: list[_Rule] = []
        self._alarm_failures: list[_Rule] = []

    # -- targets -------------------------------------------------------------------------

    def _resolve(self, target: Target) -> ObjectHost | None:
        if target is None:
            return None
        if isinstance(target, str):
            bindings = self._services.bindings
            if ":" in target:
                binding, _, name = target.partition(":")
                if binding not in bindings:
                    raise ValueError(f"no binding {binding!r}; bindings: {', '.join(bindings)}")
            elif len(bindings) == 1:
                binding, name = next(iter(bindings)), target
            else:
                raise ValueError(
                    f"the name {target!r} is ambiguous with several bindings: write "
                    f"'BINDING:{target}' (bindings: {', '.join(bindings)})"
                )
            namespace = bindings[binding]
            return self._services.host(namespace, namespace.idFromName(name))
        return self._services.host_of(target)

    def _arm(self, rules: list[_Rule], kind: str, target: Target, **rule: Any) -> None:
        host = self._resolve(target)
        rules.append(_Rule(target=None if host is None else host.object_id, **rule))
        bus = self._services.bus
        detail = ", ".join(f"{k}={v}" for k, v in rule.items() if k != "detail")
        if host is not None:  # (kept for snapshots, as a reader of the event would)
            host.last_fault = f"{kind} ({detail})" if detail else kind
        if bus.active:
            bus.emit(FaultInjected, "" if host is None else host.label,
                     "" if host is None else host.object_id, kind, detail)

    def _take(self, rules: list[_Rule], object_id: str) -> _Rule | None:
        for rule in rules:
            if not rule.matches(object_id):
                continue
            if rule.probability < 1.0 and self._services.random.random() >= rule.probability:
                continue
            if rule.times is not None:
                rule.times -= 1
                if rule.times <= 0:
                    rules.remove(rule)
            return rule
        return None

    # Arguments are checked before anything is armed: a rule with a bad count or time would
    # otherwise fail commits it was never meant to (times=0 still failing one, times="x"
    # failing every later commit) or push the clock to NaN.

    @staticmethod
    def _check_probability(probability: float) -> float:
        if (isinstance(probability, bool) or not isinstance(probability, (int, float))
                or not 0.0 <= probability <= 1.0):
            raise ValueError(f"probability must be a number from 0 to 1, got {probability!r}")
        return float(probability)

    @staticmethod
    def _check_seconds(seconds: float) -> float:
        if (isinstance(seconds, bool) or not isinstance(seconds, (int, float))
                or not 0 <= seconds < math.inf):
            raise ValueError(f"seconds must be a finite number >= 0, got {seconds!r}")
        return float(seconds)

    @staticmethod
    def _check_times(times: int | None, *, optional: bool = False) -> int | None:
        if times is None and optional:
            return None
        if isinstance(times, bool) or not isinstance(times, int) or times < 1:
            allowed = "an int >= 1 (or None: until cleared)" if optional else "an int >= 1"
            raise ValueError(f"times must be {allowed}, got {times!r}")
        return times

    # -- storage -------------------------------------------------------------------------

    def fail_next_commit(self, target: Target = None, *, times: int = 1) -> None:
        """The next ``times`` commits of ``target`` fail (the object resets under "gates")."""
        self._arm(self._commit_failures, "fail_commit", target, times=self._check_times(times))

    def fail_commits(self, target: Target = None, *, probability: float) -> None:
        """Every commit of ``target`` fails with ``probability``, until ``clear()``."""
        self._arm(self._commit_failures, "fail_commits", target,
                  probability=self._check_probability(probability))

    def delay_commits(self, seconds: float, target: Target = None) -> None:
        """Commits of ``target`` take ``seconds`` longer (lab clock), until ``clear()``."""
        self._arm(self._commit_delays, "delay_commits", target,
                  seconds=self._check_seconds(seconds))

    def take_commit_failure(self, instance: Instance) -> Exception | None:
        rule = self._take(self._commit_failures, instance.object_id)
        return None if rule is None else InjectedFault("injected commit failure")

    def commit_delay(self, instance: Instance) -> float:
        return sum(r.seconds for r in self._commit_delays if r.matches(instance.object_id))

    # -- calls ---------------------------------------------------------------------------

    def fail_calls(self, target: Target = None, *, times: int | None = 1,
                   probability: float = 1.0) -> None:
        """Calls to ``target`` are lost on the way (a ``retryable`` error), ``times`` times."""
        self._arm(self._call_failures, "fail_calls", target,
                  times=self._check_times(times, optional=True),
                  probability=self._check_probability(probability))

    def delay_calls(self, seconds: float, target: Target = None) -> None:
        """Calls to ``target`` take ``seconds`` (lab clock) to arrive, until ``clear()``."""
        self._arm(self._call_delays, "delay_calls", target, seconds=self._check_seconds(seconds))

    def take_call_failure(self, host: ObjectHost) -> Exception | None:
        if not self._call_failures:
            return None
        rule = self._take(self._call_failures, host.object_id)
        if rule is None:
            return None
        error = DurableObjectError("Network connection lost.", retryable=True)
        error.injected = True  # type: ignore[attr-defined]
        return error

    def call_delay(self, host: ObjectHost) -> float:
        if not self._call_delays:
            return 0.0
        return sum(r.seconds for r in self._call_delays if r.matches(host.object_id))

    # -- alarms --------------------------------------------------------------------------

    def fail_next_alarm(self, target: Target = None, *, times: int = 1) -> None:
        """The next ``times`` alarm handler runs of ``target`` throw (and are retried)."""
        self._arm(self._alarm_failures, "fail_alarm", target, times=self._check_times(times))

    def take_alarm_failure(self, host: ObjectHost) -> Exception | None:
        if not self._alarm_failures:
            return None
        rule = self._take(self._alarm_failures, host.object_id)
        return None if rule is None else InjectedFault("injected alarm handler failure")

    # -- instances -----------------------------------------------------------------------

    def crash(self, target: Target) -> bool:
        """Reset the object now, as an infrastructure failure would: calls in flight fail,
        unflushed writes are lost, stubs taken before stay broken. False if not in memory."""
        host = self._resolve(target)
        if host is None:
            raise ValueError("crash() needs a target")
        self._arm([], "crash", target)
        if host.instance is None:
            return False
        error = DurableObjectResetError(
            "Durable Object was reset by an injected crash.", reason="crashed")
        error.injected = True  # type: ignore[attr-defined]
        host.instance.reset(error, reason="crashed")
        return True

    def code_update(self, target: Target) -> bool:
        """Reset the object as a deploy does (calls in flight fail, stubs keep working)."""
        from ._host import CODE_UPDATED_MESSAGE

        host = self._resolve(target)
        if host is None:
            raise ValueError("code_update() needs a target")
        self._arm([], "code_update", target)
        if host.instance is None:
            return False
        error = DurableObjectResetError(CODE_UPDATED_MESSAGE, reason="codeUpdated")
        host.instance.reset(error, reason="codeUpdated", stubs_broken=False)
        return True

    async def evict(self, target: Target) -> bool:
        """Evict the object (not a failure): ``lab.evict`` with an event saying it was you."""
        self._arm([], "evict", target)
        host = self._resolve(target)
        assert host is not None
        return await self._services.evict_when_idle(host, "requested")

    def idle(self) -> list[str]:
        """The labels of the objects in memory with no work at all (no call queued or
        running, no task unfinished, no commit pending): those an eviction may take now. On
        Cloudflare only an idle object is evicted; a busy one can only be reset (``crash``)."""
        return [host.label for host in self._services.hosts()
                if host.instance is not None and host.instance.broken is None
                and not host.instance.evicted and host.instance.is_idle]

    def evict_now(self, target: Target) -> bool:
        """Evict an idle object at once, without waiting (``durable_lab.explore`` takes this
        as one step): its in-memory state is dropped, storage is kept, stubs keep working and
        the next call constructs it again. False if it was not in memory; a ``ValueError`` if
        it has work in flight (an eviction waits for that: use ``evict``, or ``crash``)."""
        host = self._resolve(target)
        if host is None:
            raise ValueError("evict_now() needs a target")
        inst = host.instance
        if inst is None or inst.broken is not None or inst.evicted:
            return False
        if not inst.is_idle:
            raise ValueError(
                f"{host.label} has work in flight ({len(inst.deliveries)} call(s) queued or "
                f"running, or a task or commit unfinished): only an idle object is evicted. "
                f"await lab.faults.evict(...) waits until it is idle; crash() resets it now")
        self._arm([], "evict", target)
        inst.evict(reason="requested")
        return True

    def clear(self) -> None:
        """Disarm every fault."""
        for rules in (self._commit_failures, self._commit_delays, self._call_failures,
                      self._call_delays, self._alarm_failures):
            rules.clear()

    def armed(self) -> list[str]:
        """A readable list of the faults armed now."""
        out = []
        for name, rules in (("fail commits", self._commit_failures),
                            ("delay commits", self._commit_delays),
                            ("fail calls", self._call_failures),
                            ("delay calls", self._call_delays),
                            ("fail alarms", self._alarm_failures)):
            for rule in rules:
                where = "every object" if rule.target is None else rule.target[:12]
                out.append(f"{name} @ {where} (times={rule.times}, p={rule.probability}, "
                           f"seconds={rule.seconds})")
        return out

    def __repr__(self) -> str:
        return f"<Faults: {len(self.armed())} armed>"


async def delayed(seconds: float, clock: Any) -> None:
    """Wait ``seconds`` of lab time (a helper for injected delays)."""
    if seconds > 0:
        await clock.sleep(seconds)
    else:
        await asyncio.sleep(0)
