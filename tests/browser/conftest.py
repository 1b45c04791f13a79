"""Registers the ``browser`` marker (pytest runs with --strict-markers)."""

from __future__ import annotations


def pytest_configure(config):
    # (the marker itself is registered in pyproject.toml)
    return None
