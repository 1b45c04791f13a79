"""A Jupyter server extension: what a saved notebook keeps of the live panels.

A live panel exists only while its kernel runs: the notebook file holds a *reference* to a
widget (``application/vnd.jupyter.widget-view+json``, a model id), not the widget. Reopened
later, every such output shows JupyterLab's "Error displaying widget: model not found" (and a
console error), because no kernel holds that model any more. And the cell that opened the first
plot holds BokehJS itself, embedded twice (as ``application/javascript`` and as jupyter_bokeh's
load type, about 5 MB each): a lesson saved after a run weighed about 8 MB.

So just before a notebook is written (a contents-manager *pre-save hook*, which also runs on
autosave), :func:`replace_live_outputs` rewrites the copy that goes to disk:

- a widget view becomes a short static HTML note saying which panel was there and how to see it
  again (run the cells), so a reopened lesson reads cleanly;
- the page-support outputs the panels emit (:mod:`widgets._lifecycle`) are dropped: they only
  matter to the page that ran them;
- BokehJS loading outputs are dropped when nothing left in the notebook needs BokehJS (no static
  ``bokeh.plotting.show`` output); otherwise the first one is kept and any later copy dropped,
  so BokehJS is saved at most once per notebook;
- saved widget state (``metadata.widgets``, written only if someone turned JupyterLab's "save
  widget state" on) goes too once the views it would draw are notes.

The open page is not touched: the learner keeps the live panels on screen; only the file on
disk differs. The kernel loads BokehJS into the page inline as before (offline, no race with
the first plot), and the file no longer carries it.

Enabled for every server of the environment by ``jupyter-config/.../durable_lab.json``, which
installing the project puts in ``<venv>/etc/jupyter/jupyter_server_config.d/`` (pyproject
shared-data): ``bash scripts/lab.sh`` and Binder (``binder/postBuild``) get it with no
environment variable. ``jupyter server extension list`` shows it as ``widgets._server``.

The rewrite works on the notebook as a plain dict (nbformat 4 JSON): no server import here,
so it is tested headless (tests/widgets/test_saved_notebooks.py).
"""

from __future__ import annotations

import html
import re
from typing import Any

from ._lifecycle import FRONTEND_KEY

__all__ = ["NOTE_CLASS", "replace_live_outputs", "saved_note"]

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
BOKEH_LOAD = "application/vnd.bokehjs_load.v0+json"
BOKEH_EXEC = "application/vnd.bokehjs_exec.v0+json"
#: The class of the static note that replaces a widget view in a saved notebook.
NOTE_CLASS = "dl-saved-panel"

# A panel's text/plain is its repr, ``<Watch open>`` (widgets._base.Panel.__repr__); a box of
# panels (side_by_side) shows theirs among its children: ``HBox(children=(<FleetView open>, ...``
_PANEL_REPR = re.compile(r"<([A-Z][A-Za-z]*) (?:open|closed)>")


def saved_note(plain: str) -> dict[str, str]:
    """The static output that stands for a widget view in the file: HTML and plain text."""
    names = list(dict.fromkeys(_PANEL_REPR.findall(plain)))
    what = (f"live panel{'s' if len(names) > 1 else ''} ({', '.join(names)})" if names
            else "live widget")
    text = (f"[{what}: a saved notebook keeps no live panels. Run the cells again from the "
            f"top (Run > Run All Cells) to see it.]")
    name = html.escape(" ".join(names)) if names else "widget"
    note = (f'<div class="{NOTE_CLASS}" data-panel="{name}" style="font:13px/1.45 sans-serif;'
            f'color:#334155;background:#f1f5f9;border:1px dashed #94a3b8;border-radius:6px;'
            f'padding:6px 10px;margin:2px 0;max-width:60em">&#9632; <b>{html.escape(what)}</b>:'
            f' a saved notebook keeps no live panels. Run the cells again from the top '
            f'(<i>Run &#9656; Run All Cells</i>) to see it.</div>')
    return {"text/html": note, "text/plain": text}


def _text(value: Any) -> str:
    return "".join(value) if isinstance(value, list) else str(value or "")


def replace_live_outputs(nb: dict[str, Any]) -> dict[str, int]:
    """Rewrite ``nb`` (nbformat 4 as a dict) in place for saving; returns what it changed:
    ``{"notes": widget views replaced, "frontend": support outputs dropped, "bokehjs":
    BokehJS loads dropped}``, plus ``"state": 1`` if saved widget state was dropped."""
    counts = {"notes": 0, "frontend": 0, "bokehjs": 0}
    cells = [c for c in nb.get("cells", ()) if c.get("cell_type") == "code"]
    needs_bokehjs = any(BOKEH_EXEC in (o.get("data") or {})
                        for c in cells for o in c.get("outputs", ()))
    kept_bokehjs = False
    for cell in cells:
        outputs = []
        for out in cell.get("outputs", ()):
            data = out.get("data") or {}
            meta = out.get("metadata") or {}
            if FRONTEND_KEY in meta:
                counts["frontend"] += 1
                continue
            if BOKEH_LOAD in data:
                if needs_bokehjs and not kept_bokehjs:
                    kept_bokehjs = True
                    outputs.append(out)
                else:
                    counts["bokehjs"] += 1
                continue
            if WIDGET_VIEW in data:
                counts["notes"] += 1
                out = {**out, "data": saved_note(_text(data.get("text/plain"))),
                       "metadata": {"durable_lab": {"saved_widget": True}}}
            outputs.append(out)
        if "outputs" in cell:
            cell["outputs"] = outputs
    # Saved widget state (JupyterLab's "save widget state" setting, nbclient) only serves to
    # draw the views just replaced: the panels' plots would carry their whole documents.
    metadata = nb.get("metadata") or {}
    if counts["notes"] and "widgets" in metadata:
        del metadata["widgets"]
        counts["state"] = 1
    return counts


def pre_save_hook(model: dict[str, Any], path: str = "", contents_manager: Any = None,
                  **kwargs: Any) -> None:
    """The contents manager's hook: notebooks only, rewritten in place."""
    if model.get("type") != "notebook" or not isinstance(model.get("content"), dict):
        return
    counts = replace_live_outputs(model["content"])
    log = getattr(contents_manager, "log", None)
    if log is not None and any(counts.values()):
        log.info("durable_lab: saved %s without live state (%s)", path,
                 ", ".join(f"{k} {v}" for k, v in counts.items()))


def _jupyter_server_extension_points() -> list[dict[str, str]]:
    return [{"module": "widgets._server"}]


def _load_jupyter_server_extension(serverapp: Any) -> None:
    serverapp.contents_manager.register_pre_save_hook(pre_save_hook)
    serverapp.log.info("durable_lab: saved notebooks keep notes instead of live panels")
