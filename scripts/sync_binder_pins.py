"""Write ``binder/requirements.txt`` from ``pyproject.toml``: one source of pins.

Binder (repo2docker) installs ``binder/requirements.txt`` before ``binder/postBuild`` installs
the lab itself with ``--no-deps``, so that file must ask for exactly what ``pyproject.toml``
declares for a learner's image: the runtime's dependencies and the panels' (the ``widgets``
extra). JupyterLab, the notebook server and ipykernel come with repo2docker's base image and
are left out. Hand-kept, the two drifted apart (Binder asked for ``bokeh>=3.4,<4`` while every
test ran against ``bokeh>=3.9,<3.10``); generated, they cannot.

    python scripts/sync_binder_pins.py          # rewrite binder/requirements.txt
    python scripts/sync_binder_pins.py --check  # exit 1 if it is out of date

``tests/test_pins.py`` fails when the committed file is not what this script writes.
"""

from __future__ import annotations

import argparse
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = ROOT / "pyproject.toml"
REQUIREMENTS = ROOT / "binder" / "requirements.txt"

#: The extras of pyproject.toml a Binder image needs on top of the runtime's dependencies.
EXTRAS = ("widgets",)

HEADER = """\
# Generated from pyproject.toml by scripts/sync_binder_pins.py: edit pyproject.toml, then run
# `python scripts/sync_binder_pins.py` (tests/test_pins.py fails while the two disagree).
# What repo2docker installs for Binder on top of its base image (which already has JupyterLab,
# the notebook server and ipykernel): the runtime's dependencies, then the panels' ("widgets"
# extra). durable_lab itself is installed by postBuild.
"""


def requirements(pyproject: Path = PYPROJECT) -> list[str]:
    """The requirement strings Binder installs, in pyproject's order."""
    project = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]
    extras = project.get("optional-dependencies", {})
    missing = [name for name in EXTRAS if name not in extras]
    if missing:
        raise SystemExit(f"{pyproject}: no optional-dependencies {missing} "
                         f"(it has {sorted(extras)}); Binder needs the panels' extra")
    wanted = [*project["dependencies"]]
    for name in EXTRAS:
        wanted += extras[name]
    return wanted


def render(pyproject: Path = PYPROJECT) -> str:
    """The text of ``binder/requirements.txt`` for ``pyproject``."""
    return HEADER + "".join(f"{line}\n" for line in requirements(pyproject))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true",
                        help="do not write; exit 1 if binder/requirements.txt is out of date")
    args = parser.parse_args(argv)
    text = render()
    current = REQUIREMENTS.read_text(encoding="utf-8") if REQUIREMENTS.exists() else ""
    if args.check:
        if current != text:
            print(f"{REQUIREMENTS.relative_to(ROOT)} is out of date: run "
                  f"python scripts/sync_binder_pins.py", file=sys.stderr)
            return 1
        return 0
    if current != text:
        REQUIREMENTS.write_text(text, encoding="utf-8")
        print(f"wrote {REQUIREMENTS.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
