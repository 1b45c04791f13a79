"""Reading the workerd traces recorded by tests/workerd_traces/record.mjs (issue #20).

A trace file has a header (``#`` lines), then one section per flavour (``[mem-kv]``,
``[disk-sqlite]``...), each a few ``label value`` lines. ``trace(name, flavour)`` gives one
section as {label: value}.
"""

from __future__ import annotations

from pathlib import Path

TRACES = Path(__file__).parent / "workerd_traces"


def sections(name: str) -> dict[str, dict[str, str]]:
    """Every flavour's section of the trace ``name``."""
    found: dict[str, dict[str, str]] = {}
    current: dict[str, str] | None = None
    for line in (TRACES / f"{name}.txt").read_text().splitlines():
        if line.startswith("#") or not line.strip():
            continue
        if line.startswith("[") and line.endswith("]"):
            current = found.setdefault(line[1:-1], {})
            continue
        assert current is not None, f"{name}.txt: a line before any [flavour]"
        label, _, value = line.partition(" ")
        current[label] = value
    return found


def trace(name: str, storage: str, engine: str) -> dict[str, str]:
    """The section recorded on the flavour matching a lab: ``storage`` memory/sqlite (workerd
    in memory/on disk), ``engine`` kv/sql (a KV-backed or SQLite-backed class)."""
    flavour = ("mem" if storage == "memory" else "disk") + "-" + (
        "kv" if engine == "kv" else "sqlite")
    return sections(name)[flavour]
