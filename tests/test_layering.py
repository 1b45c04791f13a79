"""The core never imports UI or notebook packages; the public API is what __all__ says."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import durable_lab

UI_PACKAGES = {"ipywidgets", "bokeh", "jupyter_bokeh", "traitlets", "IPython", "ipykernel"}


def test_importing_the_core_imports_no_ui_package():
    code = (
        "import sys, durable_lab, durable_lab.tour, durable_lab.faults; "
        "print(sorted({m.split('.')[0] for m in sys.modules}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded = set(eval(out.stdout))
    assert not (UI_PACKAGES & loaded), UI_PACKAGES & loaded


def test_every_public_name_exists_and_is_documented():
    for name in durable_lab.__all__:
        obj = getattr(durable_lab, name)
        assert obj.__doc__, f"durable_lab.{name} has no docstring"


# -- one direction: each module of durable_lab imports only modules below it -------------------

#: The runtime's floors, from the ground up (docs/architecture.md draws them). A module may
#: import a module of a LOWER floor only: not one of its own floor, not one above. What a lower
#: module needs from above is handed down to it (services.LabServices, make_lab=...).
LAYERS: list[tuple[str, ...]] = [
    # the vocabulary: no import of the runtime at all
    ("errors", "events", "ids", "http", "_futures", "_sql_driver"),
    ("values", "attribution", "_folder"),
    ("bus", "clock", "snapshot", "recording"),
    # stepping, gates, turns
    ("scheduler",),
    ("_gates",),
    ("_turns",),
    # storage
    ("sql", "_backends"),
    ("services", "_cache"),
    ("_sql_engine",),
    ("alarms",),
    ("storage",),
    ("_naive", "websockets"),
    ("objects",),
    # one object, its callers, the lab
    ("_host",),
    ("faults", "network", "peek"),
    ("namespace", "trace"),
    ("lab",),
    # what is built on the lab
    ("check", "workload"),
    ("explore",),
    ("__init__",),
    ("tour", "exercises._core", "exercises._statements", "exercises.helpers"),
    ("exercises.batcher", "exercises.bulk", "exercises.chat", "exercises.contention",
     "exercises.counter", "exercises.leaderboard", "exercises.ledger", "exercises.placement",
     "exercises.ratelimit", "exercises.seats"),
    ("exercises.__init__",),
]

PACKAGE = Path(durable_lab.__file__).parent


def _module_name(path: Path) -> str:
    return ".".join(path.relative_to(PACKAGE).with_suffix("").parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _imports(name: str, path: Path, known: set[str]) -> set[str]:
    """The modules of durable_lab that ``name`` imports, wherever the import stands (top level,
    under ``if TYPE_CHECKING:``, inside a function)."""
    package = name.split(".")[:-1]  # (a package's __init__ counts as a module of the package)
    found: set[str] = set()

    def add(parts: list[str]) -> None:
        candidate = ".".join(parts) or "__init__"
        if candidate in known:
            found.add(candidate)
        elif f"{candidate}.__init__" in known:
            found.add(f"{candidate}.__init__")

    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "durable_lab":
                    add(alias.name.split(".")[1:])
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[:len(package) - node.level + 1] if node.level > 1 else package
            elif node.module and node.module.split(".")[0] == "durable_lab":
                base = []
            else:
                continue
            module = base + (node.module.split(".") if node.module else [])
            if node.module and node.module.split(".")[0] == "durable_lab" and not node.level:
                module = node.module.split(".")[1:]
            for alias in node.names:  # "from . import values": the module values
                if ".".join([*module, alias.name]) in known:
                    add([*module, alias.name])
                else:
                    add(module)
    found.discard(name)
    return found


def test_every_module_of_durable_lab_has_one_floor():
    floors = [m for layer in LAYERS for m in layer]
    assert len(floors) == len(set(floors)), "a module stands on two floors"
    assert sorted(floors) == sorted(_modules()), (
        "LAYERS must name every module of durable_lab once: "
        f"not on a floor {sorted(set(_modules()) - set(floors))}, "
        f"no such module {sorted(set(floors) - set(_modules()))}")


def test_every_import_in_durable_lab_runs_down():
    floor = {m: i for i, layer in enumerate(LAYERS) for m in layer}
    modules = _modules()
    upward = []
    for name, path in modules.items():
        for target in sorted(_imports(name, path, set(modules))):
            if floor[target] >= floor[name]:
                upward.append(f"{name} (floor {floor[name]}) imports {target} "
                              f"(floor {floor[target]})")
    assert not upward, "imports that do not run down:\n" + "\n".join(upward)


def test_the_layer_check_sees_every_kind_of_import(tmp_path):
    """The walk finds an import at top level, under TYPE_CHECKING and inside a function."""
    source = tmp_path / "probe.py"
    source.write_text(
        "from typing import TYPE_CHECKING\n"
        "from . import values\n"
        "from .bus import EventBus\n"
        "if TYPE_CHECKING:\n"
        "    from .lab import Lab\n"
        "def f():\n"
        "    from ._host import ObjectHost\n"
        "    import durable_lab.namespace\n")
    found = _imports("probe", source, set(_modules()) | {"probe"})
    assert found == {"values", "bus", "lab", "_host", "namespace"}


def test_the_architecture_doc_lists_every_module():
    doc = (PACKAGE.parent / "docs" / "architecture.md").read_text()
    missing = [name for name in _modules()
               if not name.endswith("__init__") and f"`{name.split('.')[-1]}.py`" not in doc]
    assert not missing, f"docs/architecture.md's module map does not list: {missing}"


def test_the_architecture_doc_draws_the_floors_of_layers():
    """docs/architecture.md's floor diagram puts every module on its floor in ``LAYERS``."""
    doc = (PACKAGE.parent / "docs" / "architecture.md").read_text()
    block = doc.split("### Floors", 1)[1].split("```", 2)[1]
    floors: dict[int, str] = {}
    current = None
    for line in block.splitlines():
        head = line.split(maxsplit=1)
        if head and head[0].isdigit():
            current = int(head[0])
            floors[current] = head[1] if len(head) > 1 else ""
        elif current is not None:
            floors[current] += " " + line.strip()
    assert sorted(floors) == list(range(len(LAYERS))), sorted(floors)
    for index, layer in enumerate(LAYERS):
        words = set(floors[index].replace("exercises/:", " ").replace("/", " ").split())
        for module in layer:
            name = module.split(".")[-1]
            assert name in words, f"{module} is not drawn on floor {index}: {floors[index]!r}"
