"""A plot's view made late draws the present; late messages to closed comms are not errors.

Headless halves of two browser-found defects of issue #9 (the browser halves:
tests/browser/test_same_cell_browser.py and test_dashboard_lifecycle_browser.py):

- a jupyter_bokeh view draws ``render_bundle``, a snapshot from when the plot was made, and
  hears only later patches: ``LiveBokehModel.refresh_bundle`` re-takes it when patches went out
  since, on display and when a new view reports ``DocumentReady``;
- re-running a panel's cell closes the old panel's comms while its views still send; the
  "No such comm" warning for those comms is dropped, for no other comm.
"""

from __future__ import annotations

import logging

import ipywidgets as w
from bokeh.models import ColumnDataSource
from bokeh.plotting import figure

from widgets import _comms
from widgets._plots import LiveBokehModel

DOCUMENT_READY = {"event": "jsevent", "kind": "MessageSent", "msg_type": "bokeh_event",
                  "msg_data": {"type": "event", "name": "document_ready", "values": {
                      "type": "map", "entries": []}}}


def _plot():
    source = ColumnDataSource({"x": [], "y": []}, name="rows")
    fig = figure(width=200, height=100)
    fig.scatter(x="x", y="y", source=source)
    return LiveBokehModel(fig), source


def _rows_in_bundle(model: LiveBokehModel) -> int:
    """Rows of the source named ``rows`` in the snapshot a new view would draw."""
    found = _find_rows(model.render_bundle["docs_json"])
    assert found is not None, "no data source named 'rows' in the bundle"
    return found


def _find_rows(node):
    if isinstance(node, dict):
        if node.get("name") == "ColumnDataSource" or node.get("type") == "object":
            attrs = node.get("attributes", {})
            if attrs.get("name") == "rows":
                data = attrs["data"]
                entries = dict(data["entries"]) if isinstance(data, dict) and "entries" in data \
                    else data
                column = entries["x"]
                return len(column) if isinstance(column, list) else column.get("shape", [0])[0]
        for value in node.values():
            found = _find_rows(value)
            if found is not None:
                return found
    elif isinstance(node, list):
        for value in node:
            found = _find_rows(value)
            if found is not None:
                return found
    return None


def test_the_bundle_is_the_snapshot_from_construction_until_refreshed():
    model, source = _plot()
    source.stream({"x": [1, 2, 3], "y": [1, 2, 3]})
    assert model.patches_since_bundle == 1
    assert _rows_in_bundle(model) == 0  # what a view made now would draw: the bug
    assert model.refresh_bundle() is True
    assert _rows_in_bundle(model) == 3 and model.patches_since_bundle == 0
    assert model.refresh_bundle() is False  # nothing new: views are not re-drawn for nothing


def test_a_new_view_gets_a_fresh_snapshot_a_redrawn_one_does_not():
    model, source = _plot()
    source.stream({"x": [1], "y": [1]})
    model._sync_model(model, dict(DOCUMENT_READY), [])  # a view made from the old snapshot
    assert model.bundle_refreshes == 1 and _rows_in_bundle(model) == 1
    # That snapshot makes every view re-draw: each first clears its document (RootRemoved),
    # then reports DocumentReady again. Answering it would loop while patches flow.
    source.stream({"x": [2], "y": [2]})
    model._sync_model(model, {"event": "jsevent", "kind": "RootRemoved",
                              "model": {"id": model._model.id}}, [])
    model._sync_model(model, dict(DOCUMENT_READY), [])
    assert model.bundle_refreshes == 1
    # A genuinely new view later (page reloaded, a second view of the output) is answered.
    model._sync_model(model, dict(DOCUMENT_READY), [])
    assert model.bundle_refreshes == 2 and _rows_in_bundle(model) == 2


def test_displaying_a_panel_refreshes_its_plots_first(lab):
    from widgets._base import Panel

    class Box(Panel):
        kind = "late-view-test"

        def apply(self, event):
            return None

        def draw(self) -> None:
            return None

    model, source = _plot()
    panel = Box(lab, register=False)
    panel.children = (w.VBox([w.HBox([model])]),)  # the plot two boxes down
    source.stream({"x": [1, 2], "y": [1, 2]})
    panel._repr_mimebundle_()  # what IPython calls for display(panel) or a last expression
    assert _rows_in_bundle(model) == 2 and model.bundle_refreshes == 1
    panel.close()


def test_no_such_comm_is_quiet_only_for_comms_the_panels_closed(caplog):
    closed, other = w.Button(), w.Button()
    closed_id, other_id = closed.comm.comm_id, other.comm.comm_id
    _comms.forget_comm_of(closed)
    closed.close()
    log = logging.getLogger("Comm")
    with caplog.at_level(logging.WARNING, logger="Comm"):
        log.warning("No such comm: %s", closed_id)
        log.warning("No such comm: %s", other_id)
    assert [r.getMessage() for r in caplog.records] == [f"No such comm: {other_id}"]
    assert closed_id in _comms.closed_comm_ids()
    other.close()


def test_the_closed_list_is_bounded(monkeypatch):
    monkeypatch.setattr(_comms, "MAX_REMEMBERED", 3)
    buttons = [w.Button() for _ in range(5)]
    for b in buttons:
        _comms.forget_comm_of(b)
    assert _comms.closed_comm_ids()[-3:] == [b.comm.comm_id for b in buttons[-3:]]
    assert len(_comms.closed_comm_ids()) == 3
    for b in buttons:
        b.close()
