"""The lesson browser test's verdicts, on made-up reports: each check can fail.

``test_lessons_browser.check`` turns what the page showed (a report) into failures in words. A
real browser run only shows the passing side while the lessons are right; these reports are
what a broken lesson or panel would produce. No browser needed.
"""

from __future__ import annotations

import copy

from test_lessons_browser import Expect, check

GOOD = {
    "unrun_cells": [],
    "stuck_prompts": [],
    "error_outputs": [],
    "console_errors": [],
    "blocked_requests": [],
    "js_error_boxes": 0,
    "plots": [{"id": "p1", "title": "Timeline", "connected": True,
               "glyphs": [{"glyph": "HBar", "rows": 12, "visible": True},
                          {"glyph": "HBar", "rows": 0, "visible": True}]}],
    "panels": 2,
    "panel_errors": 0,
    "seen": {"dl-objectview": {"data-seq": ["1", "7", "12"], "data-gate": ["open", "closed",
                                                                          "open"]}},
    "scheduler": {"clicked": "1: admit delivery 2", "buttons": 2, "steps": [1, 2, 2]},
    "claims": [{"says": "HIBERNATED", "selector": ".dl-instance", "pattern": "HIBERNATED",
                "met": True, "text": "HIBERNATED: no instance in memory"}],
}
ALL = Expect(panels=True, gate_closed=True, scheduler=True)


def _with(**changes):
    r = copy.deepcopy(GOOD)
    r.update(changes)
    return r


def test_a_good_report_passes_every_check():
    assert check("02_input_gate", ALL, GOOD) == []


def test_each_broken_report_fails_its_check():
    cases = {
        "cells did not run": _with(unrun_cells=[3]),
        "errors in cells": _with(error_outputs=["code cell 2: ZeroDivisionError"]),
        "console errors": _with(console_errors=["[02] Failed to load resource"]),
        "needed the network": _with(blocked_requests=["[02] https://cdn.bokeh.org/x.js"]),
        "javascript error box": _with(js_error_boxes=1),
        "drew no glyphs": _with(plots=[{"id": "p1", "title": "Fleet", "connected": True,
                                        "glyphs": [{"glyph": "Rect", "rows": 0,
                                                    "visible": True}]}]),
        "never changed": _with(seen={"dl-objectview": {"data-seq": ["4"]}}),
        "panel error": _with(panel_errors=1),
        "no panel": _with(panels=0, seen={}),
        "never shown closed": _with(seen={"dl-objectview": {"data-seq": ["1", "2"],
                                                            "data-gate": ["open"]}}),
        "one click took 2": _with(scheduler={"clicked": "0", "buttons": 2, "steps": [1, 3, 3]}),
        "then 1 more": _with(scheduler={"clicked": "0", "buttons": 2, "steps": [1, 2, 3]}),
        "never showed what the lesson says": _with(claims=[{
            "says": "HIBERNATED", "selector": ".dl-instance", "pattern": "HIBERNATED",
            "met": False, "text": "AWAKE: the instance is in memory"}]),
    }
    for words, report in cases.items():
        failures = check("02_input_gate", ALL, report)
        assert any(words in f for f in failures), (words, failures)


def test_a_plot_off_the_page_is_not_judged():
    # a closed panel's plot view may linger in BokehJS's index, detached from the page
    gone = {"id": "p9", "title": "Old", "connected": False,
            "glyphs": [{"glyph": "Rect", "rows": 0, "visible": True}]}
    assert check("02_input_gate", ALL, _with(plots=[*GOOD["plots"], gone])) == []


def test_lessons_without_expectations_only_get_the_common_checks():
    quiet = _with(panels=0, seen={}, plots=None)
    del quiet["scheduler"]
    assert check("07_sql_api", Expect(), quiet) == []
