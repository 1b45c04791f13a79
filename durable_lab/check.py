"""Record what clients saw, then ask: could one single copy of the object have answered that way?

This module is for the part of a lesson that comes *after* running code: looking at the answers
the clients got and deciding whether they make sense.

**A history** (:class:`History`) is the list of calls the clients made, as the clients saw them:
who called (the *client*), which object, which method with which arguments, what came back (a
result or an error), and *when* the call started and when its answer arrived. "When" is kept
twice: as wall-clock seconds, and as a *logical time*, a counter that goes up by one at every
start and every answer, so two events never tie and "A finished before B started" is exact.
Wrap a stub with :func:`recorded` and every call through it is written down::

    history = History()
    counter = recorded(COUNTER.getByName("room-1"), history, client="alice")
    await counter.increment(1)

**Linearizability** (:func:`linearizable`) is the correctness rule Durable Objects promise for
one object: every call appears to take effect at one instant somewhere between its start and its
answer, one call at a time, as if there were a single copy of the object. To check a history we
look for such an order (Wing & Gong's algorithm, with Lowe's/Porcupine's memoization): repeatedly
pick a call that may go next (no other pending call finished before it started), apply it to a
tiny *model* of the object (a number for a counter, a value for a register) and check that the
model gives the answer the client actually got; back up when stuck. If no order works, the
history is *not linearizable*, and the result names the first call whose answer cannot be
explained and the calls it overlapped with. Calls that failed, or never answered, may or may not
have taken effect: the search is allowed to use them or leave them out.

**Lost updates** (:func:`lost_updates`) is the everyday symptom of a missing lock: two increments
of the same counter both read 4 and both wrote 5, so one of them vanished. On a counter that only
grows, two increments that returned the same value are proof of it, no search needed.

Both checks return objects that print a plain-language report (``print(result)``) and have
``explain()`` for the long version. Everything here uses only the public API and the standard
library; a history is plain data (``to_json()`` / ``History.from_json()``) so it can be saved with
a notebook and checked later.
"""

from __future__ import annotations

import itertools
from collections.abc import Collection, Hashable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

# The history is recording.py's (the lab keeps one below this module); re-exported here, where
# a lesson looks for what it checks.
from .recording import (
    INF,
    ErrorInfo,
    History,
    Operation,
    RecordedStub,
    error_kind,
    recorded,
)

__all__ = [
    "INF",
    "CounterModel",
    "ErrorInfo",
    "History",
    "LinearizabilityResult",
    "LostUpdate",
    "LostUpdateReport",
    "Model",
    "ObjectCheck",
    "Operation",
    "RecordedStub",
    "RegisterModel",
    "error_kind",
    "linearizable",
    "lost_updates",
    "recorded",
]


# -- models ------------------------------------------------------------------------------------


class _Unknown:
    def __repr__(self) -> str:
        return "<unknown>"


#: The output of a call that failed or never answered: anything goes.
UNKNOWN: Any = _Unknown()


class Model(Protocol):
    """A sequential specification: what one copy of the object would answer.

    ``kind(method)`` says what a method is (``None``: not part of the model); ``prepare`` turns
    a call into the model's input; ``step(state, kind, arg)`` returns the new state and the
    answer a single copy would give; ``matches`` compares it to what the client got. States must
    be hashable (the search remembers the ``(calls done, state)`` pairs it has seen).
    """

    name: str
    noun: str

    def kind(self, method: str) -> str | None: ...

    def is_read(self, kind: str) -> bool: ...

    def initial(self) -> Hashable: ...

    def prepare(self, op: Operation, kind: str) -> Hashable: ...

    def step(self, state: Hashable, kind: str, arg: Hashable) -> tuple[Hashable, Any]: ...

    def matches(self, kind: str, expected: Any, actual: Any) -> bool: ...


def _names(value: str | Collection[str]) -> frozenset[str]:
    return frozenset([value]) if isinstance(value, str) else frozenset(value)


class CounterModel:
    """A counter: ``increment(by=1)`` returns the new value, reads return the value.

    Map your method names with ``CounterModel(increment={"increment", "inc"},
    read={"value", "get"})``. ``decrement(by=1)`` subtracts. An increment that returns ``None``
    is taken as "returns nothing" (any value accepted); a read that returns ``None`` matches the
    initial value (``storage.get`` of a key never written).
    """

    name = "counter"
    noun = "the counter"

    def __init__(self, *, increment: str | Collection[str] = ("increment", "inc", "incr", "add"),
                 read: str | Collection[str] = ("value", "read", "get"),
                 decrement: str | Collection[str] = ("decrement", "dec", "decr"),
                 initial: int | float = 0) -> None:
        self.increments = _names(increment)
        self.reads = _names(read)
        self.decrements = _names(decrement)
        self.initial_value = initial

    def kind(self, method: str) -> str | None:
        if method in self.increments:
            return "increment"
        if method in self.decrements:
            return "decrement"
        if method in self.reads:
            return "read"
        return None

    def is_read(self, kind: str) -> bool:
        return kind == "read"

    def initial(self) -> Hashable:
        return self.initial_value

    def amount(self, op: Operation) -> int | float:
        if op.args:
            by = op.args[0]
        else:
            by = next((op.kwargs[k] for k in ("by", "amount", "n", "delta") if k in op.kwargs), 1)
        if isinstance(by, bool) or not isinstance(by, (int, float)):
            raise ValueError(f"call #{op.id} {op.call_text()}: a counter step must be a number")
        return by

    def prepare(self, op: Operation, kind: str) -> Hashable:
        if kind == "read":
            return None
        by = self.amount(op)
        return by if kind == "increment" else -by

    def step(self, state: Hashable, kind: str, arg: Hashable) -> tuple[Hashable, Any]:
        if kind == "read":
            return state, state
        new = state + arg  # type: ignore[operator]
        return new, new

    def matches(self, kind: str, expected: Any, actual: Any) -> bool:
        if actual is None:  # see the class docstring
            return kind != "read" or expected == self.initial_value
        return bool(expected == actual)

    def __repr__(self) -> str:
        return (f"CounterModel(increment={sorted(self.increments)}, read={sorted(self.reads)}, "
                f"decrement={sorted(self.decrements)})")


def _freeze(value: Any) -> Hashable:
    if isinstance(value, dict):
        return ("$dict", tuple(sorted(((_freeze(k), _freeze(v)) for k, v in value.items()),
                                      key=repr)))
    if isinstance(value, (list, tuple)):
        return tuple(_freeze(v) for v in value)
    if isinstance(value, (set, frozenset)):
        return frozenset(_freeze(v) for v in value)
    try:
        hash(value)
    except TypeError:
        return ("$repr", repr(value))
    return value


class RegisterModel:
    """A register: ``put(value)`` stores a value (its answer is ignored), reads return it.

    ``RegisterModel(write={"put", "write", "set"}, read={"get", "read"}, initial=None)``. The
    written value is the first argument (or ``value=``).
    """

    name = "register"
    noun = "the register"

    def __init__(self, *, write: str | Collection[str] = ("put", "write", "set"),
                 read: str | Collection[str] = ("get", "read", "value"),
                 initial: Any = None) -> None:
        self.writes = _names(write)
        self.reads = _names(read)
        self.initial_value = _freeze(initial)

    def kind(self, method: str) -> str | None:
        if method in self.writes:
            return "write"
        if method in self.reads:
            return "read"
        return None

    def is_read(self, kind: str) -> bool:
        return kind == "read"

    def initial(self) -> Hashable:
        return self.initial_value

    def prepare(self, op: Operation, kind: str) -> Hashable:
        if kind == "read":
            return None
        if op.args:
            return _freeze(op.args[0])
        if "value" in op.kwargs:
            return _freeze(op.kwargs["value"])
        raise ValueError(f"call #{op.id} {op.call_text()}: a register write needs a value")

    def step(self, state: Hashable, kind: str, arg: Hashable) -> tuple[Hashable, Any]:
        if kind == "read":
            return state, state
        return arg, UNKNOWN

    def matches(self, kind: str, expected: Any, actual: Any) -> bool:
        return expected is UNKNOWN or bool(_freeze(actual) == expected)

    def __repr__(self) -> str:
        return f"RegisterModel(write={sorted(self.writes)}, read={sorted(self.reads)})"


def _model_of(model: str | Model) -> Model:
    if model == "counter":
        return CounterModel()
    if model == "register":
        return RegisterModel()
    if isinstance(model, str):
        raise ValueError(f"model must be 'counter', 'register' or a model object, got {model!r}")
    return model


# -- the search --------------------------------------------------------------------------------


@dataclass(slots=True)
class _Entry:
    op: Operation
    kind: str
    arg: Hashable
    inv: float
    ret: float
    output: Any  # UNKNOWN for calls that failed or never answered
    required: bool
    bit: int = 0


def _entries(ops: Sequence[Operation], model: Model, cut: float = INF) -> list[_Entry]:
    """The calls of one object the search works on, as seen at logical time ``cut``.

    Calls started after ``cut`` are left out; calls that answer after it count as unanswered.
    Failed or unanswered reads are dropped (they changed nothing and told nothing).
    """
    entries: list[_Entry] = []
    for op in ops:
        if op.invoke_time >= cut:
            continue
        kind = model.kind(op.method)
        if kind is None:
            raise ValueError(
                f"call #{op.id} {op.call_text()} on {op.object!r}: {op.method!r} is not a method "
                f"of the {model.name} model {model!r}; pass a model that names it, e.g. "
                f"linearizable(history, CounterModel(increment={{'add'}}, read={{'total'}}))"
            )
        answered = op.status == "ok" and op.return_time is not None and op.return_time <= cut
        if not answered and model.is_read(kind):
            continue
        entries.append(_Entry(
            op=op, kind=kind, arg=model.prepare(op, kind), inv=op.invoke_time,
            ret=op.return_time if answered and op.return_time is not None else INF,
            output=op.result if answered else UNKNOWN, required=answered))
    entries.sort(key=lambda e: e.inv)
    for index, entry in enumerate(entries):
        entry.bit = 1 << index
    return entries


@dataclass(slots=True)
class _Outcome:
    status: Literal["ok", "violation", "unknown"]
    order: list[_Entry]
    nodes: int


def _candidates(entries: list[_Entry], mask: int) -> list[_Entry]:
    """Calls that may take effect next: started before every other open call answered.

    ``entries`` are sorted by start, so the scan begins at the first call not yet placed and
    stops at the first call that started after some open call had answered.
    """
    i = (~mask & (mask + 1)).bit_length() - 1  # the first call not yet placed
    first_return = INF
    window = []
    for e in entries[i:] if i else entries:
        if e.inv >= first_return:
            break
        if not mask & e.bit:
            window.append(e)
            if e.ret < first_return:
                first_return = e.ret
    return [e for e in window if e.inv < first_return]


def _required(entries: list[_Entry]) -> int:
    mask = 0
    for e in entries:
        if e.required:
            mask |= e.bit
    return mask


def _search(entries: list[_Entry], model: Model, budget: int) -> _Outcome:
    """Depth-first search for an order of ``entries`` that the model agrees with.

    A node is (the set of calls placed so far, as a bitmask; the model's state). Reaching a node
    seen before cannot lead anywhere new, so each node is expanded at most once.
    """
    required = _required(entries)
    if required == 0:
        return _Outcome("ok", [], 0)
    seen: set[tuple[int, Hashable]] = set()
    path: list[_Entry] = []
    stack: list[tuple[int, Hashable, Iterator[_Entry]]] = [
        (0, model.initial(), iter(_candidates(entries, 0)))]
    nodes = 0
    while stack:
        mask, state, todo = stack[-1]
        for e in todo:
            new_state, expected = model.step(state, e.kind, e.arg)
            if e.output is not UNKNOWN and not model.matches(e.kind, expected, e.output):
                continue
            new_mask = mask | e.bit
            if new_mask & required == required:
                path.append(e)
                return _Outcome("ok", path, nodes)
            key = (new_mask, new_state)
            if key in seen:
                continue
            seen.add(key)
            nodes += 1
            if nodes > budget:
                return _Outcome("unknown", [], nodes)
            path.append(e)
            stack.append((new_mask, new_state, iter(_candidates(entries, new_mask))))
            break
        else:
            stack.pop()
            if path:
                path.pop()
    return _Outcome("violation", [], nodes)


@dataclass(slots=True)
class _Frame:
    mask: int
    state: Hashable
    todo: Iterator[_Entry]
    success: bool = False
    child: tuple[int, Hashable] | None = None
    via: _Entry | None = None


def _states_before(entries: list[_Entry], model: Model, culprit: _Entry,
                   budget: int) -> set[Hashable] | None:
    """The states in which ``culprit`` could take effect, in the orders that explain every
    other call (the culprit's own answer ignored). ``None`` if that search is too large.

    Unlike :func:`_search` this explores every node (with memoized "can this node be completed?"
    answers), since it collects all the states, not just one order.
    """
    free = _Entry(culprit.op, culprit.kind, culprit.arg, culprit.inv, culprit.ret, UNKNOWN,
                  culprit.required, culprit.bit)
    work = [free if e is culprit else e for e in entries]
    required = _required(work)
    memo: dict[tuple[int, Hashable], bool] = {}
    found: set[Hashable] = set()
    stack = [_Frame(0, model.initial(), iter(_candidates(work, 0)))]
    nodes = 0
    while stack:
        frame = stack[-1]
        if frame.child is not None:
            if memo[frame.child]:
                frame.success = True
                if frame.via is free:
                    found.add(frame.state)
            frame.child = frame.via = None
        for e in frame.todo:
            new_state, expected = model.step(frame.state, e.kind, e.arg)
            if e.output is not UNKNOWN and not model.matches(e.kind, expected, e.output):
                continue
            new_mask = frame.mask | e.bit
            key = (new_mask, new_state)
            if new_mask & required == required:
                memo[key] = True
            if key in memo:
                if memo[key]:
                    frame.success = True
                    if e is free:
                        found.add(frame.state)
                continue
            nodes += 1
            if nodes > budget:
                return None
            frame.child, frame.via = key, e
            stack.append(_Frame(new_mask, new_state, iter(_candidates(work, new_mask))))
            break
        else:
            memo[(frame.mask, frame.state)] = frame.success
            stack.pop()
    return found


# -- results -----------------------------------------------------------------------------------


def _ids(ops: Iterable[Operation]) -> str:
    return ", ".join(f"#{op.id}" for op in ops)


@dataclass
class ObjectCheck:
    """The verdict for one object.

    ``status`` is ``"ok"`` (an order exists; ``order`` is one), ``"violation"`` (none exists;
    ``culprit`` is the first call whose answer cannot be explained, ``counterexample`` the calls
    to look at) or ``"unknown"`` (the search hit its budget).
    """

    object: str
    model: str
    status: Literal["ok", "violation", "unknown"]
    calls: int
    nodes: int
    order: list[Operation] = field(default_factory=list)
    culprit: Operation | None = None
    counterexample: list[Operation] = field(default_factory=list)
    expected: list[Any] = field(default_factory=list)
    explanation: str = ""

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def __bool__(self) -> bool:
        return self.ok

    def __str__(self) -> str:
        if self.status == "ok":
            return (f"{self.object!r}: linearizable ({self.calls} calls, {self.model} model): "
                    f"one order that explains every answer: {_ids(self.order[:12])}"
                    f"{' …' if len(self.order) > 12 else ''}")
        if self.status == "unknown":
            return f"{self.object!r}: {self.explanation}"
        return f"{self.object!r} is not linearizable ({self.model} model): {self.explanation}"

    def explain(self) -> str:
        lines = [str(self)]
        if self.counterexample:
            lines.append("The calls to look at:")
            lines += [f"  {op.describe()}" for op in self.counterexample]
        lines.append(f"(searched {self.nodes} states)")
        return "\n".join(lines)

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:
        p.text(str(self))


@dataclass
class LinearizabilityResult:
    """The verdict for a whole history: ``ok`` only if every object is linearizable.

    ``object`` names the first object that is not (or the only object checked); ``objects``
    has the verdict for each object.
    """

    status: Literal["ok", "violation", "unknown"]
    object: str | None
    objects: dict[str, ObjectCheck]

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def __bool__(self) -> bool:
        return self.ok

    def _first_bad(self) -> ObjectCheck | None:
        return None if self.object is None or self.ok else self.objects[self.object]

    @property
    def explanation(self) -> str:
        bad = self._first_bad()
        return "" if bad is None else bad.explanation

    @property
    def culprit(self) -> Operation | None:
        bad = self._first_bad()
        return None if bad is None else bad.culprit

    @property
    def counterexample(self) -> list[Operation]:
        bad = self._first_bad()
        return [] if bad is None else bad.counterexample

    def __str__(self) -> str:
        if not self.objects:
            return "Linearizable: the history has no calls."
        if self.ok:
            total = sum(c.calls for c in self.objects.values())
            return (f"Linearizable: all {total} calls on {len(self.objects)} object(s) can be "
                    "explained by one copy of each object answering one call at a time.")
        bad = self._first_bad()
        assert bad is not None
        others = [label for label, c in self.objects.items() if not c.ok and label != bad.object]
        more = f" (also: {', '.join(map(repr, others))})" if others else ""
        head = "NOT linearizable" if self.status == "violation" else "Could not decide"
        return f"{head}. {bad}{more}"

    def explain(self) -> str:
        if self.ok:
            return "\n".join([str(self), *(str(c) for c in self.objects.values())])
        lines = [c.explain() for c in self.objects.values() if not c.ok]
        fine = [label for label, c in self.objects.items() if c.ok]
        if fine:
            lines.append(f"Linearizable: {', '.join(map(repr, fine))}")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return f"<LinearizabilityResult {self.status} object={self.object!r}>"

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:
        p.text(str(self))


def _sorted(values: Iterable[Any]) -> list[Any]:
    items = list(values)
    try:
        return sorted(items)
    except TypeError:
        return sorted(items, key=repr)


def _one_of(values: list[Any]) -> str:
    """``5``, ``4 or 5``, ``between 3 and 9`` (a run of integers), ``1 or 2 or 3 …``."""
    values = _sorted(values)
    if (len(values) > 3 and all(isinstance(v, int) and not isinstance(v, bool) for v in values)
            and values[-1] - values[0] == len(values) - 1):
        return f"between {values[0]} and {values[-1]}"
    return " or ".join(repr(v) for v in values[:6]) + (" …" if len(values) > 6 else "")


def _check_object(label: str, ops: list[Operation], model: Model, budget: int) -> ObjectCheck:
    entries = _entries(ops, model)
    outcome = _search(entries, model, budget)
    calls = len(ops)
    if outcome.status == "ok":
        return ObjectCheck(label, model.name, "ok", calls, outcome.nodes,
                           order=[e.op for e in outcome.order])
    if outcome.status == "unknown":
        return ObjectCheck(
            label, model.name, "unknown", calls, outcome.nodes,
            explanation=(f"too large to check ({model.name} model): {calls} calls, "
                         f"{outcome.nodes} states explored (max_nodes={budget}) without "
                         "finding an order or ruling one out. Check fewer calls or fewer "
                         "concurrent clients, or raise max_nodes."))
    # Find the first answer that cannot be explained: the shortest prefix of the history (cut
    # at an answer) that is not linearizable. Linearizability is prefix-closed, so bisect.
    cuts = sorted(e.ret for e in entries if e.required)
    lo, hi = 0, len(cuts) - 1  # cuts[hi] fails (the whole history fails)
    nodes = outcome.nodes
    exact = True
    while lo < hi:
        mid = (lo + hi) // 2
        sub = _search(_entries(ops, model, cuts[mid]), model, budget)
        nodes += sub.nodes
        if sub.status == "violation":
            hi = mid
        elif sub.status == "ok":
            lo = mid + 1
        else:
            exact = False
            break
    cut = cuts[hi]
    prefix = _entries(ops, model, cut)
    culprit_entry = next(e for e in prefix if e.ret == cut)
    culprit = culprit_entry.op
    states = _states_before(prefix, model, culprit_entry, budget)
    overlapping = [e.op for e in prefix if e.op is not culprit and e.op.overlaps(culprit)]
    before = [e.op for e in prefix if e.ret < culprit.invoke_time and not model.is_read(e.kind)]
    counterexample = sorted({op.id: op for op in [*before[-1:], *overlapping, culprit]}.values(),
                            key=lambda op: op.invoke_time)
    expected: list[Any] = []
    text = [f"call #{culprit.id} {culprit.call_text()} {culprit.outcome_text()} "
            "cannot be explained."]
    if states:
        shown = _sorted(states)
        answers = []
        for state in shown:
            answer = model.step(state, culprit_entry.kind, culprit_entry.arg)[1]
            if answer is not UNKNOWN and answer not in answers:
                answers.append(answer)
        expected = answers
        where, should = _one_of(shown), _one_of(answers)
        text.append(f"In every order that explains the other calls, {model.noun} was {where} "
                    f"when #{culprit.id} could take effect" +
                    (f", so it should have returned {should}." if answers else "."))
    elif states is not None:
        text.append(f"No order of the other calls leaves room for #{culprit.id} at all.")
    if overlapping:
        text.append(f"It overlapped with {_ids(overlapping)}; every order of these was tried.")
    else:
        text.append(f"It overlapped with no other call: "
                    f"{_ids(before[-3:]) or 'nothing'} had already finished before it started.")
    if exact and hi > 0:
        text.append("Every answer that arrived before it can be explained.")
    return ObjectCheck(label, model.name, "violation", calls, nodes, culprit=culprit,
                       counterexample=counterexample, expected=expected,
                       explanation=" ".join(text))


def linearizable(history: History | Iterable[Operation], model: str | Model = "counter", *,
                 object: str | None = None, max_nodes: int = 200_000) -> LinearizabilityResult:
    """Check that each object of ``history`` behaved like one copy answering one call at a time.

    ``model`` is ``"counter"``, ``"register"``, or a model object such as
    ``CounterModel(increment={"add"}, read={"total"})``. ``object`` checks only that object.
    ``max_nodes`` bounds the search per object: past it the verdict is ``"unknown"`` ("too large
    to check"), never a guess.
    """
    spec = _model_of(model)
    ops = list(history)
    labels = list(dict.fromkeys(op.object for op in ops))
    if object is not None:
        if object not in labels:
            raise KeyError(f"no calls on {object!r} in this history (objects: {labels})")
        labels = [object]
    checks = {label: _check_object(label, [op for op in ops if op.object == label], spec,
                                   max_nodes) for label in labels}
    bad = [c for c in checks.values() if not c.ok]
    if any(c.status == "violation" for c in bad):
        status: Literal["ok", "violation", "unknown"] = "violation"
        first: str | None = next(c for c in bad if c.status == "violation").object
    elif bad:
        status, first = "unknown", bad[0].object
    else:
        status, first = "ok", (labels[0] if len(labels) == 1 else None)
    return LinearizabilityResult(status, first, checks)


# -- lost updates ------------------------------------------------------------------------------


@dataclass(frozen=True)
class LostUpdate:
    """Two increments of one object that returned the same value: one overwrote the other."""

    object: str
    a: Operation
    b: Operation
    read: Any
    wrote: Any

    @property
    def overlapping(self) -> bool:
        return self.a.overlaps(self.b)

    def __str__(self) -> str:
        if self.read is not None:
            core = (f"calls #{self.a.id} and #{self.b.id} both read {self.read!r} and both wrote "
                    f"{self.wrote!r}: one increment was lost")
        else:
            core = (f"calls #{self.a.id} {self.a.call_text()} and #{self.b.id} "
                    f"{self.b.call_text()} both returned {self.wrote!r}: a counter that only "
                    "grows cannot reach the same value twice, so one increment was lost")
        return f"{self.object!r}: {core}"

    def explain(self) -> str:
        if self.overlapping:
            how = (f"They overlapped (#{self.a.id} from t={self.a.invoke_time} to "
                   f"{self.a.return_time}, #{self.b.id} from t={self.b.invoke_time} to "
                   f"{self.b.return_time}): each read the counter before the other wrote it back, "
                   "the classic read-modify-write race.")
        else:
            how = (f"They did not even overlap: #{self.a.id} had answered (t={self.a.return_time}) "
                   f"before #{self.b.id} started (t={self.b.invoke_time}), yet #{self.b.id} did "
                   "not see its write (was a write lost, e.g. in a reset?).")
        return f"{self}.\n  {self.a.describe()}\n  {self.b.describe()}\n  {how}"


class LostUpdateReport(list[LostUpdate]):
    """A list of :class:`LostUpdate` findings that prints as a report."""

    def __str__(self) -> str:
        if not self:
            return "No lost updates: no two increments of an object returned the same value."
        objects = len({finding.object for finding in self})
        lines = [f"{len(self)} lost update(s) on {objects} object(s):"]
        lines += [f"  {finding}" for finding in self[:20]]
        if len(self) > 20:
            lines.append(f"  … {len(self) - 20} more (see .explain() or the list itself)")
        return "\n".join(lines)

    def explain(self) -> str:
        if not self:
            return str(self)
        return "\n".join(finding.explain() for finding in self)

    def __repr__(self) -> str:
        return f"<LostUpdateReport {len(self)} finding(s)>"

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:
        p.text(str(self))


def lost_updates(history: History | Iterable[Operation],
                 model: CounterModel | None = None) -> LostUpdateReport:
    """Find pairs of completed increments of the same object that returned the same value.

    On a counter that only grows, that can only happen if one increment overwrote the other
    (both read the same old value). Only increments by a positive amount are compared. For a
    group of k increments with equal results, the k - 1 consecutive pairs are reported (k - 1
    increments were lost). ``model`` names the increment methods (default: ``CounterModel()``).
    """
    spec = model or CounterModel()
    groups: dict[tuple[str, Hashable], list[tuple[Operation, Any]]] = {}
    for op in history:
        if not op.ok or spec.kind(op.method) != "increment" or op.result is None:
            continue
        try:
            by = spec.amount(op)
        except ValueError:
            continue
        if by <= 0:
            continue
        groups.setdefault((op.object, _freeze(op.result)), []).append((op, by))
    report = LostUpdateReport()
    for (label, _), calls in groups.items():
        calls.sort(key=lambda item: item[0].invoke_time)
        for (a, by_a), (b, by_b) in itertools.pairwise(calls):
            numeric = isinstance(a.result, (int, float)) and not isinstance(a.result, bool)
            read = a.result - by_a if by_a == by_b and numeric else None
            report.append(LostUpdate(label, a, b, read, a.result))
    report.sort(key=lambda f: (f.b.invoke_time, f.a.invoke_time))
    return report
