"""Bokeh helpers: the echo-safe ``BokehModel`` and BokehJS loading."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from jupyter_bokeh.widgets import BokehModel

__all__ = ["LiveBokehModel", "ensure_bokehjs"]

_loaded = False


class LiveBokehModel(BokehModel):  # type: ignore[misc]
    """``BokehModel`` that ignores the front end's echo of what the kernel sent.

    jupyter_bokeh 4.1.0 sends back every change BokehJS makes while applying a patch from the
    kernel; ``stream()`` rows would then be appended twice in Python (see
    docs/panels.md, "Known issues"). The panels never let the browser edit data, so
    streamed/patched columns and ``data`` changes coming from the front end are dropped;
    selections (a tap on the fleet grid) still come through.
    """

    _dl_closed = False

    def __init__(self, model: Any, **kwargs: Any) -> None:
        # The view needs BokehJS in the page; load it here so that every panel with a plot
        # works however it was made (``Timeline(lab)`` as well as ``widgets.timeline(lab)``).
        ensure_bokehjs()
        super().__init__(model, **kwargs)

    def close(self) -> None:
        # jupyter_bokeh's close() fails the second time (Widget.__del__ closes again).
        if self._dl_closed:
            return
        self._dl_closed = True
        super().close()

    def _sync_model(self, model: Any, content: dict[str, Any], buffers: list[Any]) -> None:
        kind = content.get("kind")
        if kind in ("ColumnsStreamed", "ColumnsPatched"):
            return
        if kind == "ModelChanged" and content.get("attr") == "data":
            return
        super()._sync_model(model, content, buffers)


def ensure_bokehjs(resources: Any = None) -> None:
    """Load BokehJS into the notebook page once per kernel (``BokehModel`` needs it).

    BokehJS is embedded in the page (``bokeh.resources.INLINE``) by default, so the panels draw
    with no network: Bokeh's own default fetches it from cdn.bokeh.org, and a workshop room
    often has no internet (the plots then show "Click to show javascript error"). Inline works
    wherever the notebook runs, Binder included; it costs a few MB in the output of the cell
    that opened the first panel (only on disk if that notebook is saved with outputs).

    Who asked for something else gets it: ``resources`` (``"cdn"``, ``"inline"`` or a
    ``bokeh.resources.Resources``), or else a ``BOKEH_RESOURCES`` environment variable, which
    Bokeh reads itself. Outside a Jupyter kernel (tests, scripts) this does nothing.
    """
    global _loaded
    if _loaded:
        return
    try:
        from IPython import get_ipython
    except ImportError:
        return
    shell = get_ipython()
    if shell is None or not hasattr(shell, "kernel"):
        return
    from bokeh.io import output_notebook
    from bokeh.resources import INLINE, Resources

    output_notebook(resources=_resources(resources, os.environ, INLINE, Resources),
                    hide_banner=True)
    _loaded = True


def _resources(asked: Any, environ: Mapping[str, str], inline: Any, make: Any) -> Any:
    """The BokehJS resources to load: ``asked`` if given, Bokeh's choice (None) when the
    environment sets ``BOKEH_RESOURCES``, else ``inline``."""
    if asked is not None:
        return make(mode=asked) if isinstance(asked, str) else asked
    if environ.get("BOKEH_RESOURCES"):
        return None  # output_notebook() then uses bokeh.settings.resources(), i.e. the variable
    return inline
