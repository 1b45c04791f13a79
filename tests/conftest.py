"""Shared fixtures: a lab on each storage backend, and a record list for story-style tests."""

from __future__ import annotations

import pytest
from emitted_fields import MISMATCHES, check

from durable_lab import Lab
from durable_lab.bus import EventBus


@pytest.fixture(params=["memory", "sqlite"])
async def lab(request, tmp_path):
    """A lab on the in-memory backend and on SQLite files (the same tests run on both)."""
    if request.param == "memory":
        lab = Lab(storage="memory", seed=1)
    else:
        lab = Lab(tmp_path / "lab", seed=1)
    try:
        yield lab
    finally:
        await lab.close()


@pytest.fixture
async def memory_lab():
    lab = Lab(storage="memory", seed=1)
    try:
        yield lab
    finally:
        await lab.close()


@pytest.fixture
def record():
    return []


@pytest.fixture(autouse=True)
def emitted_events_match_their_fields(monkeypatch):
    """Fail any test during which the runtime emitted a value in the wrong field (see
    tests/emitted_fields.py): events are built from positional values."""
    real_emit = EventBus.emit

    def checked_emit(self, event_type, *values):
        check(event_type, values)
        real_emit(self, event_type, *values)

    monkeypatch.setattr(EventBus, "emit", checked_emit)
    MISMATCHES.clear()
    yield
    found = list(MISMATCHES)
    MISMATCHES.clear()
    assert not found, "events emitted with values in the wrong fields:\n" + "\n".join(found)
