"""Bokeh helpers: the echo-safe ``BokehModel`` and BokehJS loading."""

from __future__ import annotations

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


def ensure_bokehjs() -> None:
    """Load BokehJS into the notebook page once per kernel (``BokehModel`` needs it).

    Outside a Jupyter kernel (tests, scripts) this does nothing. Offline, start Jupyter with
    ``BOKEH_RESOURCES=inline`` so BokehJS is embedded instead of fetched from the CDN.
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

    output_notebook(hide_banner=True)
    _loaded = True
