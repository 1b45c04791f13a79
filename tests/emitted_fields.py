"""Every event the runtime emits, during the whole test suite, checked against its declaration.

The runtime builds events from positional values (``bus.emit(StorageOp, label, id, 3, "get",
keys, "hit")``: keywords cost three times as much). A value given in the wrong place would
build a wrong but valid-looking event, so ``conftest.py`` wraps ``EventBus.emit`` for the
whole suite with :func:`check`: the number of values, and each value's type against the field's
annotation (``int`` is not ``bool``, ``tuple[str, ...]`` holds strings). A mismatch is kept in
:data:`MISMATCHES` and fails the test that caused it. Two fields of the same type swapped are
not caught here; the tests on what each event says are.
"""

from __future__ import annotations

import dataclasses
import typing
from functools import cache
from typing import Any

from durable_lab.events import RuntimeEvent

MISMATCHES: list[str] = []


def _accepts(annotation: Any, value: Any) -> bool:
    if annotation is bool:
        return isinstance(value, bool)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if annotation is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if annotation is str:
        return isinstance(value, str)
    if typing.get_origin(annotation) is tuple:
        (item, _ellipsis) = typing.get_args(annotation)
        return isinstance(value, tuple) and all(_accepts(item, v) for v in value)
    raise AssertionError(f"no check for an event field annotated {annotation!r}")


@cache
def _declared(event_type: type[RuntimeEvent]) -> tuple[tuple[str, Any], ...]:
    hints = typing.get_type_hints(event_type)
    # seq and time are the bus's own; the emitting code gives the rest.
    return tuple((f.name, hints[f.name]) for f in dataclasses.fields(event_type))[2:]


def check(event_type: type[RuntimeEvent], values: tuple[Any, ...]) -> None:
    """Record in MISMATCHES whatever about ``values`` disagrees with ``event_type``'s fields."""
    declared = _declared(event_type)
    if len(values) != len(declared):
        MISMATCHES.append(f"{event_type.__name__}: {len(values)} values for "
                          f"{len(declared)} fields {[n for n, _ in declared]}")
        return
    for (name, annotation), value in zip(declared, values, strict=True):
        if not _accepts(annotation, value):
            MISMATCHES.append(f"{event_type.__name__}.{name} ({annotation}) got {value!r}")
