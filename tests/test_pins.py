"""One source of pins: Binder installs what pyproject.toml declares (issue 18, item 3).

``binder/requirements.txt`` is written by ``scripts/sync_binder_pins.py`` from pyproject.toml's
dependencies and its ``widgets`` extra. These tests fail while the committed file and
pyproject disagree, whether the file was edited by hand or pyproject changed without a rerun.
"""

from __future__ import annotations

import importlib.util
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = ROOT / "pyproject.toml"
REQUIREMENTS = ROOT / "binder" / "requirements.txt"

_spec = importlib.util.spec_from_file_location("sync_binder_pins",
                                               ROOT / "scripts" / "sync_binder_pins.py")
assert _spec is not None and _spec.loader is not None
sync = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(sync)


def pins(lines: list[str]) -> dict[str, str]:
    """Normalised project name -> its version specifier, for requirement lines."""
    found: dict[str, str] = {}
    for line in lines:
        requirement = Requirement(line)
        name = canonicalize_name(requirement.name)
        assert name not in found, f"{name} is asked for twice"
        found[name] = str(requirement.specifier)
    return found


def test_binder_requirements_are_what_the_script_writes_from_pyproject():
    assert REQUIREMENTS.read_text(encoding="utf-8") == sync.render(), (
        "binder/requirements.txt is out of date: run python scripts/sync_binder_pins.py")
    assert sync.main(["--check"]) == 0


def test_binder_asks_for_the_runtime_and_the_panels_with_pyprojects_pins():
    # Read independently of the script: each requirement line of the committed file against
    # pyproject's dependencies plus the widgets extra, version ranges included.
    project = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))["project"]
    declared = pins([*project["dependencies"], *project["optional-dependencies"]["widgets"]])
    lines = [line.split("#")[0].strip()
             for line in REQUIREMENTS.read_text(encoding="utf-8").splitlines()]
    binder = pins([line for line in lines if line])
    assert binder == declared
    assert {"bokeh", "jupyter-bokeh", "ipywidgets", "aiosqlite", "msgpack"} <= set(binder)


def test_a_pin_changed_in_pyproject_alone_makes_the_files_disagree(tmp_path):
    text = PYPROJECT.read_text(encoding="utf-8")
    first = tomllib.loads(text)["project"]["optional-dependencies"]["widgets"][0]
    bumped = f"{Requirement(first).name}>=999"
    assert f'"{first}"' in text
    changed = tmp_path / "pyproject.toml"
    changed.write_text(text.replace(f'"{first}"', f'"{bumped}"'), encoding="utf-8")
    rendered = sync.render(changed)
    assert f"{bumped}\n" in rendered and f"{first}\n" not in rendered
    assert rendered != REQUIREMENTS.read_text(encoding="utf-8")


def test_postbuild_installs_the_lab_without_its_dependencies():
    # The requirements file carries every dependency because postBuild adds none of its own.
    post = (ROOT / "binder" / "postBuild").read_text(encoding="utf-8")
    assert "pip install --no-cache-dir --no-deps -e ." in post
