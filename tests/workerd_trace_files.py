"""Reading the workerd traces recorded by tests/workerd_traces/record.mjs (issue #20).

A trace file has a header (``#`` lines), then one section per flavour (``[mem-kv]``,
``[disk-sqlite]``...), each a few ``label value`` lines. ``trace(name, flavour)`` gives one
section as {label: value}.
"""

from __future__ import annotations

from pathlib import Path

TRACES = Path(__file__).parent / "workerd_traces"


def raw_sections(name: str) -> dict[str, list[str]]:
    """Every flavour's section of the trace ``name``, as its lines."""
    found: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in (TRACES / f"{name}.txt").read_text().splitlines():
        if line.startswith("#") or not line.strip():
            continue
        if line.startswith("[") and line.endswith("]"):
            current = found.setdefault(line[1:-1], [])
            continue
        assert current is not None, f"{name}.txt: a line before any [flavour]"
        current.append(line)
    return found


def sections(name: str) -> dict[str, dict[str, str]]:
    """Every flavour's section of the trace ``name``, as {label: value}."""
    return {flavour: dict(line.partition(" ")[::2] for line in lines)
            for flavour, lines in raw_sections(name).items()}


def flavour_of(storage: str, engine: str) -> str:
    """The recorded flavour matching a lab: ``storage`` memory/sqlite (workerd in memory/on
    disk), ``engine`` kv/sql (a KV-backed or SQLite-backed class)."""
    return ("mem" if storage == "memory" else "disk") + "-" + (
        "kv" if engine == "kv" else "sqlite")


def trace(name: str, storage: str, engine: str) -> dict[str, str]:
    """The section recorded on the flavour matching a lab, as {label: value}."""
    return sections(name)[flavour_of(storage, engine)]


def trace_lines(name: str, storage: str, engine: str) -> list[str]:
    """The section recorded on the flavour matching a lab, as its lines."""
    return raw_sections(name)[flavour_of(storage, engine)]
