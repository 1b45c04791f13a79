"""Printed words about the input gate are the panels' words (issue 17, item 9): the object view
says CLOSED and OPEN, so the tour, the event log and the lessons say "stays CLOSED" and "OPENS",
never "LOCKED" (which a learner would take for a different state)."""

from __future__ import annotations

import io

from durable_lab.tour import tour


async def test_the_tour_says_closed_and_opens_as_the_panels_do():
    out = io.StringIO()
    await tour(out)
    text = out.getvalue()
    assert "awaits storage: gate stays CLOSED" in text  # scene 1: a read keeps the gate closed
    assert "awaits io: gate OPENS" in text  # scene 2: a timer opens it
    assert "LOCKED" not in text.upper()
