"""``widgets.side_by_side`` puts panels in one row in a normal JupyterLab window (issue 17).

The output area of a JupyterLab window is about 1000-1200 px wide. The old ``HBox`` let every
panel ask for its natural width (fleet + metrics: about 1200 px with the summary line) and
wrapped the second one below the first. The test reads the flex traits the browser lays out
with and computes the row as CSS flexbox does: with cells that start from their minimum width
and grow, the panels share one row from ``sum(minimum widths)`` up, and a row that narrow is
well under 1000 px.
"""

from __future__ import annotations

import re

import ipywidgets as w
import pytest

import widgets
from widgets._layout import MIN_PX, SHRINK, natural_width


def cell_traits(box: w.Box) -> list[tuple[float, int, int]]:
    """(grow, minimum px, basis px) of each cell, from its ``flex`` and ``min_width``."""
    out = []
    for cell in box.children:
        grow, shrink, basis = cell.layout.flex.split()
        assert float(shrink) > 0 and basis.endswith("px")
        least = int(re.fullmatch(r"(\d+)px", cell.layout.min_width)[1])
        out.append((float(grow), least, int(basis[:-2])))
    return out


def laid_out(box: w.Box, width: int) -> list[list[int]]:
    """The rows and cell widths a ``flex-flow: row wrap`` container ``width`` px wide makes
    (items placed by their flex basis, then each line's free space shared by the grow
    factors), margins included in the basis."""
    gap = 8
    rows: list[list[tuple[float, int]]] = [[]]
    used = 0
    for grow, least, basis in cell_traits(box):
        size = max(basis, least) + gap
        if rows[-1] and used + size > width:
            rows.append([])
            used = 0
        rows[-1].append((grow, size))
        used += size
    out = []
    for row in rows:
        free = max(0, width - sum(s for _, s in row))
        total = sum(g for g, _ in row)
        out.append([round(s - gap + free * g / total) for g, s in row])
    return out


async def test_fleet_and_metrics_share_one_row_in_a_normal_window(lab):
    fleet, metrics = widgets.fleet(lab), widgets.metrics(lab)
    labels_alone = fleet.label_limit(4)
    box = widgets.side_by_side(fleet, metrics)
    assert box.layout.flex_flow == "row wrap" and box.layout.width == "100%"
    assert natural_width(fleet) == 420 + 30 and natural_width(metrics) == 2 * 360 + 30
    for width in (1000, 1100, 1200):  # a JupyterLab output area, sidebar open or not
        rows = laid_out(box, width)
        assert len(rows) == 1, (width, rows)
        small, large = rows[0]
        assert large > small  # each keeps its share: metrics is the wider panel
        assert small >= max(MIN_PX, SHRINK * 450)
    assert len(laid_out(box, 600)) == 2  # truly too narrow: then it wraps
    # The plots follow their cells instead of keeping a width that overflows them.
    assert fleet.figure.sizing_mode == "stretch_width" and fleet.figure.max_width == 450
    grid = metrics.figure
    assert grid.sizing_mode == "stretch_width"
    assert {c.sizing_mode for c, *_ in grid.children} == {"stretch_width"}
    assert fleet.plot.layout.width == "100%"
    # Its cells' labels are cut for the narrowest it may be drawn, not the width it was made,
    # and still tell the objects apart.
    limit = fleet.label_limit(4)
    assert limit < labels_alone
    for i in range(4):
        await lab.env.COUNTER.getByName(f"obj-{i}").increment()
    fleet._feed.flush()
    first_lines = [text.split("\n")[0] for text in fleet.source.data["text"]]
    assert len(first_lines) == 4 and all(len(t) <= limit for t in first_lines), first_lines
    assert len(set(first_lines)) == 4, first_lines
    assert all(c.layout.overflow == "auto" for c in box.children)  # never over a neighbour
    fleet.close()
    metrics.close()


async def test_html_panels_share_a_row_too(lab):
    sockets = widgets.websockets(lab, "COUNTER:a")
    view = widgets.watch(lab, "COUNTER:a", timeline=False)
    box = widgets.side_by_side(sockets, view)
    assert len(laid_out(box, 1000)) == 1  # lesson 08: the sockets and the room, side by side
    assert [c.children[0] for c in box.children] == [sockets, view]
    sockets.close()
    view.close()


async def test_a_timeline_next_to_the_object_view_wraps_only_below_its_minimum(lab):
    timeline = widgets.timeline(lab)
    view = widgets.object_view(lab)
    box = widgets.side_by_side(view, timeline)
    tl_least = cell_traits(box)[1][1]
    assert tl_least == round(natural_width(timeline) * SHRINK)
    assert len(laid_out(box, 1100)) == 1
    assert len(laid_out(box, cell_traits(box)[0][1] + tl_least + 16 - 1)) == 2
    timeline.close()
    view.close()


def test_side_by_side_refuses_what_is_not_a_panel():
    with pytest.raises(TypeError, match="takes panels"):
        widgets.side_by_side("fleet")
    with pytest.raises(ValueError, match="at least one panel"):
        widgets.side_by_side()
