"""The linter and the type checker, run as part of the test command (issue 18, item 2).

``ruff check`` over the whole tree (the notebooks included) and ``mypy`` over the packages,
each with the configuration in pyproject.toml, must find nothing: a finding fails the suite
with the tool's own report. Both come with the ``test`` extra; they run from this Python, as a
developer's ``scripts/test.sh`` does, so the versions are the ones pyproject pins.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=600, check=False)


def test_ruff_finds_nothing_in_the_tree():
    result = run("ruff", "check", "--output-format", "concise", ".")
    assert result.returncode == 0, f"ruff check found:\n{result.stdout}\n{result.stderr}"


@pytest.mark.slow
def test_mypy_finds_nothing_in_the_packages():
    # pyproject's [tool.mypy] names the packages (files) and the strictness.
    result = run("mypy")
    assert result.returncode == 0, f"mypy found:\n{result.stdout}\n{result.stderr}"
    assert "Success: no issues found" in result.stdout, result.stdout
