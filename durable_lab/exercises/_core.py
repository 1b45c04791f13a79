"""The machinery behind every ``check_*`` function: scenarios, results, kind feedback.

A check runs a list of *scenarios* against the learner's class. Each scenario builds a fresh
lab, drives the class through the public API (calls, faults, adversarial schedules) and either
returns (passed) or raises :class:`Fail` with *what happened* and a *hint*. The check never
raises on a wrong answer: it returns a :class:`CheckResult` that prints as a short report, so a
lesson notebook that ships a starter class still runs top to bottom.
"""

from __future__ import annotations

import ast
import asyncio
import inspect
import json
import random
import textwrap
import time
import traceback
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..errors import DurableObjectError
from ..lab import Lab
from ..objects import DurableObject

__all__ = ["CheckResult", "Fail", "Scenario", "ScenarioOutcome", "explore", "method_tree",
           "run_check"]

#: Wall-clock seconds a scenario may take before it is reported as stuck.
SCENARIO_TIMEOUT = 15.0


class Fail(Exception):
    """Raised by a scenario: ``what`` happened (plain words), and a ``hint`` to fix it."""

    def __init__(self, what: str, hint: str = "") -> None:
        super().__init__(what)
        self.what = what
        self.hint = hint


@dataclass
class Scenario:
    """One hidden test: ``name`` is shown to the learner, ``run(cls)`` raises :class:`Fail`."""

    name: str
    run: Callable[[type], Awaitable[str | None]]


@dataclass
class ScenarioOutcome:
    name: str
    passed: bool
    what: str = ""
    hint: str = ""
    note: str = ""
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "passed": self.passed, "what": self.what, "hint": self.hint,
                "note": self.note, "seconds": round(self.seconds, 4)}


@dataclass
class CheckResult:
    """What a check found. Prints as a report; ``bool(result)`` is True when everything passed.

    ``score`` is the fraction of scenarios passed (for a grader); ``to_dict()`` / ``to_json()``
    give the same as data.
    """

    exercise: str
    title: str
    outcomes: list[ScenarioOutcome] = field(default_factory=list)
    praise: str = ""

    @property
    def passed(self) -> bool:
        return bool(self.outcomes) and all(o.passed for o in self.outcomes)

    def __bool__(self) -> bool:
        return self.passed

    @property
    def score(self) -> float:
        if not self.outcomes:
            return 0.0
        return sum(o.passed for o in self.outcomes) / len(self.outcomes)

    @property
    def failures(self) -> list[ScenarioOutcome]:
        return [o for o in self.outcomes if not o.passed]

    @property
    def hints(self) -> list[str]:
        return [o.hint for o in self.failures if o.hint]

    def __str__(self) -> str:
        total = len(self.outcomes)
        good = sum(o.passed for o in self.outcomes)
        lines = [f"Exercise {self.exercise} · {self.title}: "
                 + ((f"all {total} scenarios pass." if total > 2 else
                     "both scenarios pass." if total == 2 else "it passes.") if self.passed
                    else f"{good} of {total} scenarios pass.")]
        for o in self.outcomes:
            mark = "✓" if o.passed else "✗"
            lines.append(f"  {mark} {o.name}")
            if not o.passed:
                lines.append(_indent("What happened: " + o.what, 6))
                if o.hint:
                    lines.append(_indent("Hint: " + o.hint, 6))
            elif o.note:
                lines.append(_indent(o.note, 6))
        if self.passed:
            if self.praise:
                lines.append(self.praise)
        else:
            lines.append("Not there yet, and that is the point of the exercise: fix the first ✗ "
                         "above, run the cell again, and the check will tell you what is next.")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return str(self)

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:
        p.text(str(self))

    def to_dict(self) -> dict[str, Any]:
        return {"exercise": self.exercise, "title": self.title, "passed": self.passed,
                "score": self.score, "scenarios": [o.to_dict() for o in self.outcomes]}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def assert_passed(self) -> None:
        """Raise ``AssertionError`` with the report unless every scenario passed (for graders)."""
        if not self.passed:
            raise AssertionError(str(self))


def first_lines(text: str, limit: int = 4) -> str:
    """``text`` cut to ``limit`` lines (with a note of how many more there were)."""
    lines = str(text).splitlines()
    if len(lines) <= limit:
        return "\n".join(lines)
    return "\n".join([*lines[:limit], f"  ... ({len(lines) - limit} more lines)"])


def _indent(text: str, spaces: int) -> str:
    pad = " " * spaces
    return "\n".join(pad + line if line else line for line in text.splitlines())


# -- explaining the learner's own errors --------------------------------------------------------

_FORGOT_AWAIT = ("Did you forget an await? ctx.storage.get(...) and calls through stubs return "
                 "awaitables: write `(await self.ctx.storage.get(key))` to get the value.")

_KNOWN_ERRORS: list[tuple[str, str]] = [
    ("_asyncio.Task", _FORGOT_AWAIT),
    ("_asyncio.Future", _FORGOT_AWAIT),
    ("has no attribute 'ctx'",
     "Your constructor must call super().__init__(ctx, env) first: that is what sets self.ctx "
     "and self.env."),
    ("durable_lab.sql.Row",
     "A row from .one() is a Row (a dict subclass) and cannot cross a stub: return dict(row), "
     "or use .toArray(), which gives plain dicts."),
    ("cannot hold a value of type",
     "Only plain data crosses a stub or goes into storage (None, bool, int, float, str, bytes, "
     "list, tuple, dict, set, datetime). Convert objects to dicts or lists first."),
    ("no such table",
     "Create your table in the constructor with CREATE TABLE IF NOT EXISTS, so it exists on "
     "every incarnation of the object (the constructor runs again after an eviction)."),
    ("already exists",
     "The constructor runs again after every eviction: write CREATE TABLE IF NOT EXISTS, not "
     "CREATE TABLE."),
    ("is not backed by SQLite",
     "This exercise's check binds your class with sql=True; make sure you use "
     "self.ctx.storage.sql only in a class meant for the SQL API."),
    ("object NoneType can't be used in 'await' expression",
     "You awaited something that returns None. Storage put()/delete() return awaitables, but "
     "your own helper functions need to be async def to be awaited."),
    ("coroutine",
     "Did you forget an await? Storage reads (get, list) and calls through stubs must be "
     "awaited to get their value."),
    ("nested too deeply",
     "blockConcurrencyWhile inside blockConcurrencyWhile ... 64 times? Call it once, around the "
     "code that must not interleave."),
]


def explain_error(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}"
    for needle, hint in _KNOWN_ERRORS:
        if needle in text:
            return hint
    if isinstance(exc, DurableObjectError) and exc.durableObjectReset:
        return ("The object was reset (its in-memory state dropped). Resets come from a failed "
                "commit, ctx.abort(), an exception inside blockConcurrencyWhile, or an "
                "exception in the constructor: look at the message above.")
    if getattr(exc, "remote", False):
        return ("This exception was raised by your object's code (remote=True). Run the "
                "scenario yourself in a cell to see the traceback.")
    return "Run the same calls yourself in a cell to see the full traceback."


def short_error(exc: BaseException) -> str:
    message = str(exc)
    if len(message) > 300:
        message = message[:297] + "..."
    return f"{type(exc).__name__}: {message}"


# -- running a check --------------------------------------------------------------------------


def check_class(cls: Any, methods: Sequence[str], *, what: str = "class") -> None:
    """Fail early, kindly, if ``cls`` is not a DurableObject subclass with ``methods``."""
    if not inspect.isclass(cls):
        raise Fail(f"the check expects a class, but got {type(cls).__name__}: {cls!r}.",
                   "Pass the class itself, e.g. check_counter(MyCounter), not an instance "
                   "(MyCounter()) or a stub.")
    if not issubclass(cls, DurableObject):
        raise Fail(f"{cls.__name__} does not subclass DurableObject.",
                   f"Write: class {cls.__name__}(DurableObject): ... "
                   "(from durable_lab import DurableObject).")
    missing = [m for m in methods if not callable(getattr(cls, m, None))]
    if missing:
        listing = ", ".join(f"{m}()" for m in missing)
        raise Fail(f"{cls.__name__} has no {listing}.",
                   f"The exercise asks for these methods: "
                   f"{', '.join(f'{m}()' for m in methods)}. Check the spelling.")
    if inspect.iscoroutinefunction(getattr(cls, "__init__", None)):
        raise Fail(f"{cls.__name__}.__init__ is async def.",
                   "A Durable Object's constructor is synchronous. Do async setup with "
                   "ctx.blockConcurrencyWhile(self.load) from __init__, or lazily in a method.")


async def run_check(exercise: str, title: str, subject: Any, scenarios: Sequence[Scenario],
                    *, methods: Sequence[str] = (), praise: str = "",
                    validate: Callable[[Any], None] | None = None,
                    timeout: float = SCENARIO_TIMEOUT) -> CheckResult:  # noqa: ASYNC109
    """Run every scenario against ``subject`` (usually the learner's class)."""
    result = CheckResult(exercise, title, praise=praise)
    try:
        if validate is not None:
            validate(subject)
        else:
            check_class(subject, methods)
    except Fail as failure:
        result.outcomes.append(ScenarioOutcome("the class has the right shape", False,
                                               failure.what, failure.hint))
        return result
    for scenario in scenarios:
        started = time.perf_counter()
        outcome = ScenarioOutcome(scenario.name, True)
        try:
            note = await asyncio.wait_for(scenario.run(subject), timeout)
            outcome.note = note or ""
        except Fail as failure:
            outcome.passed, outcome.what, outcome.hint = False, failure.what, failure.hint
        except TimeoutError:
            outcome.passed = False
            outcome.what = f"the scenario did not finish within {timeout:.0f} seconds."
            outcome.hint = ("Something waits forever or for a long real time. Inside objects, "
                            "wait with `await durable_lab.sleep(s)` (lab time), not "
                            "asyncio.sleep / time.sleep; and never await a call to your own "
                            "object from inside blockConcurrencyWhile.")
        except Exception as exc:  # the learner's code raised where the scenario did not expect
            outcome.passed = False
            outcome.what = f"a call raised {short_error(exc)}"
            outcome.hint = explain_error(exc)
            if not getattr(exc, "remote", False) and not isinstance(exc, DurableObjectError):
                frames = traceback.extract_tb(exc.__traceback__)
                if frames:
                    last = frames[-1]
                    outcome.what += f" (at {last.name}, line {last.lineno})"
        outcome.seconds = time.perf_counter() - started
        result.outcomes.append(outcome)
    return result


# -- helpers for scenarios ------------------------------------------------------------------


async def settle(lab: Lab) -> None:
    """Let everything runnable run now (without waiting for timers: on a manual clock,
    ``lab.wait_idle()`` would wait for a timer that never fires)."""
    await lab.scheduler.settle()


async def advance(lab: Lab, seconds: float, step: float = 0.5) -> None:
    """Move a manual clock forward in small steps, letting the lab run between them."""
    remaining = seconds
    while remaining > 1e-9:
        delta = min(step, remaining)
        lab.clock.advance(delta)  # type: ignore[attr-defined]
        remaining -= delta
        await settle(lab)


async def drive(lab: Lab, awaitable: Awaitable[Any], *, max_rounds: int = 2000) -> Any:
    """Await ``awaitable`` on a manual-clock lab, moving lab time to the next timer whenever
    nothing else can run (so a ``durable_lab.sleep`` in the learner's code cannot hang)."""
    task = asyncio.ensure_future(awaitable)
    next_timer = getattr(lab.clock, "next_timer", None)
    for _ in range(max_rounds):
        if task.done():
            break
        await lab.scheduler.settle()
        if task.done():
            break
        due = next_timer() if next_timer is not None else None
        if due is not None:
            lab.clock.advance_to(max(due, lab.clock.now()))  # type: ignore[attr-defined]
        else:
            await asyncio.sleep(0.001)
    return await task


async def gather_outcomes(*calls: Awaitable[Any]) -> list[tuple[bool, Any]]:
    """Await every call; ``(True, value)`` or ``(False, exception)`` for each."""
    results = await asyncio.gather(*calls, return_exceptions=True)
    return [(not isinstance(r, BaseException), r) for r in results]


@dataclass
class Exploration:
    """One adversarial schedule: the seed, the steps taken, and each call's outcome."""

    seed: int
    steps: list[str]
    outcomes: list[tuple[bool, Any]]

    def schedule_text(self, limit: int = 14) -> str:
        shown = self.steps[:limit]
        more = f"\n  ... {len(self.steps) - limit} more steps" if len(self.steps) > limit else ""
        return "\n".join(f"  {i + 1:>2}. {s}" for i, s in enumerate(shown)) + more


async def explore(lab: Lab, start_calls: Callable[[], list[Awaitable[Any]]], seed: int,
                  *, max_steps: int = 2000) -> Exploration:
    """Play scheduler: pause ``lab``, start the calls, then take random legal transitions.

    Timers (``durable_lab.sleep`` on a manual clock) are advanced when no transition is legal.
    Returns the steps taken and the outcome of each call; the lab is resumed afterwards.
    """
    rng = random.Random(seed)
    lab.scheduler.note_paused_calls = False  # the check's own pause: not news to the learner
    lab.pause()
    calls = [asyncio.ensure_future(c) for c in start_calls()]
    steps: list[str] = []
    idle_rounds = 0
    try:
        while not all(c.done() for c in calls) and len(steps) < max_steps:
            await lab.scheduler.settle()
            options = lab.choices()
            if not options:
                next_timer = getattr(lab.clock, "next_timer", lambda: None)()
                if next_timer is not None:
                    delta = max(0.0, next_timer - lab.clock.now())
                    lab.clock.advance_to(lab.clock.now() + delta)  # type: ignore[attr-defined]
                    if delta > 0:
                        steps.append(f"(lab time moves on by {delta:.2f} s)")
                    continue
                idle_rounds += 1
                if idle_rounds > 200:
                    break
                await asyncio.sleep(0.001)
                continue
            idle_rounds = 0
            choice = await lab.choose(rng.randrange(len(options)))
            steps.append(choice.description)
    finally:
        lab.resume()
    outcomes = await gather_outcomes(*calls)
    await settle(lab)
    return Exploration(seed, steps, outcomes)


def source_of(cls: type) -> str:
    """The class's source text if Python can find it ('' otherwise): used only for hints.

    Classes defined in notebook cells have no file ``inspect.getsource(cls)`` can read, but
    their functions do, so the methods' sources are joined instead.
    """
    try:
        return inspect.getsource(cls)
    except (OSError, TypeError):
        pass
    parts = []
    for klass in getattr(cls, "__mro__", (cls,)):
        if klass is object or klass.__module__.startswith("durable_lab."):
            continue
        for value in vars(klass).values():
            function = getattr(value, "__func__", value)
            if inspect.isfunction(function):
                try:
                    parts.append(inspect.getsource(function))
                except (OSError, TypeError):
                    continue
    return "\n".join(parts)


def method_tree(cls: type, name: str) -> ast.AST | None:
    """The syntax tree of method ``name`` of ``cls`` (None if Python cannot find its source).

    Used only to word a hint after a scenario has *measured* the failure: the tree tells where a
    lock is made or whether a put is awaited, which the events cannot.
    """
    function = getattr(cls, name, None)
    function = getattr(function, "__func__", function)
    try:
        text = inspect.getsource(function)  # type: ignore[arg-type]
    except (OSError, TypeError):
        return None
    try:
        return ast.parse(textwrap.dedent(text))
    except SyntaxError:
        return None
