"""Where the panels load BokehJS from: inline unless someone asked for something else.

Offline by default (issue #9): Bokeh's own default is the CDN, which a workshop room without
internet cannot reach. The real-browser tests prove the page needs no network; these pin the
choice itself.
"""

from __future__ import annotations

from bokeh.resources import INLINE, Resources

from widgets._plots import _resources


def test_inline_when_nobody_asked():
    assert _resources(None, {}, INLINE, Resources) is INLINE


def test_the_environment_variable_wins_over_the_default():
    # None: bokeh.io.output_notebook() then reads BOKEH_RESOURCES through bokeh.settings.
    assert _resources(None, {"BOKEH_RESOURCES": "cdn"}, INLINE, Resources) is None


def test_an_empty_variable_counts_as_unset():
    assert _resources(None, {"BOKEH_RESOURCES": ""}, INLINE, Resources) is INLINE


def test_an_explicit_argument_wins_over_everything():
    chosen = _resources("cdn", {"BOKEH_RESOURCES": "inline"}, INLINE, Resources)
    assert isinstance(chosen, Resources) and chosen.mode == "cdn"
    mine = Resources(mode="inline")
    assert _resources(mine, {}, INLINE, Resources) is mine
