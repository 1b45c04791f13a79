"""The lesson notebooks as the tests see them: built from their sources in ``course/``.

The files in ``notebooks/`` are what a learner opens, and a learner's JupyterLab autosaves into
them (outputs, execution counts, edited exercise cells). So the tests never run or inspect the
working files: they build the notebooks in memory from their sources, exactly as
``python scripts/build_lessons.py`` would write them.

The exercises' starters and solutions are modules (``course/starters/exKEY.py``,
``course/solutions/exKEY.py``); :func:`exercise_subject` loads one afresh (a new class per call,
as a learner's re-run cell makes), and :func:`subject_from` makes a class from source text the
way a lesson's kernel would (with the names a lesson imports), for the wrong answers the tests
write themselves.

One test still compares the files with the generator (:func:`stale`), and it must tell a stale
commit from a learner's autosave:

- a file in the working tree that equals the generator's output is up to date (a fresh clone;
  or a developer who regenerated and has not committed yet);
- otherwise, inside a git checkout, the version *as committed* (``git show HEAD:<path>``) is
  what counts: a learner's outputs and edits in the working file are not a stale commit;
- outside git (a copied folder, an unpacked archive) the working file is all there is.
"""

from __future__ import annotations

import importlib.util
import itertools
import linecache
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BUILD = ROOT / "scripts" / "build_lessons.py"

#: What a lesson's first cell gives its kernel that an exercise may use: the wrong answers the
#: tests write inline are run with these names, as a learner's cell would be.
LESSON_IMPORTS = """\
import asyncio
from urllib.parse import parse_qs, urlparse

import durable_lab
from durable_lab import DurableObject, Lab, Response, WebSocketPair
"""


def load_build(path: Path = BUILD) -> ModuleType:
    """Import ``scripts/build_lessons.py`` (not a package) as a module."""
    name = f"build_lessons_{abs(hash(path))}"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while the class is made
    spec.loader.exec_module(module)
    return module


def _load_module(path: Path) -> ModuleType:
    """A fresh import of the module at ``path`` (its classes are new objects each time)."""
    spec = importlib.util.spec_from_file_location(f"exercise_{path.stem}_{next(_loads)}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_loads = itertools.count()


def exercise_subject(key: str, which: str) -> Any:
    """The class (or function) of exercise ``key``'s ``"starter"`` or ``"solution"`` module."""
    ex = _default_build().read_exercise(key)
    path = {"starter": ex.starter_path, "solution": ex.solution_path}[which]
    return getattr(_load_module(path), ex.subject)


def exercise_source(key: str, which: str) -> str:
    """The text of exercise ``key``'s ``"starter"`` or ``"solution"`` module."""
    ex = _default_build().read_exercise(key)
    return {"starter": ex.starter_path, "solution": ex.solution_path}[which].read_text()


def subject_from(key: str, source: str, label: str = "exercise") -> Any:
    """The subject of exercise ``key`` defined by ``source``, run after :data:`LESSON_IMPORTS`
    and findable by ``inspect`` (as IPython keeps a cell's source), so hints can quote it."""
    text = LESSON_IMPORTS + "\n" + textwrap.dedent(source)
    filename = f"<{label} {key} {abs(hash(text))}>"
    linecache.cache[filename] = (len(text), None, text.splitlines(True), filename)
    namespace: dict[str, Any] = {"__name__": f"exercise_{key}"}
    exec(compile(text, filename, "exec"), namespace)
    return namespace[_default_build().read_exercise(key).subject]


@dataclass(frozen=True)
class Generated:
    """One notebook as the generator makes it."""

    relpath: str  # relative to the repository root, e.g. "notebooks/02_input_gate.ipynb"
    nb: Any  # an nbformat NotebookNode
    lesson: bool  # False for a solutions notebook

    @property
    def name(self) -> str:
        return Path(self.relpath).stem

    @property
    def text(self) -> str:
        """The file's exact text, as ``scripts/build_lessons.py`` writes it."""
        import nbformat

        return nbformat.writes(self.nb) + "\n"

    def fresh(self) -> Any:
        """A new copy of the notebook (running it fills in outputs)."""
        import nbformat

        return nbformat.reads(self.text, as_version=4)


def generate(build: ModuleType | None = None) -> list[Generated]:
    """Every lesson and solutions notebook, built in memory, lessons first."""
    build = build if build is not None else _default_build()
    return [Generated(str(path.relative_to(build.ROOT)), nb, path.parent == build.NOTEBOOKS)
            for path, nb in build.outputs().items()]


@cache
def _default_build() -> ModuleType:
    return load_build()


def _git(root: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(["git", "-C", str(root), *args], capture_output=True, check=False)


def committed_text(root: Path, relpath: str) -> str | None:
    """The file as committed at HEAD, or None (not a git checkout, or not committed)."""
    if _git(root, "rev-parse", "--is-inside-work-tree").returncode != 0:
        return None
    shown = _git(root, "show", f"HEAD:{relpath}")
    return shown.stdout.decode() if shown.returncode == 0 else None


def stale(notebooks: list[Generated], root: Path = ROOT) -> list[str]:
    """The notebooks whose committed version differs from the generator's output.

    Each entry says why, so a failing test names the file and what to do.
    """
    found = []
    for g in notebooks:
        path = root / g.relpath
        working = path.read_text() if path.exists() else None
        if working == g.text:
            continue  # up to date (committed, or regenerated and not committed yet)
        committed = committed_text(root, g.relpath)
        if committed is not None:
            if committed != g.text:
                found.append(f"{g.relpath}: the committed version (HEAD) is not what "
                             "scripts/build_lessons.py makes from its source")
        elif working is None:
            found.append(f"{g.relpath}: missing")
        else:
            found.append(f"{g.relpath}: not what scripts/build_lessons.py makes from its "
                         "source (it is not committed in git, so the working file is all there "
                         "is)")
    return found
