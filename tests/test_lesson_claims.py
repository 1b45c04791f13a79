"""Every sentence of a lesson about a panel or an output is a test.

Where a lesson says what a panel shows ("a rising row of dots", "the tags column", "MAILBOX
(2)"), its source (course/lessons/NN_name.py) has a claim cell right after that text (tagged
``claim``, starting with ``claim(says, output=..., page=...)``): the words it holds to the
truth, and a check. Claims are not cells of the learner's notebook. Here each lesson runs
headless (as in test_notebooks.py, built in memory by scripts/build_lessons.py) with its claims
put back in as hidden code cells where they stand, so each check runs in the lesson's own
kernel, after the cells above it and before the cells below, against the panels' state at that
moment (tests/claim_kit.py: reducers, the widgets' HTML, the Bokeh sources' data). The
lesson's ``claim-kit`` cell, run first, imports those helpers. A claim with an ``output``
pattern is checked against the printed output of the code cell just above it.

A failing test names the lesson, the sentence and what the panel showed instead.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

from notebook_sources import ROOT, load_build  # noqa: E402

BUILD = load_build()
LESSONS = BUILD.lessons()
TESTS = Path(__file__).resolve().parent
BUDGET = 90.0  # seconds per lesson: the lesson's own run plus a settle per claim


@pytest.fixture(autouse=True)
def kernel_imports_this_checkout(monkeypatch):
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(
        [str(ROOT)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]))


def prelude(kit: str) -> str:
    """The first hidden cell: tests/ on the kernel's path, then the lesson's claim-kit cell."""
    return f"import sys\nsys.path.insert(0, {str(TESTS)!r})\n{kit}"


def with_claims(lesson: Any) -> tuple[Any, list[tuple[int, Any, int]]]:
    """The learner's notebook with a prelude and each claim's check inserted where it stands.

    Returns the notebook and, per claim, (its cell index in that notebook, the claim, the index
    of the code cell just above it)."""
    cells = lesson.cells
    nb = BUILD.notebook(cells)
    learner = list(nb.cells)
    out = [nbformat.v4.new_code_cell(prelude(lesson.kit), metadata={"tags": ["claim"]},
                                     id="claim-prelude")]
    placed = []
    claims = BUILD.claims_of(cells)
    position = 0
    for n, (above, c) in enumerate(claims):
        while position < above:
            out.append(learner[position])
            position += 1
        code_above = max((i for i, cell in enumerate(out) if cell.cell_type == "code"
                          and "claim" not in cell.metadata.get("tags", [])), default=-1)
        index = -1
        if c.check:
            index = len(out)
            out.append(nbformat.v4.new_code_cell(c.check, metadata={"tags": ["claim"]},
                                                 id=f"claim-{n:02}"))
        placed.append((index, c, code_above))
    out.extend(learner[position:])
    nb.cells = out
    return nb, placed


def printed(cell) -> str:  # type: ignore[no-untyped-def]
    parts = []
    for o in cell.get("outputs", []):
        if o.output_type == "stream":
            parts.append(o.text)
        elif o.output_type in ("execute_result", "display_data"):
            parts.append(o.get("data", {}).get("text/plain", ""))
        elif o.output_type == "error":
            parts.append(f"{o.ename}: {o.evalue}")
    return "".join(parts)


def failures(nb, placed) -> list[str]:  # type: ignore[no-untyped-def]
    bad = []
    prelude = nb.cells[0]
    if any(o.output_type == "error" for o in prelude.get("outputs", [])):
        return [f"the claims' prelude failed: {printed(prelude)}"]
    for index, c, above in placed:
        if c.check:
            cell = nb.cells[index]
            errors = [o for o in cell.get("outputs", []) if o.output_type == "error"]
            if cell.get("execution_count") is None:
                bad.append(f"{c.says!r}: the check never ran")
            elif errors:
                bad.append(f"{c.says!r}: {errors[0].ename}: {errors[0].evalue}")
        if c.output:
            text = printed(nb.cells[above]) if above >= 0 else ""
            if not re.search(c.output, text):
                bad.append(f"{c.says!r}: the output above does not match {c.output!r}; it "
                           f"printed:\n{text[:800]}")
    return bad


def run(nb, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    client = nbclient.NotebookClient(nb, timeout=BUDGET, kernel_name="python3",
                                     allow_errors=True, resources={"metadata": {"path": tmp_path}})
    client.execute()


def near_text(cells: list, position: int) -> str:  # type: ignore[type-arg]
    """The text of the three notebook cells above a claim, whitespace collapsed."""
    learner = [c for c in cells if c.kind != "claim"]
    return " ".join(" ".join(c.source for c in learner[max(0, position - 3):position]).split())


LESSON_NAMES = list(LESSONS)


@pytest.mark.parametrize("name", LESSON_NAMES)
def test_every_claim_of_the_lesson_holds(name, tmp_path):
    nb, placed = with_claims(LESSONS[name])
    assert placed, f"{name} makes no claim"
    run(nb, tmp_path)
    bad = failures(nb, placed)
    assert not bad, f"{name}: the lesson says what its panels do not show:\n" + "\n".join(bad)


@pytest.mark.parametrize("name", LESSON_NAMES)
def test_each_claim_quotes_the_text_just_above_it(name):
    cells = LESSONS[name].cells
    for position, c in BUILD.claims_of(cells):
        assert c.says and c.says in near_text(cells, position), (
            f"{name}: the claim {c.says!r} does not quote the three cells above it:\n"
            f"{near_text(cells, position)[-600:]}")


@pytest.mark.parametrize("name", LESSON_NAMES)
def test_each_lesson_has_a_claim_the_browser_checks(name):
    cells = LESSONS[name].cells
    pages = [c.page for _, c in BUILD.claims_of(cells) if c.page]
    assert pages, f"{name}: no claim with a page=(selector, pattern) for the browser test"
    for selector, pattern in pages:
        re.compile(pattern)
        assert selector.strip(), pattern


def test_claims_are_not_cells_of_the_learners_notebook():
    for name, lesson in LESSONS.items():
        nb = BUILD.notebook(lesson.cells)
        claims = BUILD.claims_of(lesson.cells)
        assert len(nb.cells) == len(lesson.cells) - len(claims), name
        shipped = "\n".join(c.source for c in nb.cells)
        assert "claim_kit" not in shipped and "settled(" not in shipped, name
        assert not re.search(r"(?m)^claim\(", shipped) and "claim_kit" in lesson.kit, name


FAKE_LESSON = '''\
# %% tags=["claim-kit"]
from claim_kit import claim, settled, text_of
# isort: split

# %%
import widgets
from durable_lab import DurableObject, Lab


class Counter(DurableObject):
    async def increment(self):
        n = (await self.ctx.storage.get("n")) or 0
        self.ctx.storage.put("n", n + 1)
        return n + 1

# %%
lab = Lab(storage="memory", seed=1)
stub = lab.bind("C", Counter).getByName("c")
view = widgets.object_view(lab, stub)
print(await stub.increment(), await stub.increment())

# %% [markdown]
# The object view says 2 answered, the gate is OPEN; it printed 1 2.

# %% tags=["claim"]
claim("2 answered")
await settled(lab)
assert "2 answered" in text_of(view), text_of(view)

# %% tags=["claim"]
claim("the gate is OPEN")
await settled(lab)
assert view.state.gate_holder, "the gate is open: " + text_of(view)[:80]

# %% tags=["claim"]
claim("it printed 1 2", output=r"1 3")
'''


def test_a_false_claim_fails_with_its_sentence(tmp_path):
    # A made-up lesson source: one panel, one true claim, one false one, one wrong output claim.
    source = tmp_path / "99_fake.py"
    source.write_text(FAKE_LESSON)
    lesson = BUILD.read_lesson(source)
    assert [c.says for _, c in BUILD.claims_of(lesson.cells)] == [
        "2 answered", "the gate is OPEN", "it printed 1 2"]
    nb, placed = with_claims(lesson)
    run(nb, tmp_path)
    bad = failures(nb, placed)
    assert len(bad) == 2, bad
    assert bad[0].startswith("'the gate is OPEN': AssertionError: the gate is open"), bad
    assert bad[1].startswith("'it printed 1 2': the output above does not match '1 3'"), bad


@pytest.mark.parametrize(("cell", "error"), [
    ('claim(f"{x}")', "arguments must be literals"),
    ('claim("x", look="y")\nx = 1', "unknown argument(s) ['look']"),
    ('claim("x")', "give a check, an output pattern or both"),
    ('assert 1', "a claim cell starts with claim("),
])
def test_a_malformed_claim_is_named_when_the_lesson_is_read(cell, error, tmp_path):
    source = tmp_path / "99_fake.py"
    source.write_text(f'# %% [markdown]\n# x\n\n# %% tags=["claim"]\n{cell}\n')
    with pytest.raises(BUILD.SourceError, match=re.escape(error)):
        BUILD.read_lesson(source)
