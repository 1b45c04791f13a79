"""Build the course's notebooks from their sources in ``course/``.

Run ``python scripts/build_lessons.py`` after editing a source (``--check`` only lists the
notebooks that are out of date, and fails if there are any). Commit sources and notebooks
together; tests/test_notebooks.py fails when a committed notebook is not what this makes.

Sources (course/README.md has the whole authoring guide):

- ``course/lessons/NN_name.py``: one lesson, a notebook in jupytext's *percent* format (a cell
  starts at a ``# %%`` line; ``# %% [markdown]`` cells are commented-out Markdown). Besides the
  learner's cells, a lesson holds cells the learner never sees:

  - ``# %% tags=["claim-kit"]``: the imports of its claims' helpers (tests/claim_kit.py);
  - ``# %% tags=["claim"]``: a claim (see :class:`Claim`): it starts with a call
    ``claim(says, output=..., page=...)`` with literal arguments, and the rest is a check that
    tests/test_lesson_claims.py runs right there, in the lesson's kernel.

  ``# %% exercise="06a"`` is the exercise cell: this script fills it with the starter of
  ``course/starters/ex06a.py`` between the import and the call of its check. A cell marked
  ``starter="09"`` shows the starter class inside other code: it must begin with that
  starter, word for word (checked here, so the two cannot drift apart).
- ``course/starters/exKEY.py`` and ``course/solutions/exKEY.py``: each exercise's starter
  (shipped in the lesson, deliberately wrong or incomplete) and its solution, as Python modules
  (ruff and mypy read them; ``python -m course.solutions.ex02`` runs the check). Their last
  block, ``if __name__ == "__main__":``, names the check and its subject.

Writes ``notebooks/NN_name.ipynb`` (what learners open) and, for instructors,
``course/solutions/NN_name_solutions.ipynb``: all without outputs.
"""

from __future__ import annotations

import ast
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
COURSE = ROOT / "course"
NOTEBOOKS = ROOT / "notebooks"

KERNEL = {"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
          "language_info": {"name": "python"}}
#: Cell metadata a lesson source may use; anything else is a typo or jupytext noise.
KNOWN_METADATA = {"tags", "exercise", "starter"}
HIDDEN_TAGS = {"claim", "claim-kit"}


class SourceError(ValueError):
    """A lesson or exercise source this script cannot build: says which file and why."""


@dataclass(frozen=True)
class Cell:
    """A cell of the learner's notebook."""

    kind: str  # "markdown" or "code"
    source: str
    tags: tuple[str, ...] = ()


@dataclass(frozen=True)
class Claim:
    """What a lesson says a panel or an output shows, and how to check it.

    ``says``: words of the lesson (of the three cells just above the claim), quoted exactly;
    ``check``: the claim cell's code, run in the lesson's kernel at that point (the ``claim()``
    call included): it asserts, with a message naming what the panel showed instead;
    ``output``: a regular expression the output of the code cell just above must match;
    ``page``: (CSS selector, regular expression): in a real browser, an element matching the
    selector must show text matching the expression at some moment after that cell ran.
    """

    says: str
    check: str
    output: str = ""
    page: tuple[str, str] | None = None
    kind: str = "claim"


@dataclass(frozen=True)
class Exercise:
    """One exercise: its starter and solution modules, and the check that judges them."""

    key: str
    check: str  # the name of the check in durable_lab.exercises, e.g. "check_seat"
    subject: str  # the class (or function) the check is given, e.g. "Seat"
    starter: str  # the starter's code as the lesson shows it (no docstring, imports, main)
    solution: str  # the solution's imports and code (no docstring, main)

    @property
    def starter_path(self) -> Path:
        return COURSE / "starters" / f"ex{self.key}.py"

    @property
    def solution_path(self) -> Path:
        return COURSE / "solutions" / f"ex{self.key}.py"


@dataclass(frozen=True)
class Lesson:
    name: str  # e.g. "02_input_gate"
    cells: list[Cell | Claim]  # the learner's cells with the claims where they stand
    kit: str  # the claim-kit cell's code: what the claims' checks import
    exercises: list[str]  # exercise keys, in lesson order


# -- exercises --------------------------------------------------------------------------------


def _split_module(path: Path) -> tuple[str, str, str, str]:
    """(imports, code, check, subject) of an exercise module: its import block, the code
    between that and its main block, and the names in the main block's ``check_x(Subject)``."""
    text = path.read_text()
    tree = ast.parse(text, str(path))
    lines = text.splitlines()
    body = list(tree.body)
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
        body = body[1:]  # the module docstring
    imports = []
    while body and isinstance(body[0], (ast.Import, ast.ImportFrom)):
        imports.append(body.pop(0))
    main = body[-1] if body else None
    if not (isinstance(main, ast.If) and ast.unparse(main.test) == "__name__ == '__main__'"):
        raise SourceError(f"{path}: the last block must be `if __name__ == \"__main__\":`, "
                          "running the exercise's check on its subject")
    calls = [n for n in ast.walk(main) if isinstance(n, ast.Call)
             and isinstance(n.func, ast.Name) and n.func.id.startswith("check_")]
    func, args = (calls[0].func, calls[0].args) if len(calls) == 1 else (None, [])
    if not (isinstance(func, ast.Name) and len(args) == 1 and isinstance(args[0], ast.Name)):
        raise SourceError(f"{path}: the main block must call one check_...(Subject)")
    check, subject = func.id, args[0].id
    first = imports[0].lineno if imports else body[0].lineno
    after_imports = imports[-1].end_lineno if imports else first - 1
    assert after_imports is not None
    import_text = "\n".join(lines[first - 1:after_imports]).strip()
    code = "\n".join(lines[after_imports:main.lineno - 1]).strip()
    return import_text, code, check, subject


def read_exercise(key: str) -> Exercise:
    starter = COURSE / "starters" / f"ex{key}.py"
    solution = COURSE / "solutions" / f"ex{key}.py"
    for path in (starter, solution):
        if not path.is_file():
            raise SourceError(f"exercise {key!r}: {path.relative_to(ROOT)} is missing")
    _, starter_code, check, subject = _split_module(starter)
    imports, solution_code, check2, subject2 = _split_module(solution)
    if (check, subject) != (check2, subject2):
        raise SourceError(f"exercise {key!r}: the starter runs {check}({subject}), the "
                          f"solution {check2}({subject2}): they must be the same")
    return Exercise(key, check, subject, starter_code, f"{imports}\n\n\n{solution_code}")


def exercise_cell(ex: Exercise) -> str:
    """The lesson's exercise cell: the check's import, the starter, the check."""
    return (f"from durable_lab.exercises import {ex.check}\n\n\n{ex.starter}\n\n\n"
            f"await {ex.check}({ex.subject})")


# -- lessons ----------------------------------------------------------------------------------


def _claim(path: Path, source: str) -> Claim:
    tree = ast.parse(source, str(path))  # top-level await parses; it only fails to compile
    first = tree.body[0] if tree.body else None
    call = first.value if isinstance(first, ast.Expr) else None
    if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Name)
            and call.func.id == "claim" and len(call.args) == 1):
        raise SourceError(f"{path}: a claim cell starts with claim(says, output=..., "
                          f"page=...); this one starts {source[:60]!r}")
    try:
        says = ast.literal_eval(call.args[0])
        options = {str(k.arg): ast.literal_eval(k.value) for k in call.keywords}
    except ValueError as error:
        raise SourceError(f"{path}: claim({source[:40]!r}...): arguments must be literals "
                          f"({error})") from error
    if not (isinstance(says, str) and says.strip()):
        raise SourceError(f"{path}: claim(says, ...): says is the lesson's words, not {says!r}")
    unknown = set(options) - {"output", "page"}
    if unknown:
        raise SourceError(f"{path}: claim({says[:40]!r}): unknown argument(s) {sorted(unknown)} "
                          "(allowed: output, page)")
    check_lines = source.splitlines()[call.end_lineno or 0:]
    if not ("".join(check_lines).strip() or options.get("output")):
        raise SourceError(f"{path}: claim {says!r}: give a check, an output pattern or both")
    page = options.get("page")
    return Claim(" ".join(says.split()), source, options.get("output", ""),
                 (str(page[0]), str(page[1])) if page else None)


def read_lesson(path: Path) -> Lesson:
    import jupytext

    nb = jupytext.reads(path.read_text(), fmt="py:percent")
    cells: list[Cell | Claim] = []
    kit, exercises = "", []
    for cell in nb.cells:
        meta = dict(cell.metadata)
        meta.pop("lines_to_next_cell", None)  # jupytext's note on blank lines in the .py file
        if set(meta) - KNOWN_METADATA:
            raise SourceError(f"{path}: cell metadata {sorted(set(meta) - KNOWN_METADATA)} "
                              f"(allowed: {sorted(KNOWN_METADATA)}) on {cell.source[:60]!r}")
        tags = tuple(meta.get("tags", ()))
        if "claim-kit" in tags:
            kit += cell.source + "\n"
        elif "claim" in tags:
            cells.append(_claim(path, cell.source))
        elif "exercise" in meta:
            ex = read_exercise(meta["exercise"])
            if any(line.strip() and not line.lstrip().startswith("#")
                   for line in cell.source.splitlines()):
                raise SourceError(f"{path}: the exercise cell {ex.key!r} is filled in from "
                                  f"{ex.starter_path.relative_to(ROOT)}: leave it empty "
                                  "(a comment may say so)")
            exercises.append(ex.key)
            cells.append(Cell("code", exercise_cell(ex), tags))
        else:
            if "starter" in meta:
                starter = read_exercise(meta["starter"]).starter
                if not cell.source.startswith(starter):
                    raise SourceError(f"{path}: the cell marked starter={meta['starter']!r} "
                                      "must begin with that starter's code, word for word")
            cells.append(Cell(cell.cell_type, cell.source, tags))
    return Lesson(path.stem, cells, kit, exercises)


def lessons() -> dict[str, Lesson]:
    """Every lesson, in course order (the file names' numbers)."""
    return {p.stem: read_lesson(p) for p in sorted((COURSE / "lessons").glob("[0-9][0-9]_*.py"))}


def exercises() -> dict[str, Exercise]:
    return {key: read_exercise(key) for lesson in lessons().values() for key in lesson.exercises}


# -- notebooks --------------------------------------------------------------------------------


def notebook(cells: list[Cell | Claim]) -> Any:
    """The learner's notebook: the cells without the claims, no outputs."""
    from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

    made = []
    for i, cell in enumerate(c for c in cells if isinstance(c, Cell)):
        nb_cell = (new_markdown_cell(cell.source) if cell.kind == "markdown"
                   else new_code_cell(cell.source))
        if cell.tags:
            nb_cell.metadata["tags"] = list(cell.tags)
        nb_cell["id"] = f"cell-{i:02}"
        made.append(nb_cell)
    return new_notebook(cells=made, metadata=dict(KERNEL))


def claims_of(cells: list[Cell | Claim]) -> list[tuple[int, Claim]]:
    """The lesson's claims, each with the number of notebook cells above it (where it runs)."""
    found, position = [], 0
    for cell in cells:
        if isinstance(cell, Claim):
            found.append((position, cell))
        else:
            position += 1
    return found


def solution_notebook(lesson: Lesson) -> Any:
    cells: list[Cell | Claim] = [Cell("markdown", textwrap.dedent(f"""
        # Solutions · {lesson.name}

        For instructors (hand out after the exercise). Each cell is a class that passes every
        scenario of its check, with comments on *why*. Other correct answers exist: the check,
        not this file, is the judge. The same code is in `course/solutions/ex<key>.py`.
        """).strip())]
    for key in lesson.exercises:
        ex = read_exercise(key)
        cells.append(Cell("markdown", f"## Exercise {key}"))
        cells.append(Cell("code", f"{ex.solution}\n\n\nawait {ex.check}({ex.subject})"))
    return notebook(cells)


def outputs() -> dict[Path, Any]:
    """Every file this script writes, with its notebook: the lessons first."""
    found = {}
    solutions = {}
    for name, lesson in lessons().items():
        found[NOTEBOOKS / f"{name}.ipynb"] = notebook(lesson.cells)
        solutions[COURSE / "solutions" / f"{name}_solutions.ipynb"] = solution_notebook(lesson)
    return found | solutions


def text_of(nb: Any) -> str:
    """A notebook's file text, exactly as written."""
    import nbformat

    return nbformat.writes(nb) + "\n"


def main(argv: list[str]) -> int:
    check_only = "--check" in argv
    stale = []
    for path, nb in outputs().items():
        text = text_of(nb)
        if path.exists() and path.read_text() == text:
            continue
        stale.append(path)
        if not check_only:
            path.write_text(text)
    if check_only and stale:
        print("out of date (run python scripts/build_lessons.py):",
              ", ".join(str(p.relative_to(ROOT)) for p in stale))
        return 1
    print(f"{'would write' if check_only else 'wrote'} {len(stale)} notebook(s)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
