"""Turning what a learner passes (a stub, an id, a label) into an object label and back."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from durable_lab import DurableObjectId, DurableObjectStub

if TYPE_CHECKING:
    from durable_lab import Lab

__all__ = ["label_of", "target_for"]


def label_of(target: Any) -> str | None:
    """The events' ``object`` label of a stub, an id or a label string (None: none given)."""
    if target is None:
        return None
    if isinstance(target, str):
        return target
    if isinstance(target, DurableObjectStub):
        target = target.id
    if isinstance(target, DurableObjectId):
        name = target.name if target.name is not None else target.toString()[:8]
        return f"{target.namespace}:{name}"
    raise TypeError(f"expected a stub, an id or an object label like 'COUNTER:room-1', "
                    f"got {type(target).__name__}: {target!r}")


def target_for(lab: Lab, label: str, object_id: str = "") -> Any:
    """What ``lab.faults`` accepts for ``label``: its id when known, else the label itself."""
    namespace, _, _name = label.partition(":")
    if object_id:
        return getattr(lab.env, namespace).idFromString(object_id)
    return label
