"""A counterexample of durable_lab.explore played in the scheduler panel, and the progress bar.

Headless: the widget trees and real labs (the browser lesson test sees the same buttons).
"""

from __future__ import annotations

import pytest
from explore_objects import SlowCounter

import widgets
from durable_lab.explore import ExploreProgress, explore


async def _counterexample():
    result = await explore({"C": SlowCounter},
                           lambda env: [env.C.getByName("a").increment() for _ in range(2)],
                           progress=False)
    assert result.counterexample is not None
    return result.counterexample


async def test_play_counterexample_takes_its_steps_one_click_at_a_time():
    example = await _counterexample()
    player = await example.player()
    try:
        view = widgets.watch(player.lab, scheduler=True)
        panel = view.scheduler
        panel.play(player)
        assert panel.play_step_button.layout.display == ""
        panel.refresh()
        assert 'data-position="0"' in panel.status.value
        assert "step 1 of" in panel.status.value
        first = await panel.play_step()
        assert first == example.steps[0] and panel.last_taken == first
        await panel.play_all()
        assert player.next_step is None and panel.play_step_button.disabled
        panel.refresh()
        assert f"all {len(example.steps)} steps played" in panel.status.value
        assert player.outcomes == example.outcomes == [1, 1]
        # The timeline drew the counterexample: two deliveries awaiting their timers at once.
        await player.lab.scheduler.settle()
        widgets.feed_for(player.lab).flush(force=True)
        view.timeline.refresh()
        kinds = list(view.timeline.segments.data["kind"])
        assert kinds.count("awaiting io") >= 2, kinds
    finally:
        await player.close()


async def test_a_player_of_another_lab_is_refused(lab):
    example = await _counterexample()
    player = await example.player()
    try:
        panel = widgets.scheduler(lab)
        with pytest.raises(ValueError, match="plays in its own lab"):
            panel.play(player)
    finally:
        await player.close()


def test_the_progress_bar_shows_after_a_second_and_ends_red_on_failure():
    shown = []
    bar = widgets.ExploreProgressBar(display=shown.append)
    bar(ExploreProgress(5, 5, 0, 0.2, 100))
    assert not shown  # a short search shows nothing
    bar(ExploreProgress(50, 60, 0, 1.5, 100))
    assert shown == [bar] and bar.bar.value == 50 and bar.bar.max == 100
    assert "50 schedules" in bar.label.value
    bar(ExploreProgress(80, 90, 3, 2.0, 100, finished=True))
    assert bar.bar.bar_style == "danger" and "3 failing" in bar.label.value
