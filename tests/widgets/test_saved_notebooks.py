"""What a saved notebook keeps of the live panels (widgets/_server.py), and the page-support
script the panels send (widgets/_lifecycle.py).

The pre-save hook is a function of the notebook's JSON, so it is tested here on synthetic
notebooks and on one really executed in a kernel (nbclient): the outputs a kernel really makes
(widget views, BokehJS loading, the support script) are the ones rewritten. The browser side
(the file JupyterLab writes, the restart note, a closed tab) is tests/browser/
test_lifecycle_browser.py.
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import subprocess

import pytest

from widgets import _lifecycle, _server
from widgets._server import BOKEH_EXEC, BOKEH_LOAD, NOTE_CLASS, WIDGET_VIEW, replace_live_outputs

ROOT = pathlib.Path(__file__).resolve().parents[2]


def _view(plain: str, model_id: str = "abc") -> dict:
    return {"output_type": "display_data", "metadata": {},
            "data": {"text/plain": plain,
                     WIDGET_VIEW: {"version_major": 2, "version_minor": 0, "model_id": model_id}}}


def _load(size: int = 1000) -> dict:
    js = "x" * size
    return {"output_type": "display_data", "metadata": {},
            "data": {"application/javascript": js, BOKEH_LOAD: js}}


def _support() -> dict:
    return {"output_type": "display_data", "metadata": {_lifecycle.FRONTEND_KEY: True},
            "data": {"application/javascript": "1", BOKEH_LOAD: "1"}}


def _nb(*cells_outputs: list[dict]) -> dict:
    return {"nbformat": 4, "nbformat_minor": 5, "metadata": {},
            "cells": [{"cell_type": "markdown", "metadata": {}, "source": "# t"}]
            + [{"cell_type": "code", "metadata": {}, "source": "", "execution_count": 1,
                "outputs": outs} for outs in cells_outputs]}


def test_a_panel_becomes_a_note_naming_it_and_saying_how_to_see_it_again():
    printed = {"output_type": "stream", "name": "stdout", "text": "hello\n"}
    nb = _nb([printed, _view("<Watch open>")])
    counts = replace_live_outputs(nb)
    outs = nb["cells"][1]["outputs"]
    assert counts == {"notes": 1, "frontend": 0, "bokehjs": 0}
    assert outs[0] == printed  # other outputs untouched, in order
    data = outs[1]["data"]
    assert WIDGET_VIEW not in data
    assert f'class="{NOTE_CLASS}"' in data["text/html"]
    assert 'data-panel="Watch"' in data["text/html"]
    assert "live panel (Watch)" in data["text/plain"]
    assert "Run All Cells" in data["text/plain"]
    assert outs[1]["output_type"] == "display_data"


def test_any_other_widget_gets_a_generic_note():
    nb = _nb([_view("IntSlider(value=3)")])
    replace_live_outputs(nb)
    data = nb["cells"][1]["outputs"][0]["data"]
    assert "live widget" in data["text/plain"] and 'data-panel="widget"' in data["text/html"]


def test_a_box_of_panels_names_them():
    nb = _nb([_view("HBox(children=(<FleetView open>, <Metrics open>), layout=Layout(flex_flo…")])
    replace_live_outputs(nb)
    data = nb["cells"][1]["outputs"][0]["data"]
    assert "live panels (FleetView, Metrics)" in data["text/plain"], data
    assert 'data-panel="FleetView Metrics"' in data["text/html"]


def test_an_execute_result_keeps_its_kind_and_count():
    out = {**_view("<Dashboard open>"), "output_type": "execute_result", "execution_count": 7}
    nb = _nb([out])
    replace_live_outputs(nb)
    saved = nb["cells"][1]["outputs"][0]
    assert saved["output_type"] == "execute_result" and saved["execution_count"] == 7
    assert "Dashboard" in saved["data"]["text/plain"]


def test_bokehjs_and_the_support_script_are_dropped_when_nothing_needs_them():
    nb = _nb([_support(), _load(), _support(), _view("<Timeline open>")], [_load()])
    counts = replace_live_outputs(nb)
    assert counts == {"notes": 1, "frontend": 2, "bokehjs": 2}
    assert [list(o["data"]) for o in nb["cells"][1]["outputs"]] == [["text/html", "text/plain"]]
    assert nb["cells"][2]["outputs"] == []


def test_a_static_bokeh_plot_keeps_bokehjs_once():
    static = {"output_type": "display_data", "metadata": {},
              "data": {"text/html": "<div></div>", BOKEH_EXEC: ""}}
    nb = _nb([_load()], [_load(), static])
    counts = replace_live_outputs(nb)
    assert counts["bokehjs"] == 1
    assert BOKEH_LOAD in nb["cells"][1]["outputs"][0]["data"]  # the first copy stays
    assert nb["cells"][2]["outputs"] == [static]


def test_the_hook_rewrites_notebooks_only():
    content = _nb([_view("<Watch open>")])
    model = {"type": "notebook", "content": content}
    _server.pre_save_hook(model=model, path="x.ipynb", contents_manager=None)
    assert WIDGET_VIEW not in content["cells"][1]["outputs"][0]["data"]
    text = {"type": "file", "content": "not a notebook", "format": "text"}
    _server.pre_save_hook(model=text, path="x.txt")
    assert text["content"] == "not a notebook"


def test_the_extension_is_enabled_by_the_config_the_project_installs():
    config = ROOT / "jupyter-config" / "jupyter_server_config.d" / "durable_lab.json"
    enabled = json.loads(config.read_text())["ServerApp"]["jpserver_extensions"]
    assert enabled == {"widgets._server": True}
    assert _server._jupyter_server_extension_points() == [{"module": "widgets._server"}]
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert ('"jupyter-config/jupyter_server_config.d" = "etc/jupyter/jupyter_server_config.d"'
            in pyproject)


def test_the_style_names_the_restart_and_what_to_do():
    script = _lifecycle.frontend_script()
    assert "jupyter-widgets-disconnected" in script and "Kernel restarted" in script
    assert "Run All Cells" in script
    assert "__CSS__" not in script


@pytest.mark.skipif(shutil.which("node") is None, reason="needs node to parse the script")
def test_the_support_script_is_valid_javascript(tmp_path):
    path = tmp_path / "support.js"
    path.write_text(_lifecycle.frontend_script())
    result = subprocess.run(["node", "--check", str(path)], capture_output=True, text=True,
                            check=False)
    assert result.returncode == 0, result.stderr


# -- a notebook really executed in a kernel ---------------------------------------------------

NOTEBOOK = '''\
import widgets
from durable_lab import DurableObject, Lab

class Counter(DurableObject):
    async def increment(self):
        n = (await self.ctx.storage.get("n")) or 0
        self.ctx.storage.put("n", n + 1)
        return n + 1

lab = Lab(storage="memory", seed=1)
COUNTER = lab.bind("COUNTER", Counter)
stub = COUNTER.getByName("a")
board = widgets.watch(lab, stub)
board'''


@pytest.mark.slow
def test_an_executed_notebook_saves_small_with_one_note_per_panel(tmp_path, monkeypatch):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(
        [str(ROOT)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]))
    monkeypatch.delenv("BOKEH_RESOURCES", raising=False)
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell(NOTEBOOK),
        nbformat.v4.new_code_cell("for _ in range(3):\n    await stub.increment()\n"
                                  "widgets.timeline(lab, stub)")])
    nbclient.NotebookClient(nb, timeout=60, kernel_name="python3",
                            resources={"metadata": {"path": tmp_path}}).execute()
    before = len(nbformat.writes(nb))
    kinds = [list(o.get("data", {})) for c in nb.cells for o in c.outputs]
    support = [o for c in nb.cells for o in c.outputs if _lifecycle.FRONTEND_KEY in o.metadata]
    # The first panel's cell: BokehJS (widgets.watch loads it first), the support script, the
    # panel; the later cell: only its panel (once per kernel).
    assert len(support) == 1, kinds
    assert sum(BOKEH_LOAD in k for k in kinds) == 2, kinds
    assert sum(WIDGET_VIEW in k for k in kinds) == 2, kinds
    content = json.loads(nbformat.writes(nb))
    counts = replace_live_outputs(content)
    after = len(json.dumps(content, indent=1))
    # nbclient stores the widget state (as JupyterLab can): the plots' whole documents
    assert counts == {"notes": 2, "frontend": 1, "bokehjs": 1, "state": 1}, counts
    assert before > 2_000_000, before  # BokehJS inline, as the page needs it
    assert after < 20_000, after
    notes = [o["data"]["text/plain"] for c in content["cells"] for o in c["outputs"]]
    assert ["live panel (Watch)" in notes[0], "live panel (Timeline)" in notes[1]] == [True, True]


# -- a real Jupyter server, the extension enabled by the project's config ---------------------


@pytest.mark.slow
def test_a_jupyter_server_with_the_projects_config_saves_notes(tmp_path):
    """``jupyter server`` finds the extension through the config folder an install provides,
    and a notebook saved through its REST API (as JupyterLab saves) lands rewritten."""
    import secrets
    import socket
    import sys
    import time
    import urllib.request

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    token = secrets.token_hex(8)
    env = {k: v for k, v in os.environ.items() if k != "JUPYTER_CONFIG_PATH"}
    env["JUPYTER_CONFIG_PATH"] = str(ROOT / "jupyter-config")
    env["JUPYTER_RUNTIME_DIR"] = str(tmp_path / "runtime")
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    root = tmp_path / "root"
    root.mkdir()
    log = open(tmp_path / "server.log", "w")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [sys.executable, "-m", "jupyter_server", f"--port={port}", "--ServerApp.ip=127.0.0.1",
         "--ServerApp.port_retries=0", "--ServerApp.allow_root=True", "--no-browser",
         f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}"],
        env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}/api"
    headers = {"Authorization": f"token {token}", "Content-Type": "application/json"}
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, (tmp_path / "server.log").read_text()
            try:
                with urllib.request.urlopen(f"{base}/status?token={token}", timeout=2):
                    break
            except OSError:
                assert time.monotonic() < deadline, "jupyter server did not start in 60 s"
                time.sleep(0.2)
        nb = _nb([_support(), _load(50_000), _view("<Watch open>")])
        body = json.dumps({"type": "notebook", "format": "json", "content": nb}).encode()
        req = urllib.request.Request(f"{base}/contents/lesson.ipynb", data=body,
                                     method="PUT", headers=headers)
        with urllib.request.urlopen(req, timeout=20) as r:
            assert r.status in (200, 201)
        saved = json.loads((root / "lesson.ipynb").read_text())
        outs = saved["cells"][1]["outputs"]
        assert [list(o["data"]) for o in outs] == [["text/html", "text/plain"]], outs
        assert "live panel (Watch)" in "".join(outs[0]["data"]["text/plain"])
        assert (root / "lesson.ipynb").stat().st_size < 5_000
    finally:
        req = urllib.request.Request(f"{base}/shutdown", method="POST", headers=headers)
        try:
            urllib.request.urlopen(req, timeout=10).close()
            proc.wait(timeout=20)
        except Exception:
            proc.terminate()
            proc.wait(timeout=10)
        log.close()
    assert "widgets._server" in (tmp_path / "server.log").read_text()


def test_a_new_page_gets_bokehjs_and_the_script_again_with_the_next_panel(monkeypatch):
    """A page that connects to a running kernel afresh (a reload: the saved file has no
    BokehJS) opens ipywidgets' control comm, or (older front ends) asks each widget for its
    state; either way the next panel must send BokehJS and the support script again."""
    from bokeh.plotting import figure

    from widgets import _plots
    from widgets._plots import LiveBokehModel

    g = _lifecycle.page_generation()
    monkeypatch.setattr(_plots, "_loaded_for", g)
    monkeypatch.setattr(_lifecycle, "_styled_for", g)
    monkeypatch.setattr(_lifecycle, "_guarded_for", g)
    plot = LiveBokehModel(figure(width=100, height=100))
    plot._handle_msg({"content": {"data": {"method": "custom", "content": {}}}, "buffers": []})
    assert _lifecycle.page_generation() == g  # other messages: the same page
    plot._handle_msg({"content": {"data": {"method": "request_state"}}, "buffers": []})
    assert _lifecycle.page_generation() == g + 1
    assert _plots._loaded_for != _lifecycle.page_generation()  # ensure_bokehjs sends again
    assert _lifecycle._guarded_for != _lifecycle.page_generation()
    plot.close()


def test_opening_the_widget_control_comm_counts_a_new_page(monkeypatch):
    """ipywidgets 8 front ends open the control comm when they connect: that is the signal."""
    import ipywidgets

    registered = {}

    class Manager:
        def register_target(self, name, fn):
            registered[name] = fn

    seen = []
    monkeypatch.setattr(_lifecycle, "_watching", False)
    monkeypatch.setattr("ipywidgets.comm.get_comm_manager", lambda: Manager())
    monkeypatch.setattr(ipywidgets.Widget, "handle_control_comm_opened",
                        lambda comm, msg: seen.append((comm, msg)))
    _lifecycle._watch_pages()
    g = _lifecycle.page_generation()
    registered["jupyter.widget.control"]("comm", {"metadata": {}})
    assert _lifecycle.page_generation() == g + 1
    assert seen == [("comm", {"metadata": {}})]  # ipywidgets still answers it
