"""Every schedule, not a sample: let the machine be the scheduler.

A paused lab (``lab.pause()``) waits before every *transition* (``scheduler.py``): a delivery
admitted or resumed by its input gate, a flush, a commit, a reply released. A learner picks them
one at a time with ``lab.choose(i)``. :func:`explore` does the same, mechanically, for every
order in which the transitions can happen, and checks each finished run against an invariant::

    result = await explore({"COUNTER": Counter},
                           lambda env: [env.COUNTER.getByName("a").increment()
                                        for _ in range(2)])
    result.ok                       # every schedule held the invariant
    result.schedules, result.complete
    result.counterexample           # None, or the shortest schedule that breaks it
    lab = await result.counterexample.replay()   # a fresh lab driven through those steps

**What a run is.** Each schedule runs in a fresh lab (memory storage, a manual clock, calls
recorded) from the start: the bindings are bound, the workload function makes its calls, and
then, while something can happen, one transition is taken. Besides the scheduler's choices
there is one more kind of transition, **the clock**: while a timer set by object code
(``durable_lab.sleep``, an alarm) is pending, letting lab time pass up to it is a choice like any
other, so "the timer fired before the commit finished" is explored too. The runtime's own
watchdogs (the output gate's and ``blockConcurrencyWhile``'s 30-second limits, idle eviction)
fire only when nothing else can happen, as they would on a real clock. A run ends when nothing
can happen; if calls are still unanswered then, the calls never finish and that run fails.

**Strategies.** ``"dpor"`` (the default) explores depth-first, every schedule, with a sound
reduction: two transitions *commute* when they belong to different objects and neither reaches
outside its own object (it started no call to another object, released no caller waiting in
another object, moved no clock), or when they belong to the same object and touch disjoint
parts of it (releasing a reply to a client against a flush, a commit, or object code that
answered nobody: see ``_independent``); of schedules that differ only by the order of
commuting transitions, one is run (Godefroid's sleep sets, with dependence observed while
running: each transition is watched for effects outside its footprint, and one that has any
is treated as dependent on everything). ``"dfs"`` is the same search without the reduction
(brute force). ``"bfs"`` goes breadth-first with the same reduction and stops at the first
failing schedule: the shortest one. ``"random"`` picks uniformly at each step (seeded),
``"pct"`` gives every delivery a random priority and lowers the running one at ``depth - 1``
random points (probabilistic concurrency testing). ``bound=k`` keeps only schedules with at
most ``k`` preemptions (switching away from a delivery that could have gone on), as CHESS does.

**The invariant.** By default the history must be linearizable for ``spec`` (``check.py``'s
``"counter"`` or ``"register"`` models, or a model object) and every call must finish. A
function ``invariant(lab, outcomes)`` may replace it: it returns ``True`` (holds), or ``False``
or a message (broken). The reduction assumes the invariant depends on the outcomes and on
each object's own history, not on the order of events of different objects.

**Limits.** ``max_schedules`` and ``time_limit`` (seconds) stop the search: the result then says
``complete=False`` in plain words. ``max_steps`` bounds one run (a class that sets timers
forever). Progress goes to ``progress``: a callable given an :class:`ExploreProgress` now and
then (``widgets.explore_progress()`` is a bar for Jupyter); by default a line on stderr once a
search takes more than a second.

Faults as choices (``faults=True``, or some of ``FAULTS`` by name): before each flush, "its
commit fails" is a transition too, and so are "this object crashes" and "this idle object is
evicted" (each once per object and run), so the search finds the shortest schedule where a
fault breaks the invariant.
"""

from __future__ import annotations

import asyncio
import inspect
import random
import sys
import time
from collections.abc import Awaitable, Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from .check import History, Model, linearizable
from .clock import ManualClock
from .events import RuntimeEvent, describe
from .lab import MODELS, Env, Lab
from .scheduler import Choice

__all__ = ["FAULTS", "STRATEGIES", "Counterexample", "ExploreProgress", "ExploreResult", "Failed",
           "Player", "Unfinished", "explore", "set_default_progress"]

STRATEGIES = ("dpor", "dfs", "bfs", "random", "pct")

#: The faults ``explore(faults=...)`` may offer as choices (``True``: all of them).
FAULTS = ("commit", "crash", "evict")

#: Where every run's manual clock starts (a fixed time, so runs are alike to the last digit).
START = 1_700_000_000.0

#: The runtime's own timeouts: they fire only when nothing else can happen (see the docstring).
_WATCHDOGS = ("CriticalSection._timed_out", "ObjectHost._idle_check", "OutputGate.")

Key = tuple[str, str, int, str]  # (kind, object, delivery, description)
Invariant = Callable[[Lab, list[Any]], Any]  # True/None: holds; False/a message: broken
Workload = Callable[[Env], Iterable[Awaitable[Any]]]


# -- one run --------------------------------------------------------------------------------


class _ExploreClock(ManualClock):
    """A manual clock that tells the object's timers (choices) from the runtime's watchdogs."""

    def __init__(self) -> None:
        super().__init__(START)
        self._mine: list[tuple[float, Any, bool]] = []

    def call_at(self, when: float, callback: Callable[[], Any]) -> Any:
        timer = super().call_at(when, callback)
        name = getattr(callback, "__qualname__", "")
        self._mine.append((float(when), timer, name.startswith(_WATCHDOGS)))
        return timer

    def next_due(self, *, watchdog: bool) -> float | None:
        """The next pending timer of that sort (None if there is none)."""
        if not self._mine:
            return None
        self._mine = [t for t in self._mine if not t[1].cancelled and t[0] > self._now]
        times = [when for when, _, dog in self._mine if dog == watchdog]
        return min(times) if times else None


@dataclass(slots=True)
class _Option:
    """One transition possible now: a scheduler choice, the clock, or an injected fault.
    (Not frozen: a frozen dataclass's __init__ costs several times more, and a search makes
    one per option per step. Nobody changes one once made.)"""

    key: Key
    choice: Choice | None = None
    until: float | None = None  # the clock: advance to this time

    @property
    def thread(self) -> tuple[str, int]:
        """Whose step this is, for preemption counting and PCT: (object, delivery)."""
        return (self.key[1], self.key[2])


class _Stuck(Exception):
    """A replayed prefix asked for a transition that is not possible (nondeterminism)."""


class _Run:
    """One schedule being run in a fresh lab. ``watch``: note what each step of object code
    did to storage (the reduction reads it; a brute-force run or a replay need not pay)."""

    def __init__(self, setup: _Setup, *, watch: bool = False) -> None:
        self.setup = setup
        # Only the key-value cache counts writes ("none" writes around it).
        self.watch = watch and setup.model != "none"
        self.lab = Lab(storage="memory", clock=_ExploreClock(), model=setup.model, record="calls",
                       seed=setup.seed)
        self.lab.scheduler.note_paused_calls = False
        self.clock: _ExploreClock = self.lab.clock  # type: ignore[assignment]
        self.calls: list[asyncio.Future[Any]] = []
        self.steps: list[Key] = []
        self.fail_commit: set[str] = set()
        self.crashed: set[str] = set()
        self.evicted: set[str] = set()
        self._options: list[_Option] | None = None
        #: What the last step did to the client calls: answered one, made a new one; and
        #: whether it may have written to storage (True when not watched).
        self.answered = False
        self.invoked = False
        self.wrote = True

    async def start(self) -> None:
        lab = self.lab
        lab.pause()
        for name, cls in self.setup.bindings.items():
            lab.bind(name, cls)
        made = list(self.setup.workload(lab.env))
        for index, call in enumerate(made):
            if any(call is other for other in made[:index]):
                for each in made:  # not started: closed, so Python does not warn about them
                    getattr(each, "close", lambda: None)()
                raise TypeError(
                    f"the workload's calls {made.index(call)} and {index} are the same call: "
                    f"make each call anew, e.g. [stub.increment() for _ in range(2)], "
                    f"not [stub.increment()] * 2")
            if not inspect.isawaitable(call):
                raise TypeError(
                    f"the workload's call {index} is {call!r}, not an awaitable: return stub "
                    f"calls, e.g. [env.COUNTER.getByName('a').increment()]")
            self.calls.append(asyncio.ensure_future(call))
        if not self.calls:
            raise ValueError("the workload made no calls: return a list of stub calls")
        await lab.scheduler.settle()

    def pending(self) -> list[int]:
        return [i for i, call in enumerate(self.calls) if not call.done()]

    def options(self) -> list[_Option]:
        """The transitions possible now (kept until the next one is taken)."""
        if self._options is None:
            self._options = self._list_options()
        return self._options

    def _list_options(self) -> list[_Option]:
        found = [_Option((c.kind, c.object, c.delivery, c.description), c)
                 for c in self.lab.scheduler.choices()]
        faults = self.setup.faults
        if "commit" in faults:
            found += [_Option(("fault", o.key[1], 0, f"fail the commit of {o.key[1]}'s next "
                               f"flush (a storage failure), and start that flush"), o.choice)
                      for o in found if o.key[0] == "flush" and o.key[1] not in self.fail_commit]
        if "crash" in faults:
            # A crash of an object that has something to do, once per object and run.
            busy = list(dict.fromkeys(o.key[1] for o in found if o.key[0] != "fault"))
            found += [_Option(("crash", obj, 0, f"crash {obj} (an infrastructure failure: "
                               f"calls in flight fail, unflushed writes are lost)"))
                      for obj in busy if obj not in self.crashed]
        due = self.clock.next_due(watchdog=False)
        if due is not None:
            found.append(_Option(("clock", "", 0, f"let lab time pass to t={due - START:g} s "
                                  f"(the next timer fires)"), until=due))
        elif not found and self.pending():
            dog = self.clock.next_due(watchdog=True)
            if dog is not None:
                found.append(_Option(("clock", "", 0, f"let lab time pass to t={dog - START:g} "
                                      f"s (a runtime timeout fires)"), until=dog))
        if "evict" in faults and found:
            # An eviction of an idle object (Cloudflare evicts only those), once per object and
            # run, while something else can still happen: one after the last step would
            # change nothing the calls saw.
            found += [_Option(("evict", obj, 0, f"evict {obj} (it is idle: its in-memory "
                               f"state is dropped, storage is kept; the next call constructs "
                               f"it again)"))
                      for obj in self.lab.faults.idle() if obj not in self.evicted]
        return found

    async def take(self, option: _Option) -> None:
        history = self.lab.history()
        ticks, calls = history.ticks, len(history.operations)
        if self.watch and option.key[0] in _CODE:
            writes = self.lab.statistics().kv_writes
            await self._take(option)
            self.wrote = self.lab.statistics().kv_writes != writes
        else:
            await self._take(option)
            self.wrote = True
        self.invoked = len(history.operations) != calls
        self.answered = history.ticks != ticks and not self.invoked

    async def _take(self, option: _Option) -> None:
        self.steps.append(option.key)
        self._options = None
        if option.key[0] == "crash":
            self.crashed.add(option.key[1])
            self.lab.faults.crash(option.key[1])
            await self.lab.scheduler.settle(passes=1)
            return
        if option.key[0] == "evict":
            self.evicted.add(option.key[1])
            self.lab.faults.evict_now(option.key[1])
            await self.lab.scheduler.settle(passes=1)
            return
        if option.key[0] == "fault":
            self.fail_commit.add(option.key[1])
            self.lab.fail_next_commit(option.key[1])
            # The fault is a choice made just before the flush it spoils: take that flush too.
            assert option.choice is not None
            await self.lab.scheduler.take(option.choice)
            return
        if option.choice is not None:
            await self.lab.scheduler.take(option.choice)
        else:
            assert option.until is not None
            self.clock.advance_to(option.until)
            await self.lab.scheduler.settle(passes=1)

    def outcomes(self) -> list[Any]:
        return [_outcome(call) for call in self.calls]

    async def close(self) -> None:
        if self.pending():
            # A run cut part-way (the reduction saw that another schedule covers it): let it
            # finish freely first, timers included, so closing the lab breaks no call between
            # two objects (whose error nobody would be left to read).
            self.lab.resume()
            for _ in range(100):
                await self.lab.scheduler.settle(passes=1)
                due = self.clock.next_due(watchdog=False)
                if not self.pending() or due is None:
                    break
                self.clock.advance_to(due)
        for call in self.calls:
            if not call.done():
                call.cancel()
        await self.lab.close()
        for call in self.calls:
            if call.done() and not call.cancelled():
                call.exception()  # retrieved: no "exception never retrieved" later


def _outcome(call: asyncio.Future[Any]) -> Any:
    if not call.done():
        return Unfinished()
    if call.cancelled():
        return Unfinished()
    error = call.exception()
    if error is not None:
        return Failed(type(error).__name__, str(error))
    return call.result()


@dataclass(frozen=True, slots=True)
class Failed:
    """The outcome of a call that raised: the error's type and message."""

    error: str
    message: str

    def __repr__(self) -> str:
        return f"<{self.error}: {self.message}>"


@dataclass(frozen=True, slots=True)
class Unfinished:
    """The outcome of a call that never answered."""

    def __repr__(self) -> str:
        return "<never answered>"


# -- the search -----------------------------------------------------------------------------


@dataclass
class _Setup:
    bindings: dict[str, type]
    workload: Workload
    model: str
    seed: int
    faults: frozenset[str]  # of FAULTS


#: Transitions that run the object's own code (between two awaits): they share the
#: instance's memory, which the explorer cannot watch, and its input gate.
_CODE = frozenset(("admit", "resume", "critical section", "constructor", "task"))
#: Transitions of the storage pipeline: a batch formed from the pending writes, a batch
#: reported durable (which opens the output gate and may start the next flush).
_PIPELINE = frozenset(("flush", "commit"))


@dataclass(frozen=True, slots=True)
class _Effect:
    """What a transition touched, as far as commuting goes (see ``_independent``)."""

    object: str
    #: It reached outside its object (a call, a reply another object waited for, a new client
    #: call, the clock, a fault), or disabled another transition of its own object: it
    #: commutes with nothing.
    wide: bool
    #: It ran object code (``_CODE``).
    code: bool = False
    #: It answered a client call (the history's order of answers moved).
    answered: bool = False
    #: It is a step of the storage pipeline (``_PIPELINE``): "flush" or "commit" ("": not).
    pipeline: str = ""
    #: Object code that wrote to storage (put, delete, an alarm change), or may have: True
    #: unless the step was watched and wrote nothing.
    wrote: bool = True


_WIDE = _Effect("", True)


def _independent(a: _Effect, b: _Effect) -> bool:
    """Whether two transitions commute (taken in either order, they lead to the same state).

    Different objects: when neither reaches outside its own (objects share nothing but
    messages). The same object: only when their footprints are disjoint. Code conflicts with
    code (the instance's memory, the input gate); two answers conflict (their order is the
    client's history); two pipeline steps conflict (one batch after another). Code conflicts
    with a commit (the commit opens the output gate code reads when its call ends, and ends
    the wait of a ``sync()``: code after a commit may run further than before it), and with a
    flush when it wrote (the write joins that batch, or the next one). What is left commutes:
    a reply released against a flush, a commit, or code that answered nobody (the reply hands
    on a value the output gate already let go: it reads nothing the others write, and they
    read nothing it writes), and a flush against code that wrote nothing (a flush moves the
    pending writes into a batch: no value a read sees changes, the output gate's locks were
    taken at the writes, and ``sync()`` waits for the same commit either way)."""
    if a.wide or b.wide:
        return False
    if a.object != b.object:
        return True
    if a.code and b.code:
        return False
    if a.answered and b.answered:
        return False
    if a.pipeline and b.pipeline:
        return False
    for code, step in ((a, b), (b, a)):
        if code.code and step.pipeline and (code.wrote or step.pipeline != "flush"):
            return False
    return True


def _effect(option: _Option, before: list[_Option], after: list[_Option], run: _Run
            ) -> _Effect:
    """Judge a transition by what changed when ``run`` took it (``before`` and ``after``:
    the options then). A step of object A that added or removed a possible transition of
    another object B (a call to B, a reply that lets B's code go on) reaches outside A, and
    so does one after which a client made a new call. A step that removed another transition
    of its own object (a gate closed for good, a reset) disables it: it is treated as
    reaching outside too. So does a reply to another object (not to a client), the clock and
    faults, always."""
    kind, own = option.key[0], option.key[1]
    if kind in ("clock", "fault", "crash", "evict") or run.invoked:
        return _Effect(own, True)
    if kind == "reply" and not run.answered:
        # Its caller is another object's code: the reply writes into that object's memory
        # (the future it awaits), even when no new transition shows there yet.
        return _Effect(own, True)
    old = {o.key for o in before}
    old.discard(option.key)
    for key in old.symmetric_difference(o.key for o in after):
        if key[0] == "clock":
            continue  # (a timer set or passed: the clock's own step is dependent on all)
        if key[1] != own or key in old:
            # A transition of another object came or went, or one of its own went.
            return _Effect(own, True)
    return _Effect(own, False, code=kind in _CODE, answered=run.answered,
                   pipeline=kind if kind in _PIPELINE else "", wrote=run.wrote)


@dataclass
class _Node:
    """A point of the depth-first search: what could happen there, what was tried."""

    options: list[_Option]
    sleep: dict[Key, _Effect]
    chosen: _Option
    effects: dict[Key, _Effect] = field(default_factory=dict)
    done: list[Key] = field(default_factory=list)
    preemptions: int = 0


@dataclass
class ExploreProgress:
    """Where a search is (handed to ``explore(progress=...)`` now and then)."""

    schedules: int
    runs: int
    failures: int
    elapsed: float
    max_schedules: int
    finished: bool = False

    def line(self) -> str:
        rate = self.runs / self.elapsed if self.elapsed > 0 else 0.0
        verdict = f", {self.failures} failing" if self.failures else ""
        return (f"explore: {self.schedules:,} schedules{verdict} ({self.runs:,} runs, "
                f"{rate:,.0f}/s, {self.elapsed:.1f} s)")


def _terminal_progress() -> Callable[[ExploreProgress], None]:
    """The default: one line on stderr, rewritten in place, once a search takes over 1 s."""
    shown = [False]

    def report(progress: ExploreProgress) -> None:
        if progress.elapsed < 1.0 and not shown[0]:
            return
        shown[0] = True
        end = "\n" if progress.finished else ""
        print("\r" + progress.line(), end=end, file=sys.stderr, flush=True)

    return report


ProgressFactory = Callable[[], Callable[[ExploreProgress], None]]

#: What ``explore(progress=None)`` uses: a factory of progress callbacks, one per search. The
#: core's is a line on stderr; ``widgets`` hands a Jupyter progress bar down when it is
#: imported in a kernel (the core never imports a UI package).
_default_progress: list[ProgressFactory] = [_terminal_progress]


def set_default_progress(factory: ProgressFactory | None) -> None:
    """Make ``factory()`` the progress display of every ``explore(progress=None)`` (``None``:
    back to the line on stderr)."""
    _default_progress[0] = _terminal_progress if factory is None else factory


class _Search:
    def __init__(self, setup: _Setup, check: Callable[[_Run], Any], *, strategy: str,
                 max_schedules: int, time_limit: float | None, max_steps: int,
                 bound: int | None, seed: int, depth: int, stop_at_first: bool,
                 progress: Callable[[ExploreProgress], None] | None) -> None:
        self.setup = setup
        self.check = check
        self.strategy = strategy
        self.max_schedules = max_schedules
        self.time_limit = time_limit
        self.max_steps = max_steps
        self.bound = bound
        self.random = random.Random(seed)
        self.depth = depth
        self.stop_at_first = stop_at_first
        self.progress = progress
        self.started = time.perf_counter()
        self.last_report = self.started
        self.schedules = 0
        self.runs = 0
        self.blocked = 0
        self.cut_by_bound = False
        self.stopped: str | None = None  # why the search stopped early
        self.error: str | None = None
        self.failures = 0
        self.counterexample: Counterexample | None = None
        self.outcomes: set[Hashable] = set()
        self.seen: set[tuple[Key, ...]] = set()

    # -- bookkeeping --------------------------------------------------------------------

    def out_of_budget(self) -> bool:
        if self.stopped is not None:
            return True
        if self.schedules >= self.max_schedules:
            self.stopped = (f"stopped after max_schedules={self.max_schedules:,} schedules: "
                            f"not every schedule was explored")
            return True
        if self.time_limit is not None and time.perf_counter() - self.started > self.time_limit:
            self.stopped = (f"stopped after time_limit={self.time_limit:g} s "
                            f"({self.schedules:,} schedules): not every schedule was explored")
            return True
        return False

    def tick(self, finished: bool = False) -> None:
        if self.progress is None:
            return
        now = time.perf_counter()
        if not finished and now - self.last_report < 1.0:
            return
        self.last_report = now
        self.progress(ExploreProgress(self.schedules, self.runs, self.failures,
                                      now - self.started, self.max_schedules, finished))

    async def new_run(self, *, watch: bool = False) -> _Run:
        run = _Run(self.setup, watch=watch)
        self.runs += 1
        try:
            await run.start()
        except BaseException:
            await run.close()
            raise
        return run

    async def finish(self, run: _Run) -> bool:
        """A run reached its end: judge it. False if the search must stop (a broken invariant
        in a strategy that stops at the first, or an invariant that raised)."""
        self.schedules += 1
        self.seen.add(tuple(run.steps))
        outcomes = run.outcomes()
        self.outcomes.add(_freeze(outcomes))
        try:
            verdict = self.check(run)
            if inspect.isawaitable(verdict):
                # An async invariant may call the objects: the lab runs freely for it.
                run.lab.resume()
                verdict = await asyncio.wait_for(verdict, 30)
        except AssertionError as error:  # an assert in the invariant: a broken invariant
            verdict = f"the invariant's assert failed: {error}" if str(error) else (
                "the invariant's assert failed")
        except Exception as error:  # the learner's invariant: report it, keep what we have
            self.error = (f"the invariant raised {type(error).__name__}: {error} (on schedule "
                          f"{self.schedules}, outcomes {outcomes!r}); the search stopped there")
            self.stopped = self.error
            self.failures += 1
            self.keep(run, outcomes, self.error)
            return False
        if verdict is None:
            return True
        self.failures += 1
        self.keep(run, outcomes, verdict)
        return self.strategy not in ("bfs", "random", "pct") and not self.stop_at_first

    def keep(self, run: _Run, outcomes: list[Any], why: str) -> None:
        best = self.counterexample
        if best is None or len(run.steps) < len(best.keys):
            self.counterexample = Counterexample(self.setup, list(run.steps), outcomes,
                                                 run.lab.history(), why)

    def steps_exceeded(self, run: _Run) -> bool:
        if len(run.steps) < self.max_steps:
            return False
        self.stopped = self.error = (
            f"one schedule took more than max_steps={self.max_steps:,} transitions (a class "
            f"that sets timers or calls forever?); the search stopped there")
        return True

    # -- depth-first, with or without sleep sets ------------------------------------------

    async def depth_first(self) -> None:
        reduce = self.strategy == "dpor" and self.bound is None
        path: list[_Node] = []
        while True:
            if self.out_of_budget():
                return
            run = await self.new_run(watch=reduce)
            try:
                go_on = await self.dfs_run(run, path, reduce)
            finally:
                await run.close()
            self.tick()
            if not go_on:
                return
            # Back up to the deepest point with something left to try.
            while path:
                node = path[-1]
                rest = [o for o in node.options if o.key not in node.sleep
                        and o.key not in node.done and self.within_bound(path[:-1], node, o)]
                if rest:
                    node.chosen = rest[0]
                    break
                path.pop()
            if not path:
                return

    def within_bound(self, above: list[_Node], node: _Node, option: _Option) -> bool:
        if self.bound is None:
            return True
        count = self.preemptions_to(above, node.options, option)
        if count > self.bound:
            self.cut_by_bound = True
            return False
        return True

    def preemptions_to(self, above: list[_Node], options: list[_Option], option: _Option
                       ) -> int:
        """Preemptions of the path ``above`` then ``option``: switching away from the thread
        of the previous step while it could still go on."""
        count = above[-1].preemptions if above else 0
        if above:
            last = above[-1].chosen.thread
            if option.thread != last and any(o.thread == last for o in options):
                count += 1
        return count

    async def dfs_run(self, run: _Run, path: list[_Node], reduce: bool) -> bool:
        """Replay ``path`` (its last node with its new choice), then go on down the first
        possible transitions to the end of the run."""
        for depth, node in enumerate(path):
            before = run.options()
            wanted = node.chosen.key
            option = next((o for o in before if o.key == wanted), None)
            if option is None:
                raise _Stuck(_nondeterminism(wanted, before))
            await run.take(option)
            if node.chosen.key not in node.effects:
                node.effects[node.chosen.key] = _effect(option, before, run.options(), run)
                node.done.append(node.chosen.key)
                node.preemptions = self.preemptions_to(path[:depth], node.options, node.chosen)
        while True:
            if self.steps_exceeded(run):
                return False
            options = run.options()
            if not options:
                return await self.finish(run)
            sleep: dict[Key, _Effect] = {}
            if reduce and path:
                parent = path[-1]
                edge = parent.effects[parent.chosen.key]
                tried = {k: parent.effects[k] for k in parent.done if k != parent.chosen.key}
                sleep = {k: e for k, e in (parent.sleep | tried).items()
                         if _independent(e, edge)}
            node = _Node(options, sleep, options[0])
            allowed = [o for o in options if o.key not in sleep
                       and self.within_bound(path, node, o)]
            if not allowed:
                if not [o for o in options if o.key not in sleep]:
                    self.blocked += 1  # every way on is covered by another schedule
                return True
            node.chosen = allowed[0]
            await run.take(node.chosen)
            node.effects[node.chosen.key] = (_effect(node.chosen, options, run.options(), run)
                                             if reduce else _WIDE)
            node.done.append(node.chosen.key)
            node.preemptions = self.preemptions_to(path, options, node.chosen)
            path.append(node)

    # -- breadth-first (the shortest counterexample), with sleep sets --------------------

    async def breadth_first(self) -> None:
        # A queue entry: the prefix to replay, and its sibling group (the sleep set of the
        # parent, the effects of the siblings tried before it, in order).
        queue: list[tuple[tuple[Key, ...], _Group | None, int]] = [((), None, 0)]
        head = 0
        while head < len(queue):
            if self.out_of_budget():
                return
            prefix, group, index = queue[head]
            head += 1
            run = await self.new_run(watch=True)
            try:
                before: list[_Option] = []
                for key in prefix:
                    before = run.options()
                    option = next((o for o in before if o.key == key), None)
                    if option is None:
                        raise _Stuck(_nondeterminism(key, before))
                    await run.take(option)
                options = run.options()
                sleep: dict[Key, _Effect] = {}
                if group is not None:
                    last = next(o for o in before if o.key == prefix[-1])
                    edge = _effect(last, before, options, run)
                    group.effects[index] = edge
                    tried = {group.keys[i]: group.effects[i] for i in range(index)
                             if i in group.effects}
                    sleep = {k: e for k, e in (group.sleep | tried).items()
                             if _independent(e, edge)}
                if self.steps_exceeded(run):
                    return
                if not options:
                    if not await self.finish(run):
                        return
                    continue
                allowed = [o for o in options if o.key not in sleep]
                if not allowed:
                    self.blocked += 1
                    continue
                children = _Group(sleep, [o.key for o in allowed])
                for i, option in enumerate(allowed):
                    queue.append(((*prefix, option.key), children, i))
            finally:
                await run.close()
            self.tick()

    # -- random and PCT ----------------------------------------------------------------

    async def sampled(self) -> None:
        longest = 20
        while not self.out_of_budget():
            run = await self.new_run()
            try:
                priorities: dict[tuple[str, int], float] = {}
                changes = set(self.random.sample(range(1, longest + 1),
                                                 min(self.depth - 1, longest)))
                step = 0
                while True:
                    if self.steps_exceeded(run):
                        return
                    options = run.options()
                    if not options:
                        break
                    if self.strategy == "random":
                        option = self.random.choice(options)
                    else:
                        for o in options:
                            priorities.setdefault(o.thread, self.random.random() + 1.0)
                        option = max(options, key=lambda o: priorities[o.thread])
                    step += 1
                    if self.strategy == "pct" and step in changes:
                        priorities[option.thread] = -float(step)  # lowest from now on
                    await run.take(option)
                longest = max(longest, step)
                go_on = await self.finish(run)
            finally:
                await run.close()
            self.tick()
            if not go_on:
                return


@dataclass
class _Group:
    sleep: dict[Key, _Effect]
    keys: list[Key]
    effects: dict[int, _Effect] = field(default_factory=dict)


def _nondeterminism(key: Key, options: Sequence[_Option]) -> str:
    listing = "\n".join(f"  {o.key[3]}" for o in options) or "  (nothing)"
    return (f"the same steps gave a different run: {key[3]!r} is not possible this time; "
            f"possible now:\n{listing}\nThe workload must do the same thing every time it runs "
            f"(no random numbers, wall-clock time or asyncio.sleep in the objects)")


def _freeze(value: Any) -> Hashable:
    if isinstance(value, dict):
        return tuple(sorted(((repr(k), _freeze(v)) for k, v in value.items())))
    if isinstance(value, (list, tuple)):
        return tuple(_freeze(v) for v in value)
    try:
        hash(value)
    except TypeError:
        return repr(value)
    return value


# -- results --------------------------------------------------------------------------------


class Counterexample:
    """A schedule that breaks the invariant: its steps, what the calls returned, the history."""

    def __init__(self, setup: _Setup, keys: list[Key], outcomes: list[Any], history: History,
                 why: str) -> None:
        self._setup = setup
        self.keys = keys
        #: The transitions taken, in order, in words.
        self.steps = [key[3] for key in keys]
        #: What each call of the workload returned (``Failed``/``Unfinished`` for the others).
        self.outcomes = outcomes
        #: The calls as the clients saw them (``durable_lab.check.History``).
        self.history = history
        #: Why the invariant says no.
        self.reason = why
        self.notes: list[list[str]] = []

    async def player(self) -> Player:
        """A fresh lab, paused before the first step (``await player.step()`` takes one)."""
        run = _Run(self._setup)
        await run.start()
        return Player(run, self.keys)

    async def replay(self) -> Lab:
        """A fresh lab driven through exactly these steps (paused at the end; close it)."""
        player = await self.player()
        while await player.step() is not None:
            pass
        return player.lab

    async def annotate(self) -> None:
        """Run the schedule once more, noting what each step did (for ``explain()``)."""
        player = await self.player()
        seen: list[RuntimeEvent] = []
        subscription = player.lab.subscribe(seen.append)
        notes: list[list[str]] = []
        try:
            while True:
                seen.clear()
                if await player.step() is None:
                    break
                notes.append([line for line in map(_words, seen) if line])
        finally:
            subscription.close()
            await player.close()
        self.notes = notes

    def interleavings(self) -> list[str]:
        """Where deliveries overlapped: each admission of a delivery while another delivery of
        the same object was waiting for its I/O (a timer, another object) with the gate open.
        Read from the notes ``annotate()`` took (empty before)."""
        waiting: dict[str, set[int]] = {}  # object -> deliveries awaiting I/O, gate open
        found: list[str] = []
        for step, notes in zip(self.keys, self.notes, strict=False):
            kind, obj, delivery, _ = step
            if kind == "admit" and waiting.get(obj):
                others = ", ".join(f"delivery {d}" for d in sorted(waiting[obj]))
                found.append(f"delivery {delivery} was admitted at {obj} while {others} "
                             f"waited for its I/O with the gate open")
            for note in notes:
                words = note.split()
                if "call" in words and words.index("call") + 1 < len(words):
                    number = words[words.index("call") + 1]
                    if not number.isdigit():
                        continue
                    label = note.split(": ", 1)[0]
                    if "awaits io: gate OPENS" in note:
                        waiting.setdefault(label, set()).add(int(number))
                    elif " resumes" in note or " finished" in note:
                        waiting.get(label, set()).discard(int(number))
        return found

    def explain(self) -> str:
        """The schedule in words: each step and what it made happen, then the verdict."""
        lines = [f"This schedule of {len(self.steps)} steps breaks the invariant:"]
        for number, step in enumerate(self.steps, 1):
            lines.append(f"{number:>3}. {step}")
            if number <= len(self.notes):
                lines.extend(f"       {note}" for note in self.notes[number - 1])
        lines.append("The calls returned: " + ", ".join(
            f"{op.method}() -> {outcome!r}" for op, outcome in zip(
                self.history.operations, self.outcomes, strict=False)))
        overlaps = self.interleavings()
        if overlaps:
            lines.append("In short: " + "; ".join(overlaps) + ".")
        lines.append(f"Why it fails: {self.reason}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return (f"a schedule of {len(self.steps)} steps: outcomes {self.outcomes!r}; "
                f"{self.reason}")

    def __repr__(self) -> str:
        return f"<Counterexample: {self}>"


def _words(event: RuntimeEvent) -> str | None:
    """One event in words, or None for the bookkeeping the explanation leaves out."""
    if event.kind in ("StepTaken", "Paused", "Resumed"):
        return None
    line = describe(event)
    return None if line is None else f"{event.object}: {line}" if event.object else line


class Player:
    """A counterexample being played in a fresh lab, one step at a time (the panels' "play
    counterexample" control drives one)."""

    def __init__(self, run: _Run, keys: list[Key]) -> None:
        self._run = run
        self.keys = keys
        self.lab = run.lab
        self.position = 0

    @property
    def next_step(self) -> str | None:
        """The step ``step()`` will take, in words (None at the end)."""
        return self.keys[self.position][3] if self.position < len(self.keys) else None

    @property
    def outcomes(self) -> list[Any]:
        return self._run.outcomes()

    async def step(self) -> str | None:
        """Take the next step of the schedule; its description, or None at the end."""
        if self.position >= len(self.keys):
            return None
        key = self.keys[self.position]
        options = self._run.options()
        option = next((o for o in options if o.key == key), None)
        if option is None:
            raise RuntimeError(_nondeterminism(key, options))
        await self._run.take(option)
        self.position += 1
        return key[3]

    async def close(self) -> None:
        await self._run.close()


@dataclass
class ExploreResult:
    """What :func:`explore` found. ``print(result)`` says it in words."""

    ok: bool
    schedules: int
    complete: bool
    counterexample: Counterexample | None
    strategy: str
    runs: int
    failures: int
    outcomes: set[Hashable]
    elapsed: float
    stopped: str | None = None
    error: str | None = None
    blocked: int = 0
    schedule_keys: set[tuple[Key, ...]] = field(default_factory=set, repr=False)

    def __bool__(self) -> bool:
        return self.ok

    def summary(self) -> str:
        rate = self.runs / self.elapsed if self.elapsed > 0 else 0.0
        head = (f"{self.schedules:,} schedules explored ({self.strategy}, {self.runs:,} runs "
                f"in {self.elapsed:.2f} s, {rate:,.0f}/s)")
        lines = [head]
        if self.error:
            lines.append(f"ERROR: {self.error}")
        if self.ok and self.complete:
            lines.append(f"all {self.schedules:,} schedules hold: no schedule breaks it")
        elif self.ok:
            lines.append(f"all {self.schedules:,} schedules explored hold, but the search was "
                         f"NOT complete: {self.stopped or 'a sample, not every schedule'}")
        else:
            lines.append(f"{self.failures:,} of {self.schedules:,} schedules break it")
            if self.stopped and not self.error:
                lines.append(f"(not complete: {self.stopped})")
            if self.counterexample is not None:
                lines.append(f"shortest found: {self.counterexample}")
        lines.append(f"{len(self.outcomes)} distinct outcome(s)")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary()

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:
        p.text(self.summary())


# -- the entry point ------------------------------------------------------------------------


_PLAIN = (type(None), bool, int, float, str, bytes)


def _plain(value: Any) -> Hashable:
    """``value`` as a hashable key that tells apart exactly what ``==`` does on plain data
    (types tagged, so ``[1]`` and ``(1,)`` differ); raises TypeError for anything else."""
    if isinstance(value, _PLAIN):
        return (type(value), value)
    if isinstance(value, (list, tuple)):
        return (type(value), tuple(_plain(v) for v in value))
    if isinstance(value, dict):
        return (dict, tuple((_plain(k), _plain(v)) for k, v in value.items()))
    raise TypeError(type(value).__name__)


def _history_key(history: History) -> Hashable | None:
    """What the linearizability check reads of a history, as a key; None when a call's
    arguments or result are not plain data (then the verdict is not memoised)."""
    try:
        return tuple((op.client, op.object, op.method, _plain(op.args), _plain(op.kwargs),
                      op.invoke_time, op.return_time, op.status, _plain(op.result),
                      None if op.error is None else (op.error.type, op.error.message,
                                                     op.error.kind))
                     for op in history.operations)
    except TypeError:
        return None


def _linearizable_check(spec: str | Model) -> Callable[[_Run], str | None]:
    # Many schedules give the same history (the same calls, answered in the same order with
    # the same results): the verdict is computed once per distinct history.
    verdicts: dict[Hashable, str | None] = {}

    def check(run: _Run) -> str | None:
        unfinished = run.pending()
        if unfinished:
            return (f"calls never finished: {len(unfinished)} of {len(run.calls)} calls were "
                    f"still waiting when nothing else could happen")
        history = run.lab.history()
        key = _history_key(history)
        if key is not None and key in verdicts:
            return verdicts[key]
        result = linearizable(history, spec)
        verdict = None if result.ok else result.explanation or str(result)
        if key is not None and len(verdicts) < 100_000:
            verdicts[key] = verdict
        return verdict

    return check


def _custom_check(invariant: Invariant) -> Callable[[_Run], Any]:
    name = getattr(invariant, "__name__", "invariant")

    def verdict(answer: Any) -> str | None:
        if answer is True or answer is None:
            return None
        if answer is False:
            return f"the invariant {name} returned False"
        return str(answer)

    def check(run: _Run) -> Any:
        answer = invariant(run.lab, run.outcomes())
        if inspect.isawaitable(answer):
            async def later() -> str | None:
                return verdict(await answer)
            return later()
        return verdict(answer)

    return check


def _fault_kinds(faults: Any) -> frozenset[str]:
    """``explore(faults=...)`` as a set of names (a clear error for anything else)."""
    if faults is True or faults is False:
        return frozenset(FAULTS if faults else ())
    kinds = [faults] if isinstance(faults, str) else faults
    try:
        chosen = frozenset(kinds)
    except TypeError:
        chosen = frozenset((object(),))  # (not iterable, or unhashable items: refused below)
    if not chosen or not chosen <= set(FAULTS):
        raise ValueError(f"faults must be True, False, or names among "
                         f"{', '.join(map(repr, FAULTS))} (e.g. faults='evict' or "
                         f"faults={{'commit', 'crash'}}), got {faults!r}")
    return chosen


async def explore(bindings: dict[str, type], workload: Workload, *,
                  invariant: Invariant | None = None, spec: str | Model = "counter",
                  model: str = "gates", strategy: str = "dpor", max_schedules: int = 100_000,
                  time_limit: float | None = None, max_steps: int = 10_000,
                  bound: int | None = None, depth: int = 3, seed: int = 0,
                  faults: bool | str | Iterable[str] = False, stop_at_first: bool = False,
                  progress: Callable[[ExploreProgress], None] | bool | None = None,
                  ) -> ExploreResult:
    """Run ``workload`` under every schedule (or a sample) and check each against an invariant.

    Args:
        bindings: binding name -> class, bound in each fresh lab (``{"COUNTER": Counter}``).
        workload: ``env -> [stub calls]``: the calls, made at the start of each run.
        invariant: ``None``: every call finishes and the history is linearizable for ``spec``;
            or ``invariant(lab, outcomes)`` returning True (holds) / False or a message.
        spec: the linearizability model (``"counter"``, ``"register"``, or a model object).
        model: the lab's concurrency model (``"gates"``, ``"none"``, ``"serial"``).
        strategy: ``"dpor"`` (exhaustive, reduced), ``"dfs"`` (exhaustive, brute force),
            ``"bfs"`` (exhaustive, reduced, stops at the shortest failing schedule),
            ``"random"`` or ``"pct"`` (samples, stop at the first failing one).
        max_schedules, time_limit: stop there (``complete=False``).
        max_steps: the longest one run may be.
        bound: at most this many preemptions per schedule (``complete=False`` if it cut any).
        depth: PCT's bug depth (``depth - 1`` priority change points per run).
        seed: for ``random`` and ``pct``; every run's lab has this seed too.
        faults: faults offered as choices, by name (``FAULTS``), or ``True`` for all:
            ``"commit"``: "this commit fails" before each flush; ``"crash"``: "this object
            crashes" (once per object and run) at every step where it has something to do;
            ``"evict"``: "this idle object is evicted" (once per object and run) while
            something else can still happen.
        stop_at_first: stop ``dpor``/``dfs`` at the first failing schedule (fast feedback;
            then the counterexample is not guaranteed to be the shortest).
        progress: a callable given an ``ExploreProgress`` now and then; ``None``: a line on
            stderr once the search takes more than a second; ``False``: nothing.
    """
    if not isinstance(bindings, dict) or not bindings or not all(
            isinstance(k, str) and isinstance(v, type) for k, v in bindings.items()):
        raise TypeError(f"bindings must be a non-empty dict of name -> class, "
                        f"e.g. {{'COUNTER': Counter}}; got {bindings!r}")
    if not callable(workload):
        raise TypeError("workload must be a function of env returning the calls, e.g. "
                        "lambda env: [env.COUNTER.getByName('a').increment()]")
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy must be one of {', '.join(map(repr, STRATEGIES))}, "
                         f"got {strategy!r}")
    if model not in MODELS:
        raise ValueError(f"model must be one of {', '.join(map(repr, MODELS))}, got {model!r}")
    for name, value, least in (("max_schedules", max_schedules, 1), ("max_steps", max_steps, 1),
                               ("depth", depth, 1)):
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            raise ValueError(f"{name} must be an int >= {least}, got {value!r}")
    if bound is not None and (isinstance(bound, bool) or not isinstance(bound, int)
                              or bound < 0):
        raise ValueError(f"bound must be None or an int >= 0 (preemptions), got {bound!r}")
    if time_limit is not None and (isinstance(time_limit, bool)
                                   or not isinstance(time_limit, (int, float))
                                   or not time_limit > 0):
        raise ValueError(f"time_limit must be None or a number of seconds > 0, "
                         f"got {time_limit!r}")
    if invariant is not None and not callable(invariant):
        raise TypeError(f"invariant must be None or a function (lab, outcomes) -> True / "
                        f"message, got {invariant!r}")
    if progress is None:
        report: Callable[[ExploreProgress], None] | None = _default_progress[0]()
    elif progress is False:
        report = None
    elif callable(progress):
        report = progress
    else:
        raise TypeError(f"progress must be None, False or a function, got {progress!r}")
    setup = _Setup(dict(bindings), workload, model, seed, _fault_kinds(faults))
    check = _linearizable_check(spec) if invariant is None else _custom_check(invariant)
    search = _Search(setup, check, strategy=strategy, max_schedules=max_schedules,
                     time_limit=time_limit, max_steps=max_steps, bound=bound, seed=seed,
                     depth=depth, stop_at_first=bool(stop_at_first), progress=report)
    try:
        if strategy in ("dpor", "dfs"):
            await search.depth_first()
        elif strategy == "bfs":
            await search.breadth_first()
        else:
            await search.sampled()
    except _Stuck as stuck:
        search.error = search.stopped = str(stuck)
    search.tick(finished=True)
    exhaustive = strategy in ("dpor", "dfs", "bfs")
    complete = (exhaustive and search.stopped is None and not search.cut_by_bound
                and not ((strategy == "bfs" or stop_at_first) and search.failures))
    if exhaustive and search.cut_by_bound and search.stopped is None:
        search.stopped = (f"bound={bound} cut schedules with more preemptions: not every "
                          f"schedule was explored")
    if search.counterexample is not None:
        await search.counterexample.annotate()
    return ExploreResult(
        ok=search.failures == 0 and search.error is None, schedules=search.schedules,
        complete=complete, counterexample=search.counterexample, strategy=strategy,
        runs=search.runs, failures=search.failures, outcomes=search.outcomes,
        elapsed=time.perf_counter() - search.started, stopped=search.stopped,
        error=search.error, blocked=search.blocked, schedule_keys=search.seen)
