"""The core never imports UI or notebook packages; the public API is what __all__ says."""

from __future__ import annotations

import subprocess
import sys

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
