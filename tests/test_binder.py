"""The Binder build, simulated as closely as this machine allows.

repo2docker's recipe for this repository is: a Python from ``binder/runtime.txt``, JupyterLab and
ipykernel from its base image, ``pip install -r binder/requirements.txt``, then
``binder/postBuild`` from the repository root. This test does the same in a fresh virtual
environment built from those files only and a copy of the checkout, then runs the tour notebook
in that environment's own kernel, headless. Slow (it installs from the package index): marked
``slow``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BINDER = ROOT / "binder"
#: What repo2docker's base image provides that matters here: a kernel and a way to run it.
BASE_IMAGE = ["ipykernel", "nbclient", "nbformat"]
SKIP = shutil.ignore_patterns(".git", ".venv", ".venv-*", ".hub", "__pycache__", ".pytest_cache",
                              ".mypy_cache", ".ruff_cache", ".hypothesis", ".benchmarks",
                              "*.egg-info", "build", "dist")

pytestmark = pytest.mark.slow


def sh(args: list[str], cwd: Path, env: dict[str, str], timeout: float = 600) -> str:
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True,
                            timeout=timeout, check=False)
    assert result.returncode == 0, (f"{' '.join(args)} failed ({result.returncode}):\n"
                                    f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return result.stdout


def test_binder_files_are_what_repo2docker_reads():
    assert (BINDER / "requirements.txt").is_file()
    assert (BINDER / "runtime.txt").read_text().strip() == "python-3.11"
    post = BINDER / "postBuild"
    assert post.is_file() and os.access(post, os.X_OK)
    assert post.read_text().startswith("#!/usr/bin/env bash")
    requirements = [line.split("#")[0].strip() for line in
                    (BINDER / "requirements.txt").read_text().splitlines()]
    assert [r for r in requirements if r], "binder/requirements.txt is empty"
    assert not any(r.startswith(("jupyterlab", "notebook")) for r in requirements), \
        "the base image has JupyterLab already: keep the image light"


def test_a_fresh_binder_environment_runs_the_tour(tmp_path):
    # Binder builds with the Python of runtime.txt (3.11, as CI has); on another local Python
    # this still checks the closest thing this machine allows: the same files, a fresh venv.
    repo = tmp_path / "repo"
    shutil.copytree(ROOT, repo, ignore=SKIP)
    # Binder builds from the commit, not from a learner's autosaved working tree: run the tour
    # as scripts/build_lessons.py builds it (test_notebooks checks the commit equals that).
    from notebook_sources import generate

    tour = next(g for g in generate() if g.relpath == "notebooks/00_tour.ipynb")
    (repo / tour.relpath).write_text(tour.text)
    venv = tmp_path / "venv"
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("VIRTUAL_ENV", "PYTHONPATH", "CONDA"))}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    sh([sys.executable, "-m", "venv", str(venv)], tmp_path, env)
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    env["VIRTUAL_ENV"] = str(venv)
    python = str(venv / "bin" / "python")
    sh([python, "-m", "pip", "install", "--quiet", *BASE_IMAGE], repo, env)
    sh([python, "-m", "pip", "install", "--quiet", "-r", "binder/requirements.txt"], repo, env)
    sh(["bash", "binder/postBuild"], repo, env)
    # the learner's file browser (the repository, on Binder) reaches no solution
    assert not (repo / "course" / "solutions").exists()
    assert sorted(p.name for p in (repo / "course").iterdir() if p.is_dir()
                  and not p.name.startswith("__")) == ["lessons", "starters"]

    # The panels' server extension is enabled for the image's Jupyter server by the config
    # the install puts in the environment (pyproject shared-data; widgets/_server.py).
    enabled = venv / "etc" / "jupyter" / "jupyter_server_config.d" / "durable_lab.json"
    assert json.loads(enabled.read_text())["ServerApp"]["jpserver_extensions"] == {
        "widgets._server": True}

    # postBuild built the SQL API's SQLite with workerd's row counters (rowsRead/rowsWritten
    # as Cloudflare bills them), and the lab uses it.
    counted = sh([python, "-c", "from durable_lab._sql_driver import ROW_COUNTERS, sqlite3; "
                  "print(ROW_COUNTERS, sqlite3.__name__)"], tmp_path, env)
    assert counted.split() == ["True", "durable_lab_sqlite"], counted

    # Nothing leaks in from the developer's environment: durable_lab comes from the copy.
    where = sh([python, "-c", "import durable_lab; print(durable_lab.__file__)"], tmp_path, env)
    assert where.strip().startswith(str(repo)), where

    runner = textwrap.dedent("""
        import json, sys, time
        import nbformat
        from nbclient import NotebookClient
        nb = nbformat.read(sys.argv[1], as_version=4)
        started = time.perf_counter()
        NotebookClient(nb, timeout=120, kernel_name="python3", allow_errors=True,
                       resources={"metadata": {"path": sys.argv[2]}}).execute()
        errors, texts = [], []
        for cell in nb.cells:
            for out in cell.get("outputs", []):
                if out.output_type == "error":
                    errors.append(f"{out.ename}: {out.evalue}")
                elif out.output_type == "stream":
                    texts.append(out.text)
                elif "data" in out:
                    texts.append(out["data"].get("text/plain", ""))
        print(json.dumps({"errors": errors, "seconds": time.perf_counter() - started,
                          "text": "".join(texts), "kernel": sys.executable}))
    """)
    out = sh([python, "-c", runner, str(repo / "notebooks" / "00_tour.ipynb"), str(tmp_path)],
             repo, env, timeout=300)
    report = json.loads(out.strip().splitlines()[-1])
    assert report["errors"] == []
    assert report["seconds"] < 60
    assert "Exercise 00" in report["text"]
    if (repo / "widgets" / "__init__.py").exists():
        assert "panels are not installed" not in report["text"], \
            "the panels should import in the Binder image"
