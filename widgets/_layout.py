"""Panels next to each other: ``widgets.side_by_side(a, b)``.

A plain ``HBox`` with ``flex_flow="row wrap"`` stacked its panels in a normal JupyterLab window:
each panel asked for its natural width (a fleet of 420 px and its summary line, four metric
plots of 360 px, an object view of 100 %), together more than the 1000-1200 px of an output
area, so the second one wrapped below the first. Here every panel gets a *cell* that may shrink:

- a cell starts from its panel's **minimum width** (``SHRINK`` of the natural width, at least
  ``MIN_PX``) and grows in proportion to the natural width, so two panels share a row in
  proportion to what they would take alone, and the row wraps only when even their minimum
  widths do not fit (``flex: natural 1 minimum``, ``min-width: minimum``);
- the panel's Bokeh plots follow their cell's width (``sizing_mode="stretch_width"``, never
  wider than they were made: ``max_width``), instead of keeping a fixed width that overflows;
  HTML panels already follow their container;
- a panel whose text is sized for its plot's width (the fleet's cell labels) is told how
  narrow it may get (``panel.fit_width(pixels)``) and cuts its labels for that;
- a panel that still cannot fit its cell scrolls inside it (``overflow: auto``), never over
  its neighbour.

The layout lives in the widgets' traits (tested headless: tests/widgets/test_side_by_side.py).
"""

from __future__ import annotations

from typing import Any

import ipywidgets as w
from bokeh.models import GridPlot, LayoutDOM, Plot

from ._plots import LiveBokehModel

__all__ = ["SHRINK", "SideBySide", "natural_width"]

#: A panel may shrink to this share of its natural width before the row wraps.
SHRINK = 0.6
#: ... but never below this many pixels (narrower, labels and buttons stop being readable).
MIN_PX = 300
#: The natural width of a panel without plots (HTML: it takes what its cell gives).
HTML_PANEL_PX = 560
#: Room for the toolbar Bokeh draws beside a plot (``toolbar_location="right"``).
TOOLBAR_PX = 30
#: Space between two cells.
GAP_PX = 8


def _plots_under(widget: Any) -> list[LiveBokehModel]:
    out, stack = [], [widget]
    while stack:
        x = stack.pop()
        if isinstance(x, LiveBokehModel):
            out.append(x)
        stack.extend(getattr(x, "children", ()))
    return out


def _bokeh_width(model: Any) -> int:
    """The width a Bokeh layout takes at its fixed size (plots, grids, rows and columns)."""
    if isinstance(model, GridPlot):
        columns: dict[int, int] = {}
        for child, _row, col, *_ in model.children:
            columns[col] = max(columns.get(col, 0), _bokeh_width(child))
        toolbar = TOOLBAR_PX if model.toolbar_location in ("left", "right") else 0
        return sum(columns.values()) + toolbar
    if isinstance(model, Plot):
        toolbar = TOOLBAR_PX if model.toolbar_location in ("left", "right") else 0
        return int(model.width or 600) + toolbar
    children = getattr(model, "children", None)
    if children:
        widths = [_bokeh_width(c) for c in children]
        return sum(widths) if type(model).__name__ == "Row" else max(widths)
    return int(getattr(model, "width", None) or 0)


def natural_width(panel: Any) -> int:
    """How wide ``panel`` is drawn alone, in pixels: its widest plot, or ``HTML_PANEL_PX``."""
    plots = [_bokeh_width(p._model) for p in _plots_under(panel) if p._model is not None]
    return max(plots) if plots else HTML_PANEL_PX


def _stretch(model: Any, widest: int) -> None:
    """Let a Bokeh layout (a plot, a grid of plots, a column) follow its container's width,
    up to ``widest`` pixels; heights stay as they were made."""
    for m in model.select({"type": LayoutDOM}):
        m.sizing_mode = "stretch_width"
    model.max_width = widest


class SideBySide(w.HBox):
    """``panels`` in one row of shrinkable cells that wraps only when too narrow (see module)."""

    def __init__(self, panels: list[Any]) -> None:
        if not panels:
            raise ValueError("side_by_side() needs at least one panel, got none")
        for p in panels:
            if not isinstance(p, w.DOMWidget):
                raise TypeError(f"side_by_side() takes panels (widgets), got "
                                f"{type(p).__name__}: {p!r}")
        self.panels = tuple(panels)
        cells = []
        for panel in panels:
            natural = natural_width(panel)
            least = max(MIN_PX, round(natural * SHRINK))
            for plot in _plots_under(panel):
                if plot._model is not None:
                    _stretch(plot._model, natural)
                plot.layout.width = "100%"  # the plot's element follows the cell
            fit = getattr(panel, "fit_width", None)
            if fit is not None:  # text sized for the narrowest the plot may get (the fleet)
                fit(least - TOOLBAR_PX)
            cell = w.VBox([panel], layout=w.Layout(
                flex=f"{natural} 1 {least}px", min_width=f"{least}px", max_width="100%",
                overflow="auto", margin=f"0 {GAP_PX}px {GAP_PX}px 0"))
            cell.add_class("dl-side-cell")
            cells.append(cell)
        super().__init__(cells, layout=w.Layout(
            display="flex", flex_flow="row wrap", align_items="flex-start", width="100%"))
        self.add_class("dl-side-by-side")

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        # As Panel._repr_mimebundle_: the plots' views start from a fresh snapshot (the
        # sizing changed above, and rows may have been streamed since the panels opened).
        for plot in _plots_under(self):
            plot.refresh_bundle()
        return super()._repr_mimebundle_(**kwargs)
