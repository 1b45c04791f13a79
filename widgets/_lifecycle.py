"""What the page needs for a panel's end of life: a note after a kernel restart, quiet tab closes.

Two things happen to a panel's views that no kernel-side code sees:

- **The kernel restarts.** ipywidgets then marks every widget view of that notebook with the
  class ``jupyter-widgets-disconnected`` (its own CSS draws a red broken-link icon on each one)
  and the views stay on screen, still saying "live" and "PAUSED". The panels' lifecycle CSS
  (``widgets._theme.LIFECYCLE_CSS``) turns that class into one note per panel ("Kernel
  restarted: ... Run the cells again ..."), hides the words that claim liveness and greys the
  last picture.
- **The notebook's tab closes (or the kernel restarts) while plots are on screen.** jupyter_bokeh
  4.1's view forwards every change of its BokehJS document to the kernel, and never stops: it
  keeps its document when the view is removed. The plots being detached resize, BokehJS
  records the new sizes as document changes, and each one is sent on a comm whose kernel
  connection is gone: ``Error: Cannot send``, uncaught (about 160 for a lesson's tab). The
  guard below wraps the callbacks registered on a BokehJS ``Document``: the first "Cannot send"
  from one unhooks it from that document (nothing sent on that comm can ever arrive), and any
  other error goes on as before. ``window.__durableLab.silenced`` counts the unhooked callbacks.

Both ship as one small script, published once per page as a display output (the first panel's
cell): :func:`ensure_frontend`. It runs again after BokehJS is loaded (``ensure_bokehjs``), since
the guard patches BokehJS's ``Document`` class, which a page that loads BokehJS again replaces.
The output is marked (``durable_lab_frontend`` in its metadata) so that saving drops it
(widgets/_server.py): it matters only to the page that ran it. Since saved notebooks keep
neither BokehJS nor this script, a page that connects to a running kernel afresh (reloaded, a
second window) has neither. Its widget manager announces itself by opening ipywidgets' control
comm (to ask for every widget's state; older front ends ask each widget, ``request_state``):
the kernel then counts a new page (:func:`new_page`), and the next panel sends BokehJS
(``ensure_bokehjs``) and the script again. A mere reconnection counts too: BokehJS is then sent
once more than needed, which costs page memory, nothing else.
"""

from __future__ import annotations

import json
from typing import Any

from ._theme import LIFECYCLE_CSS

__all__ = ["FRONTEND_KEY", "ensure_frontend", "frontend_script", "new_page", "page_generation"]

#: Output metadata key marking the page-support output (the save hook drops such outputs).
FRONTEND_KEY = "durable_lab_frontend"
_BOKEH_LOAD = "application/vnd.bokehjs_load.v0+json"

#: Bumped when a page may have connected to this kernel afresh (see :func:`new_page`).
_page = 0
_styled_for: int | None = None  # the page generation the style was sent to
_guarded_for: int | None = None  # ... and the BokehJS guard, after BokehJS was loaded
_watching = False  # the widget control comm is watched for new pages

# Written for this project. ``__CSS__`` is replaced by the lifecycle CSS as a JSON string.
_SCRIPT = """(function (root) {
  "use strict";
  var state = root.__durableLab = root.__durableLab || {silenced: 0};
  // 1. The lifecycle style, once per page; a later kernel's copy replaces the text.
  var style = document.getElementById("dl-lifecycle-style");
  if (!style) {
    style = document.createElement("style");
    style.id = "dl-lifecycle-style";
    document.head.appendChild(style);
  }
  style.textContent = __CSS__;
  // 2. The guard on BokehJS documents (only once BokehJS is in the page).
  var Bokeh = root.Bokeh;
  if (!Bokeh || typeof Bokeh.require !== "function") { return; }
  resyncReceivers(Bokeh, state);
  var Document;
  try { Document = Bokeh.require("document").Document; } catch (e) { return; }
  var proto = Document.prototype;
  if (!proto || proto.__dlGuarded) { return; }
  proto.__dlGuarded = true;
  state.guarded = (state.guarded || 0) + 1;
  var onChange = proto.on_change, removeOnChange = proto.remove_on_change;
  proto.on_change = function (callback, allowBatches) {
    var doc = this;
    var guards = doc.__dlGuards || (doc.__dlGuards = new Map());
    var guard = guards.get(callback);
    if (!guard) {
      guard = function (event) {
        try {
          return callback(event);
        } catch (err) {
          // "Cannot send": the comm this document's widget view sends on belongs to a kernel
          // connection that is gone (tab closed, kernel restarted). It never comes back.
          if (!err || err.message !== "Cannot send") { throw err; }
          removeOnChange.call(doc, guard);
          guards.delete(callback);
          state.silenced += 1;
        }
      };
      guards.set(callback, guard);
    }
    return onChange.call(doc, guard, allowBatches);
  };
  proto.remove_on_change = function (callback) {
    var guard = this.__dlGuards && this.__dlGuards.get(callback);
    if (guard) { this.__dlGuards.delete(callback); }
    return removeOnChange.call(this, guard || callback);
  };

  // 3. Patch receivers that find their place again. A jupyter_bokeh view hears a patch as a
  // series of comm messages (header, metadata, content, then a reference and the bytes of each
  // buffer), which a BokehJS Receiver puts together in that order. A view made while a patch
  // was on its way hears the middle of it first; the Receiver then takes a fragment for the
  // wrong part, throws on the next binary one, and from there on stays out of step: every later
  // patch is lost (a timeline kept 33 of 53 rows for good). Here a receiver waiting for a header
  // skips what is not one, and one that meets a fragment out of place starts over at the next
  // header; the patch it missed is made good by the snapshot the kernel re-takes when the view
  // reports that it has drawn (widgets/_plots.py).
  function resyncReceivers(Bokeh, state) {
    var Receiver;
    try { Receiver = Bokeh.require("protocol/receiver").Receiver; } catch (e) { return; }
    var proto = Receiver && Receiver.prototype;
    if (!proto || proto.__dlResync || typeof proto._HEADER !== "function") { return; }
    proto.__dlResync = true;
    state.resynced = state.resynced || 0;
    var takeHeader = proto._HEADER, consume = proto.consume;
    function isHeader(fragment) {
      if (typeof fragment !== "string") { return false; }
      try {
        var header = JSON.parse(fragment);
        return header !== null && typeof header.msgid === "string" &&
               typeof header.msgtype === "string";
      } catch (e) { return false; }
    }
    function startOver(receiver) {
      receiver.message = null;  // the view must not apply the last whole patch a second time
      receiver._partial = null;
      receiver._fragments = [];
      receiver._buf_header = null;
      receiver._current_consumer = receiver._HEADER;
    }
    proto._HEADER = function (fragment) {
      if (!isHeader(fragment)) { startOver(this); state.resynced += 1; return; }
      return takeHeader.call(this, fragment);
    };
    proto.consume = function (fragment) {
      try {
        return consume.call(this, fragment);
      } catch (err) {
        startOver(this);
        state.resynced += 1;
      }
    };
  }
})(window);
"""


def frontend_script() -> str:
    """The page-support script (style and BokehJS guard), as sent to the page."""
    return _SCRIPT.replace("__CSS__", json.dumps(LIFECYCLE_CSS))


def page_generation() -> int:
    """How many times a page may have connected to this kernel afresh (0: the first one)."""
    return _page


def new_page() -> None:
    """A page may have connected without the script or BokehJS (a reload, a second window:
    saved notebooks keep neither): the next panel sends them again."""
    global _page
    _page += 1


def kernel_shell() -> Any:
    """The IPython shell of the Jupyter kernel this runs in, or None (tests, scripts, a
    terminal IPython): only a kernel has a page to send scripts and plots to."""
    try:
        from IPython import get_ipython
    except ImportError:
        return None
    shell = get_ipython()
    return shell if shell is not None and hasattr(shell, "kernel") else None


def ensure_frontend(*, bokeh: bool = False) -> None:
    """Send the page-support script once per page; again once BokehJS is loaded (``bokeh``:
    called right after loading it). Outside a Jupyter kernel this does nothing."""
    global _styled_for, _guarded_for
    if _guarded_for == _page or (_styled_for == _page and not bokeh):
        return
    if kernel_shell() is None:
        return
    from IPython.display import publish_display_data

    _watch_pages()
    script = frontend_script()
    publish_display_data({"application/javascript": script, _BOKEH_LOAD: script},
                         metadata={FRONTEND_KEY: True})
    _styled_for = _page
    if bokeh:
        _guarded_for = _page


def _watch_pages() -> None:
    """Count a new page whenever a front end opens ipywidgets' control comm: each widget
    manager does that when it connects to the kernel (ipywidgets 8: a page loaded or reloaded,
    a second window, a reconnection), to ask for every widget's state."""
    global _watching
    if _watching:
        return
    _watching = True
    try:
        from ipywidgets import Widget
        from ipywidgets.comm import get_comm_manager
    except ImportError:
        return
    manager = get_comm_manager()
    opened = getattr(Widget, "handle_control_comm_opened", None)
    if manager is None or opened is None:
        return

    def control_comm_opened(comm: Any, msg: Any) -> Any:
        new_page()
        return opened(comm, msg)

    manager.register_target("jupyter.widget.control", control_comm_opened)
