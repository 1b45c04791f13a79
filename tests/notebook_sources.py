"""The lesson notebooks as the tests see them: generated from ``notebooks/_build.py``.

The files in ``notebooks/`` are what a learner opens, and a learner's JupyterLab autosaves into
them (outputs, execution counts, edited exercise cells). So the tests never run or inspect the
working files: they build the notebooks in memory from their source, exactly as
``python notebooks/_build.py`` would write them.

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
import subprocess
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BUILD = ROOT / "notebooks" / "_build.py"


def load_build(path: Path = BUILD) -> ModuleType:
    """Import ``notebooks/_build.py`` (not a package) as a module."""
    spec = importlib.util.spec_from_file_location(f"notebooks_build_{abs(hash(path))}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


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
        """The file's exact text, as ``_build.py`` writes it."""
        import nbformat

        return nbformat.writes(self.nb) + "\n"

    def fresh(self) -> Any:
        """A new copy of the notebook (running it fills in outputs)."""
        import nbformat

        return nbformat.reads(self.text, as_version=4)


def generate(build: ModuleType | None = None) -> list[Generated]:
    """Every lesson and solutions notebook, built in memory, lessons first."""
    build = build if build is not None else _default_build()
    lessons, solutions = [], []
    for name, (cells, keys) in build.LESSONS.items():
        lessons.append(Generated(f"notebooks/{name}.ipynb", build.notebook(cells), True))
        solutions.append(Generated(f"notebooks/solutions/{name}_solutions.ipynb",
                                   build.solution_notebook(name, keys), False))
    return lessons + solutions


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
                             "notebooks/_build.py generates")
        elif working is None:
            found.append(f"{g.relpath}: missing")
        else:
            found.append(f"{g.relpath}: not what notebooks/_build.py generates (it is not "
                         "committed in git, so the working file is all there is)")
    return found
