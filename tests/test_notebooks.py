"""Every lesson notebook runs top to bottom, headless, in a fresh kernel, well under a minute.

Notebooks are committed without outputs and built from their sources in course/ by
scripts/build_lessons.py; a cell may raise only if it is tagged ``raises-exception``. The tests
run and inspect the notebooks *as built* (tests/notebook_sources.py), never the files in
notebooks/, which a learner's JupyterLab autosaves into. Needs nbclient, nbformat and ipykernel
(the ``notebooks`` extra); skipped without them.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

from notebook_sources import ROOT, Generated, generate, stale  # noqa: E402

NOTEBOOKS = generate()
LESSONS = [g for g in NOTEBOOKS if g.lesson]
SOLUTIONS = [g for g in NOTEBOOKS if not g.lesson]
BUDGET = 60.0  # seconds per notebook, the whole run


@pytest.fixture(autouse=True)
def kernel_imports_this_checkout(monkeypatch):
    """Kernels started by nbclient inherit this environment: put this checkout first on their
    path, so they run this tree's durable_lab (not whatever the venv's editable install names)."""
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(
        [str(ROOT)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]))


def run(nb, tmp_path: Path) -> tuple[object, float]:  # type: ignore[no-untyped-def]
    client = nbclient.NotebookClient(nb, timeout=BUDGET, kernel_name="python3",
                                     allow_errors=True, resources={"metadata": {"path": tmp_path}})
    started = time.perf_counter()
    client.execute()
    return nb, time.perf_counter() - started


def errors_of(nb) -> list[str]:  # type: ignore[no-untyped-def]
    found = []
    for index, cell in enumerate(nb.cells):
        if cell.cell_type != "code" or "raises-exception" in cell.metadata.get("tags", []):
            continue
        for output in cell.get("outputs", []):
            if output.output_type == "error":
                found.append(f"cell {index}: {output.ename}: {output.evalue}\n"
                             f"{cell.source[:300]}")
    return found


def test_there_is_a_lesson_per_topic():
    names = [g.name for g in LESSONS]
    assert [n[:2] for n in names] == [f"{i:02}" for i in range(len(names))], names
    assert len(names) >= 10, names


def test_the_kernel_imports_durable_lab_from_this_checkout(tmp_path):
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(
        "import durable_lab; print(durable_lab.__file__)")])
    run(nb, tmp_path)
    printed = "".join(o.get("text", "") for o in nb.cells[0].outputs).strip()
    assert Path(printed).parent == ROOT / "durable_lab", printed


@pytest.mark.parametrize("g", NOTEBOOKS, ids=lambda g: g.name)
def test_notebook_runs_headless_without_errors(g: Generated, tmp_path):
    nb, seconds = run(g.fresh(), tmp_path)
    assert errors_of(nb) == []
    assert seconds < BUDGET, f"{g.relpath} took {seconds:.1f} s"
    print(f"{g.relpath}: {seconds:.1f} s")


@pytest.mark.parametrize("g", LESSONS, ids=lambda g: g.name)
def test_lesson_opens_with_covers_and_ends_its_exercise_with_a_check(g: Generated):
    nb = g.nb
    first = nb.cells[0].source
    assert "**Covers:**" in first and "**You will be able to:**" in first, first[:200]
    assert "**Scenario:**" in first
    sources = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    assert "from durable_lab.exercises import check_" in sources
    assert "Predict" in "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")


@pytest.mark.parametrize("g", NOTEBOOKS, ids=lambda g: g.name)
def test_notebooks_are_generated_without_outputs(g: Generated):
    # With test_committed_notebooks_match_their_generator: committed without outputs too.
    for cell in g.nb.cells:
        if cell.cell_type == "code":
            assert cell.get("outputs") == [] and cell.get("execution_count") is None


def test_committed_notebooks_match_their_generator():
    assert stale(NOTEBOOKS) == [], "run python scripts/build_lessons.py and commit the notebooks"


def test_solutions_live_apart_from_the_lessons():
    lesson_text = "\n".join(g.text for g in LESSONS)
    assert "# reserve first" not in lesson_text  # a line of the exercise 02 solution
    assert "# reserve first" in "\n".join(g.text for g in SOLUTIONS)
    assert SOLUTIONS, "no solution notebooks"


def test_the_learners_folder_holds_the_lessons_and_nothing_else():
    # notebooks/ is the folder scripts/lab.sh serves (and Binder opens): no solution, no source,
    # no builder in it. What counts is what is committed (a learner may save files there).
    listed = subprocess.run(["git", "-C", str(ROOT), "ls-files", "notebooks"],
                            capture_output=True, text=True, check=False)
    if listed.returncode == 0:
        shipped = set(listed.stdout.split())
    else:  # not a git checkout: the folder as it is, JupyterLab's hidden folders aside
        shipped = {str(p.relative_to(ROOT)) for p in (ROOT / "notebooks").rglob("*")
                   if p.is_file()
                   and not any(part.startswith(".") for part in p.relative_to(ROOT).parts)}
    assert shipped == {g.relpath for g in LESSONS}, sorted(shipped ^ {g.relpath for g in LESSONS})
    assert all(not g.relpath.startswith("notebooks/") for g in SOLUTIONS), SOLUTIONS


# -- a learner's autosave never fails the suite ------------------------------------------------


def autosave(path: Path) -> None:
    """What JupyterLab writes after a learner ran a lesson and edited its exercise cell."""
    nb = nbformat.read(path, as_version=4)
    for count, cell in enumerate((c for c in nb.cells if c.cell_type == "code"), 1):
        cell.execution_count = count
        cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text="ran\n")]
    nb.cells[-1].source += "\n# my attempt"
    nb.metadata["widgets"] = {"application/vnd.jupyter.widget-state+json": {"state": {}}}
    nbformat.write(nb, path)


def git(tree: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(tree), "-c", "user.name=t", "-c", "user.email=t@t",
                    "-c", "commit.gpgsign=false", *args], check=True, capture_output=True)


@pytest.fixture
def checkout(tmp_path):
    """A git checkout whose committed notebooks are exactly the generated ones."""
    if shutil.which("git") is None:
        pytest.fail("git is needed to simulate a checkout (it is on every CI image)")
    tree = tmp_path / "checkout"
    for g in NOTEBOOKS:
        (tree / g.relpath).parent.mkdir(parents=True, exist_ok=True)
        (tree / g.relpath).write_text(g.text)
    git(tree, "init", "-q")
    git(tree, "add", "-A")
    git(tree, "commit", "-q", "-m", "notebooks")
    return tree


def test_a_learners_autosave_passes_the_generator_check(checkout):
    for g in LESSONS:
        autosave(checkout / g.relpath)
    assert (checkout / LESSONS[2].relpath).read_text() != LESSONS[2].text  # really changed
    assert stale(NOTEBOOKS, checkout) == []
    # and what the suite runs and inspects is the generated notebook, not the saved one
    assert "# my attempt" not in LESSONS[2].text
    assert all(c.get("outputs", []) == [] for c in LESSONS[2].fresh().cells)


def test_a_stale_commit_fails_the_generator_check_even_under_an_autosave(checkout):
    path = checkout / LESSONS[3].relpath
    path.write_text(path.read_text().replace("Predict", "Guess", 1))
    git(checkout, "commit", "-q", "-am", "edit the notebook by hand")
    autosave(path)
    assert stale(NOTEBOOKS, checkout) == [
        f"{LESSONS[3].relpath}: the committed version (HEAD) is not what "
        "scripts/build_lessons.py makes from its source"]


def test_a_regenerated_notebook_passes_before_it_is_committed(checkout):
    path = checkout / LESSONS[1].relpath
    path.write_text(path.read_text().replace("Predict", "Guess", 1))
    git(checkout, "commit", "-q", "-am", "an older generator's output")
    path.write_text(LESSONS[1].text)  # python scripts/build_lessons.py, not committed yet
    assert stale(NOTEBOOKS, checkout) == []


def test_outside_git_the_working_file_is_what_counts(tmp_path):
    tree = tmp_path / "copy"
    for g in NOTEBOOKS:
        (tree / g.relpath).parent.mkdir(parents=True, exist_ok=True)
        (tree / g.relpath).write_text(g.text)
    assert stale(NOTEBOOKS, tree) == []
    (tree / SOLUTIONS[0].relpath).unlink()
    autosave(tree / LESSONS[0].relpath)
    assert [line.split(":")[0] for line in stale(NOTEBOOKS, tree)] == [
        LESSONS[0].relpath, SOLUTIONS[0].relpath]


# -- the builder refuses sources it cannot build faithfully -------------------------------------


@pytest.mark.parametrize(("cell", "error"), [
    ('# %% starter="09"\nclass RateLimiter:\n    pass', "must begin with that starter's code"),
    ('# %% exercise="02"\nclass Seat:\n    pass', "is filled in from course/starters/ex02.py"),
    ('# %% exercise="99"', "course/starters/ex99.py is missing"),
    ('# %% tag=["claim"]\nx = 1', "cell metadata ['tag']"),
])
def test_the_builder_names_what_is_wrong_with_a_lesson_source(cell, error, tmp_path):
    from notebook_sources import load_build

    build = load_build()
    source = tmp_path / "99_fake.py"
    source.write_text(f"# %% [markdown]\n# x\n\n{cell}\n")
    with pytest.raises(build.SourceError, match=re.escape(error)):
        build.read_lesson(source)


def test_an_exercise_cell_is_its_starter_between_the_import_and_the_call_of_its_check():
    from notebook_sources import exercise_source, load_build

    build = load_build()
    cell = next(c.source for c in build.lessons()["02_input_gate"].cells
                if c.kind == "code" and "check_seat" in c.source)
    starter = exercise_source("02", "starter")
    body = starter[starter.index("class Seat"):starter.index('if __name__ == "__main__":')]
    assert cell == ("from durable_lab.exercises import check_seat\n\n\n" + body.strip()
                    + "\n\n\nawait check_seat(Seat)")


def _imported(source: str) -> set[str]:
    """The names the import statements of ``source`` bind (top level, top-level await allowed)."""
    import ast

    names = set()
    for node in ast.parse(source).body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            names |= {(a.asname or a.name).split(".")[0] for a in node.names}
    return names


def test_a_learner_can_write_the_shipped_solution_in_the_exercise_cell():
    # Each lesson imports only what it uses (ruff checks that); what the exercise's solution
    # imports must still be there when the learner gets to the exercise cell.
    from notebook_sources import exercise_source, load_build

    build = load_build()
    for name, lesson in build.lessons().items():
        for key in lesson.exercises:
            ex = build.read_exercise(key)
            cells = [c for c in lesson.cells if c.kind == "code"]
            upto = next(i for i, c in enumerate(cells) if f"await {ex.check}(" in c.source)
            available = set().union(*(_imported(c.source) for c in cells[:upto + 1]))
            needed = _imported(exercise_source(key, "solution")) - {ex.check}
            assert needed <= available, (
                f"{name}: exercise {key}'s solution needs {sorted(needed - available)}, which "
                "the lesson does not import before its exercise cell")
