"""Shared fixtures: a lab on each storage backend, and a record list for story-style tests."""

from __future__ import annotations

import pytest

from durable_lab import Lab


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
