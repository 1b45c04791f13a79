"""Controls: play / pause / step / speed, seed and model, and fault buttons.

Every button calls the lab's public API (``lab.pause()``, ``lab.step()``, ``lab.faults``...).
Errors raised by a callback are shown in the panel (``self.errors``), never swallowed.

Speed: "full speed" resumes the lab. A slower speed keeps the lab paused and takes the oldest
transition ``n`` times a second (``await lab.step()``), so a person can follow every change.
Seed and concurrency model are fixed when the ``Lab`` is made; the panel shows them.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import ipywidgets as w

from ._base import Panel
from ._reducers import ObjectsReducer
from ._targets import label_of, target_for
from ._theme import COLORS, esc

if TYPE_CHECKING:
    from durable_lab import Lab
    from durable_lab.events import RuntimeEvent

__all__ = ["Controls"]

#: In slow motion each event stays on screen at least this long (about two frames).
MIN_SECONDS_PER_EVENT = 0.07

SPEEDS = (("full speed", 0.0), ("20 steps/s", 20.0), ("10 steps/s", 10.0), ("5 steps/s", 5.0),
          ("3 steps/s", 3.0), ("2 steps/s", 2.0), ("1 step/s", 1.0))


def _button(description: str, style: str = "", tooltip: str = "", width: str = "auto"
            ) -> w.Button:
    b = w.Button(description=description, button_style=style, tooltip=tooltip,
                 layout=w.Layout(width=width))
    return b


class Controls(Panel):
    """Run controls and fault buttons for the lab (faults act on the selected object)."""

    kind = "controls"

    def __init__(self, lab: Lab, target: Any = None, *, reducer: ObjectsReducer | None = None,
                 faults: bool = True, speed: float | None = None, **kwargs: Any) -> None:
        if speed is not None and speed not in dict((v, k) for k, v in SPEEDS):
            raise ValueError(f"speed must be one of {[v for _, v in SPEEDS]} steps/s "
                             f"(0: full speed), got {speed!r}")
        self.reducer = reducer if reducer is not None else ObjectsReducer()
        self._shared = reducer is not None
        self.target = label_of(target)
        self._step_lock = asyncio.Lock()
        self._autoplay: asyncio.Future[Any] | None = None
        self._told_paused = lab.scheduler.note_paused_calls
        self.play = _button("▶ Play", "success", "run (at the chosen speed)")
        self.pause = _button("Pause", "warning", "hold every transition")
        self.step = _button("Step +1", "info", "take the oldest transition, exactly one")
        self.speed = w.Dropdown(options=SPEEDS, value=0.0, description="speed",
                                layout=w.Layout(width="190px"))
        self.seed = w.Text(value=str(lab.seed), description="seed", disabled=True,
                           layout=w.Layout(width="130px"),
                           tooltip="fixed when the Lab is made: Lab(seed=...)")
        self.model = w.Dropdown(options=["gates", "none", "serial"], value=lab.model,
                                description="model", disabled=True,
                                layout=w.Layout(width="170px"))
        self.fail_commit = _button("Fail next commit", "danger", "its next commit fails")
        self.evict = _button("Evict", "", "drop it from memory (not a failure)")
        self.crash = _button("Crash", "danger", "reset it now, unflushed writes lost")
        self.code_update = _button("Code update", "", "reset as a deploy does")
        self.status = w.HTML()
        self.next_steps = w.HTML()
        super().__init__(lab, **kwargs)
        self.play.on_click(self.guarded(self._on_play))
        self.pause.on_click(self.guarded(self._on_pause))
        self.step.on_click(self.guarded(self._on_step))
        self.speed.observe(self.guarded(self._on_speed), names=["value"])
        self.fail_commit.on_click(self.guarded(
            lambda _b: self.lab.faults.fail_next_commit(self._target())))
        self.crash.on_click(self.guarded(lambda _b: self.lab.faults.crash(self._target())))
        self.code_update.on_click(self.guarded(
            lambda _b: self.lab.faults.code_update(self._target())))
        self.evict.on_click(self.guarded(
            lambda _b: self.spawn(self.lab.faults.evict(self._target()))))
        faults_row = faults
        run = w.HBox([self.play, self.pause, self.step, self.speed, self.seed, self.model],
                     layout=w.Layout(flex_flow="row wrap", align_items="center"))
        faults = w.HBox([w.HTML('<b style="font:13px sans-serif">Faults on the selected object:'
                                '</b>'), self.fail_commit, self.evict, self.crash,
                         self.code_update],
                        layout=w.Layout(flex_flow="row wrap", align_items="center"))
        self.children = ((run, self.status, faults, self.next_steps, self.errors) if faults_row
                         else (run, self.status, self.next_steps, self.errors))
        if speed:
            self.play_at(speed)
        self.refresh()

    def start_from(self, snapshot: Any) -> None:
        """Start from the lab's snapshot unless the reducer is shared (the dashboard's)."""
        if not self._shared:
            self.reducer.seed(snapshot)

    # -- actions --------------------------------------------------------------------------

    def _target(self) -> Any:
        if not self.target:
            raise ValueError("no object selected yet: call an object first, or pick one")
        state = self.reducer.objects.get(self.target)
        return target_for(self.lab, self.target, state.object_id if state else "")

    def _stop_autoplay(self) -> None:
        if self._autoplay is not None and not self._autoplay.done():
            self._autoplay.cancel()
            # Undo now what the loop's ``finally`` undoes once the cancellation lands.
            self._feed.play_slowly(None)
            self.lab.scheduler.note_paused_calls = self._told_paused
        self._autoplay = None

    def play_at(self, rate: float) -> None:
        """Slow motion: keep the lab paused and take the oldest transition ``rate`` times a
        second (0: full speed). What the Play button does at the chosen speed."""
        self.speed.value = rate  # observed: _on_speed starts playing if needed
        self._on_play()

    def full_speed(self) -> None:
        """Stop the slow motion and let the lab run freely."""
        self.speed.value = 0.0
        self._on_play()

    def _on_play(self, _b: Any = None) -> None:
        self._stop_autoplay()
        rate = self.speed.value
        if not rate:
            self.lab.resume()
        else:
            # The note goes off now, not when the loop first runs: a call made in the same
            # cell right after watch(..., speed=3) is stepped through too.
            self._told_paused = self.lab.scheduler.note_paused_calls
            self.lab.scheduler.note_paused_calls = False
            self.lab.pause()
            self._autoplay = self.spawn(self._autoplay_loop(rate))
        self.refresh()

    def _on_pause(self, _b: Any = None) -> None:
        self._stop_autoplay()
        self.lab.pause()
        self.refresh()

    def _on_speed(self, _change: Any) -> None:
        if self._autoplay is not None or (self.speed.value and not self.lab.paused):
            self._on_play()

    def _on_step(self, _b: Any = None) -> None:
        self._stop_autoplay()
        self.spawn(self.step_once())

    async def step_once(self) -> Any:
        """Take exactly one transition (clicks queue up: N clicks, N steps)."""
        async with self._step_lock:
            choice = await self.lab.step()
        self.refresh()
        return choice

    async def _autoplay_loop(self, rate: float) -> None:
        """Slow motion: one step, then its events played back to the panels one at a time
        (so the gate is *seen* closing and opening), then the next step."""
        feed = self._feed
        interval = 1.0 / rate
        scheduler = self.lab.scheduler
        # Calls made during slow motion do move on (one step at a time): the "the lab is
        # paused, press Play or Step" note would be wrong.
        told = self._told_paused  # what _on_play found before it turned the note off
        scheduler.note_paused_calls = False
        try:
            while True:
                if not self.lab.paused or self.lab.closed:
                    # Someone resumed the lab (lab.resume(), another panel) or closed it: slow
                    # motion is over; stepping now would pause it again behind their back.
                    self._autoplay = None
                    self.refresh()
                    return
                started = asyncio.get_running_loop().time()
                async with self._step_lock:
                    taken = await self.lab.step()
                self._dirty = True
                count = feed.statistics().buffered
                if taken is not None and count:
                    feed.play_slowly(max(interval / count, MIN_SECONDS_PER_EVENT))
                    await feed.drained()
                    feed.play_slowly(None)
                spent = asyncio.get_running_loop().time() - started
                await asyncio.sleep(max(0.0, interval - spent))
        finally:
            feed.play_slowly(None)
            if self._autoplay is None or self._autoplay is asyncio.current_task():
                scheduler.note_paused_calls = told  # (not if a new slow motion began meanwhile)

    # -- view -----------------------------------------------------------------------------

    def select(self, target: Any) -> None:
        self.target = label_of(target)
        self.refresh()

    def apply(self, event: RuntimeEvent) -> None:
        if not self._shared:
            self.reducer.apply(event)

    def fold(self, events: list[RuntimeEvent]) -> None:
        if not self._shared:
            self.reducer.consume(events)

    def consume(self, events: list[RuntimeEvent]) -> None:
        if not self._shared:
            super().consume(events)
        if self.target is None:
            for e in events:
                if e.object:
                    self.target = e.object
                    break
        self._dirty = True

    def render(self) -> None:
        # While paused, the choices change without events (a held reply becomes releasable):
        # redraw every frame, it is one lab.choices() call.
        if self.lab.paused:
            self._dirty = True
        super().render()

    def draw(self) -> None:
        lab = self.lab
        paused = lab.paused
        steps = lab.scheduler.steps_taken
        mode = ("lab closed" if lab.closed else
                "paused" if paused and self._autoplay is None else
                f"slow motion: {self.speed.label}" if self._autoplay is not None else "running")
        color = {"paused": "#b45309", "running": COLORS["ok"],
                 "lab closed": COLORS["bad"]}.get(mode, "#1d4ed8")
        self.status.value = (
            f'<div class="dl-runstate" data-paused="{str(paused).lower()}" data-steps="{steps}" '
            f'data-seq="{self.reducer.seq}" style="font:13px sans-serif;margin:2px 0">'
            f'<b style="color:{color}">{mode.upper()}</b> · '
            f'<span class="dl-steps">steps taken: <b>{steps}</b></span> · '
            f'events: <b>{self.reducer.seq}</b> · selected: '
            f'<b class="dl-selected">{esc(self.target or "(none yet)")}</b>'
            + (f" · last step: <i>{esc(self.reducer.last_step)}</i>" if self.reducer.last_step
               else "") + "</div>")
        if lab.closed:
            self.next_steps.value = (
                '<div class="dl-choices dl-lab-closed" data-count="0" style="font:13px '
                'sans-serif">This lab is closed (<code>await lab.close()</code> ran): calls '
                'on it fail. Re-run the cell that makes the <code>Lab()</code> to go on.</div>')
        elif paused:
            choices = lab.choices()
            items = "".join(f"<li>{esc(repr(c))}</li>" for c in choices[:6])
            more = f"<li>... {len(choices) - 6} more</li>" if len(choices) > 6 else ""
            self.next_steps.value = (
                f'<div class="dl-choices" data-count="{len(choices)}" style="font:12px '
                f'monospace;margin:0 0 4px"><b>Next possible transitions</b> (Step takes [0]):'
                f'<ol start="0" style="margin:2px 0 0 0">{items}{more}</ol></div>'
                if choices else '<div class="dl-choices" data-count="0" style="font:12px '
                'monospace">No transition possible now.</div>')
        else:
            self.next_steps.value = ""

    def close(self) -> None:
        self._stop_autoplay()
        super().close()
