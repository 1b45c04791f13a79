"""Traces and replay: export exactly what happened, and run it again.

A lab made with ``Lab(record=True)`` keeps three things:

- the **client calls** (every stub call made from outside the objects, with its arguments and
  its outcome), which are also the lab's :class:`~durable_lab.check.History`;
- the **transitions** the runtime took, in order (each admission through an input gate,
  each reply released, each flush and commit), the same vocabulary as ``lab.choices()``;
- the **events**, for reading.

``lab.trace()`` returns all of it as a JSON-serialisable dict. ``await Lab.replay(trace,
bindings={...})`` builds a fresh paused lab with the same seed and model, re-issues the client
calls at the same points, and takes the recorded transitions one by one. If the code behaves
the same, every transition is available when its turn comes and every call returns what it
returned before; otherwise the replay stops at the **first divergence** and says what was
expected and what was possible instead (or which call returned something else).

Limits (docs/semantics.md): timers (alarms, ``sleep``) are not replayed (replay a trace from a
lab without them, or with a manual clock that is not advanced); replay runs on memory storage;
values that cannot be stored (class instances) cannot be recorded as arguments.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from . import values
from .http import Request

__all__ = ["TRACE_VERSION", "ReplayResult", "decode_value", "encode_value", "replay"]

TRACE_VERSION = 1


def encode_value(value: Any) -> str:
    """A value as base64 text (the storage encoding): JSON-safe and exact (tuples, sets...)."""
    return base64.b64encode(values.encode(value, what="a recorded value")).decode()


def decode_value(text: str) -> Any:
    return values.decode(base64.b64decode(text))


def encode_call_args(kind: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
    if kind == "fetch":
        request = args[0]
        return {"request": {"url": request.url, "method": request.method,
                            "headers": dict(request.headers),
                            "body": encode_value(request.body)}}
    try:
        return {"args": encode_value(list(args)), "kwargs": encode_value(kwargs)}
    except (TypeError, ValueError):
        return {"unrecordable": repr((args, kwargs))}


def decode_call_args(record: dict[str, Any]) -> tuple[tuple[Any, ...], dict[str, Any]]:
    if "request" in record:
        r = record["request"]
        return (Request(r["url"], method=r["method"], headers=r["headers"],
                        body=decode_value(r["body"])),), {}
    if "unrecordable" in record:
        raise ValueError(f"this call's arguments could not be recorded: {record['unrecordable']}")
    return tuple(decode_value(record["args"])), decode_value(record["kwargs"])


def encode_outcome(fut: asyncio.Future[Any]) -> dict[str, Any]:
    if fut.cancelled():
        return {"cancelled": True}
    error = fut.exception()
    if error is not None:
        return {"error": f"{type(error).__name__}: {error}"}
    result = fut.result()
    if hasattr(result, "status") and hasattr(result, "headers"):  # a Response
        return {"response": {"status": result.status, "body": encode_value(result.body)}}
    try:
        return {"result": encode_value(result)}
    except (TypeError, ValueError):
        return {"result_repr": repr(result)}


@dataclass
class ReplayResult:
    """What ``Lab.replay`` found. ``ok`` is True when the run matched the trace throughout."""

    ok: bool
    transitions_replayed: int
    calls_replayed: int
    divergence: str | None = None
    divergence_index: int | None = None
    lab: Any = field(default=None, repr=False)  # the replay's Lab, with keep_lab=True

    def __str__(self) -> str:
        if self.ok:
            return (f"replay matched: {self.transitions_replayed} transitions, "
                    f"{self.calls_replayed} calls, same results")
        return f"replay diverged at step {self.divergence_index}: {self.divergence}"

    def explain(self) -> str:
        return str(self)


def _matches(choice: Any, transition: dict[str, Any]) -> bool:
    if choice.kind != transition["kind"] or choice.object != transition["object"]:
        return False
    holder = transition["holder"]
    if holder.startswith("delivery "):
        return choice.delivery == int(holder.split()[1])
    return True


def _find_class(name: str, meta: dict[str, Any]) -> type:
    import importlib

    module_name, qualname = meta.get("module"), meta.get("class", "")
    try:
        target: Any = importlib.import_module(module_name) if module_name else None
        for part in qualname.split("."):
            target = getattr(target, part)
    except (ImportError, AttributeError, TypeError):
        raise ValueError(
            f"cannot find class {qualname!r} (module {module_name!r}) for binding {name!r}: "
            f"pass it explicitly, e.g. Lab.replay(trace, {{{name!r}: {qualname.split('.')[-1]}}})"
        ) from None
    return target


async def replay(trace: dict[str, Any], bindings: dict[str, type] | None = None, *,
                 keep_lab: bool = False, make_lab: Callable[..., Any]) -> ReplayResult:
    """Run ``trace`` again on the classes in ``bindings``; report the first divergence.

    ``make_lab`` is the ``Lab`` class (``Lab.replay`` hands itself down: this module stands
    below the lab, whose ``trace()`` writes the format read here)."""
    if bindings is None and isinstance(trace, dict):
        bindings = {name: _find_class(name, meta)
                    for name, meta in trace.get("bindings", {}).items()}
    assert bindings is not None

    if not isinstance(trace, dict) or trace.get("version") != TRACE_VERSION:
        raise ValueError(f"not a durable_lab trace (version {TRACE_VERSION}): "
                         f"got {type(trace).__name__} with version "
                         f"{getattr(trace, 'get', lambda k: None)('version')!r}")
    missing = sorted(set(trace["bindings"]) - set(bindings))
    if missing:
        raise ValueError(f"replay needs a class for every binding of the trace; missing: "
                         f"{', '.join(missing)}")
    # (Recording as many calls as the trace has: a long trace must not stop the recording.)
    lab = make_lab(storage="memory", seed=trace["seed"], model=trace["model"],
                   record=min(10_000_000, max(10_000, len(trace["calls"]) + 1)),
                   clock="manual")
    namespaces = {name: lab.bind(name, bindings[name], sql=meta.get("sql", False))
                  for name, meta in trace["bindings"].items()}
    lab.scheduler.note_paused_calls = False  # replay's own pause: not news to the learner
    lab.pause()
    calls = sorted(trace["calls"], key=lambda c: (c["position"], c["index"]))
    transitions = trace["transitions"]
    replies: dict[int, asyncio.Future[Any]] = {}
    next_call = 0

    def issue_calls_up_to(position: int) -> None:
        nonlocal next_call
        while next_call < len(calls) and calls[next_call]["position"] <= position:
            call = calls[next_call]
            namespace = namespaces[call["binding"]]
            stub = namespace.get(namespace.idFromString(call["id"]) if call["name"] is None
                                 else namespace.idFromName(call["name"]))
            args, kwargs = decode_call_args(call)
            if call["kind"] == "fetch":
                fut = stub.fetch(args[0])
            else:
                fut = getattr(stub, call["method"])(*args, **kwargs)
            fut.add_done_callback(lambda f: f.cancelled() or f.exception())
            replies[call["index"]] = fut
            next_call += 1

    result: ReplayResult | None = None
    try:
        for index, transition in enumerate(transitions):
            issue_calls_up_to(index)
            await lab.scheduler.settle()
            options = lab.choices()
            match = next((c for c in options if _matches(c, transition)), None)
            if match is None:
                wanted = f"{transition['kind']} {transition['holder']} at {transition['object']}"
                possible = "; ".join(c.description for c in options) or "nothing"
                result = ReplayResult(False, index, next_call,
                                      f"expected to {wanted.strip()}, but the possible steps "
                                      f"were: {possible}", index)
                break
            await lab.choose(match.index)
        if result is None:
            issue_calls_up_to(len(transitions) + 1)
            lab.resume()
            await lab.wait_idle()
            for call in calls:
                fut = replies.get(call["index"])
                if fut is None or not fut.done() or "outcome" not in call:
                    continue
                now = encode_outcome(fut)
                if now != call["outcome"]:
                    result = ReplayResult(
                        False, len(transitions), len(replies),
                        f"call #{call['index']} {call['method']}() answered "
                        f"{_show(now)} instead of {_show(call['outcome'])}", len(transitions))
                    break
        if result is None:
            result = ReplayResult(True, len(transitions), len(replies))
    finally:
        if keep_lab:
            result.lab = lab  # type: ignore[union-attr]
        else:
            if lab.paused:
                lab.resume()
            await lab.close()
    return result


def _show(outcome: dict[str, Any]) -> str:
    if "result" in outcome:
        return repr(decode_value(outcome["result"]))
    if "error" in outcome:
        return f"an error ({outcome['error']})"
    return repr(outcome)
