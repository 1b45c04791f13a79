"""Fixtures for the widgets tests (helpers live in lab_fixtures.py, importable by name)."""

from __future__ import annotations

import pytest

pytest.importorskip("ipywidgets")
pytest.importorskip("jupyter_bokeh")

from lab_fixtures import lab  # noqa: F401
