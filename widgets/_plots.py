"""Bokeh helpers: the echo-safe ``BokehModel`` and BokehJS loading."""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np
from bokeh.protocol import Protocol
from jupyter_bokeh.widgets import BokehModel

from . import _lifecycle, _threads
from ._lifecycle import ensure_frontend

__all__ = ["LiveBokehModel", "ensure_bokehjs", "stream_columns"]

_loaded_for: int | None = None  # the page generation BokehJS was sent to (_lifecycle)


class LiveBokehModel(BokehModel):  # type: ignore[misc]
    """``BokehModel`` that ignores the front end's echo and re-sends its state to a late view.

    Echo: jupyter_bokeh 4.1.0 sends back every change BokehJS makes while applying a patch from
    the kernel; ``stream()`` rows would then be appended twice in Python (see
    docs/panels.md, "Known issues"). The panels never let the browser edit data, so
    streamed/patched columns and ``data`` changes coming from the front end are dropped;
    selections (a tap on the fleet grid) still come through.

    Late views: a jupyter_bokeh view draws the document from ``render_bundle``, a snapshot
    taken when the model was made, and from then on only hears the patches (``stream``,
    ``patch``, new ``data``) sent while it exists; the front end keeps no patch for a view
    made later. So a panel whose plots changed before their view existed (the panel opened and
    a workload run in the same cell, a page reloaded, a second view of the same output) drew
    the stale snapshot plus whatever came after: a Timeline whose rows were all streamed
    before it was displayed stayed blank for good. Two repairs, both re-taking the snapshot
    (``refresh_bundle``) only when patches were sent since the last one:

    - ``Panel._repr_mimebundle_`` calls :meth:`refresh_bundle` on every plot of the panel just
      before the panel is displayed, so the view starts from the present;
    - every new BokehJS view announces itself once it has drawn (Bokeh's ``DocumentReady``
      event, sent as a ``jsevent``); if patches went out since the last snapshot (the view may
      have been built from an older one), the snapshot is re-taken and the views re-draw from
      it. A view re-drawing because of a new snapshot first sends ``RootRemoved`` (jupyter_bokeh
      clears its old document), and its ``DocumentReady`` is then not answered: no loop.
    """
    _dl_closed = False

    def __init__(self, model: Any, **kwargs: Any) -> None:
        # The view needs BokehJS in the page; load it here so that every panel with a plot
        # works however it was made (``Timeline(lab)`` as well as ``widgets.timeline(lab)``).
        ensure_bokehjs()
        # Messages from the views are handled on the thread drawing the frames (_threads).
        self._home = _threads.here()
        self.patches_since_bundle = 0  # patches sent since render_bundle was last taken
        self.bundle_refreshes = 0
        self._redraws_announced = 0  # views re-drawing from a new snapshot (RootRemoved seen)
        self._batch: list[Any] | None = None  # events of the frame being drawn (see frame())
        super().__init__(model, **kwargs)

    def _document_patched(self, event: Any) -> None:
        if event.setter is self:  # the front end's own change, echoed back: nothing to send
            return
        self.patches_since_bundle += 1
        if self._batch is not None:
            self._batch.append(event)
            return
        self._send_patch([event])

    @contextlib.contextmanager
    def frame(self) -> Iterator[None]:
        """Draw a frame: every change made inside goes out as ONE patch message at the end.

        jupyter_bokeh sends each document change as its own ``PATCH-DOC`` message, and Bokeh
        serialises each one against every model of the document (a few milliseconds for a
        gridplot). A frame that streams rows, moves two ranges and renames a title made six of
        them, 25 times a second: at saturation that was most of the cost of watching. One
        message per frame carries the same events (combined by ``Document.hold``)."""
        doc = self._model.document if self._model is not None else None
        if self._batch is not None or doc is None:  # nested, or not in a document
            yield
            return
        self._batch = []
        doc.hold("combine")
        try:
            yield
        finally:
            try:
                doc.unhold()  # dispatches the combined events: into self._batch
            finally:
                events, self._batch = self._batch, None
                if events and not self._dl_closed:
                    self._send_patch(events)

    def _send_patch(self, events: list[Any]) -> None:
        msg = Protocol().create("PATCH-DOC", events)
        self.send({"msg": "patch", "payload": msg.header_json})
        self.send({"msg": "patch", "payload": msg.metadata_json})
        self.send({"msg": "patch", "payload": msg.content_json})
        for buffer in msg.buffers:
            self.send({"msg": "patch", "payload": json.dumps(buffer.ref)})
            self.send({"msg": "patch"}, [buffer.to_bytes()])

    def refresh_bundle(self) -> bool:
        """Re-take ``render_bundle`` from the document as it is now, if any patch was sent
        since it was last taken (a view drawn from it would miss them). Views that exist
        re-draw from it. Returns whether it did."""
        if self.patches_since_bundle == 0 or self._dl_closed or self._model is None:
            return False
        self.patches_since_bundle = 0
        self.bundle_refreshes += 1
        self.render_bundle = self._model_to_traits(self._model)
        return True

    def close(self) -> None:
        # jupyter_bokeh's close() fails the second time (Widget.__del__ closes again).
        if self._dl_closed:
            return
        self._dl_closed = True
        super().close()

    def _handle_msg(self, msg: dict[str, Any]) -> None:
        # JupyterLab may deliver it on a subshell's thread: a change to the document from
        # there, while a frame is being drawn into it, lost the frame's events and stopped
        # the patches for good (widgets/_threads.py). Handle it where the frames are drawn.
        _threads.call_at_home(self._home, self._handle_msg_at_home, msg)

    def _handle_msg_at_home(self, msg: dict[str, Any]) -> None:
        if self._dl_closed:
            return
        # A front end asking for the state of a model it did not make (older ipywidgets front
        # ends; version 8 uses the control comm, see _lifecycle): a page that connected to this
        # kernel afresh. Saved notebooks hold no BokehJS (widgets/_server.py), so that page may
        # have none: the next panel loads it again.
        data = msg.get("content", {}).get("data", {})
        if isinstance(data, dict) and data.get("method") == "request_state":
            _lifecycle.new_page()
        super()._handle_msg(msg)

    def _sync_model(self, model: Any, content: dict[str, Any], buffers: list[Any]) -> None:
        kind = content.get("kind")
        if kind == "RootRemoved":  # a view clears its document to re-draw from a new snapshot
            self._redraws_announced += 1
            return
        if kind == "MessageSent" and _event_name(content) == "document_ready":
            if self._redraws_announced:  # that re-draw is done, from the latest snapshot
                self._redraws_announced -= 1
            else:  # a new view: it was drawn from the snapshot the front end had
                self.refresh_bundle()
            return
        if kind in ("ColumnsStreamed", "ColumnsPatched"):
            return
        if kind == "ModelChanged" and content.get("attr") == "data":
            return
        super()._sync_model(model, content, buffers)


def stream_columns(source: Any, rows: Mapping[str, Sequence[Any]], rollover: int,
                   types: Mapping[str, Any]) -> None:
    """``source.stream(rows, rollover)`` as NumPy columns, and only the rows that stay.

    Bokeh encodes a list column value by value (about a microsecond each: a busy lab streams
    thousands of rows a second to the timeline, and that was most of what drawing it cost),
    a NumPy column in one piece: numbers as a binary buffer, text (a ``<U`` array) as one JSON
    list. ``types`` gives each numeric column's NumPy type, always the same one (BokehJS keeps
    the typed array of the first stream: floats streamed into an ``Int32Array`` would be cut);
    the other columns are text. Rows beyond ``rollover`` would be dropped by the stream at
    once: they are not sent.
    """
    n = len(next(iter(rows.values())))
    cut = n - rollover if rollover and n > rollover else 0
    data: dict[str, Any] = {}
    for name, values in rows.items():
        if cut:
            values = values[cut:]
        data[name] = np.array(values, dtype=types.get(name, np.str_))
    source.stream(data, rollover=rollover)


def _event_name(content: dict[str, Any]) -> str | None:
    data = content.get("msg_data")
    return data.get("name") if isinstance(data, dict) else None


def ensure_bokehjs(resources: Any = None) -> None:
    """Load BokehJS into the notebook page once per page and kernel (``BokehModel`` needs it).

    BokehJS is embedded in the page (``bokeh.resources.INLINE``) by default, so the panels draw
    with no network: Bokeh's own default fetches it from cdn.bokeh.org, and a workshop room
    often has no internet (the plots then show "Click to show javascript error"). Inline works
    wherever the notebook runs, Binder included; it costs a few MB in the output of the cell
    that opened the first panel, in the page.

    Saved notebooks do not keep it: the project's server extension drops BokehJS (and every
    panel's live output) from the file when a notebook is saved (widgets/_server.py).

    Who asked for something else gets it: ``resources`` (``"cdn"``, ``"inline"`` or a
    ``bokeh.resources.Resources``), or else a ``BOKEH_RESOURCES`` environment variable, which
    Bokeh reads itself. Outside a Jupyter kernel (tests, scripts) this does nothing.
    """
    global _loaded_for
    if _loaded_for == _lifecycle.page_generation():
        return
    if _lifecycle.kernel_shell() is None:
        return
    from bokeh.io import output_notebook
    from bokeh.resources import INLINE, Resources

    output_notebook(resources=_resources(resources, os.environ, INLINE, Resources),
                    hide_banner=True)
    _loaded_for = _lifecycle.page_generation()
    # The restart note's style and the guard that keeps closed tabs quiet (widgets/_lifecycle).
    ensure_frontend(bokeh=True)


def _resources(asked: Any, environ: Mapping[str, str], inline: Any, make: Any) -> Any:
    """The BokehJS resources to load: ``asked`` if given, Bokeh's choice (None) when the
    environment sets ``BOKEH_RESOURCES``, else ``inline``."""
    if asked is not None:
        return make(mode=asked) if isinstance(asked, str) else asked
    if environ.get("BOKEH_RESOURCES"):
        return None  # output_notebook() then uses bokeh.settings.resources(), i.e. the variable
    return inline
