"""The learner as scheduler: the legal next transitions as buttons; a click takes one.

While the lab is paused (``lab.pause()``), the runtime waits before every *transition* (a call
admitted by an input gate, a continuation resuming, a flush, a commit, a reply released). This
panel lists what ``lab.choices()`` returns, in words, one button per transition, and a click
takes exactly that transition (``await lab.choose(choice)``). Only what the gates allow is ever
offered: a learner hunting for a lost update sees the gate refuse to offer the second call while
the first one's storage read is in flight.

The choices change without events (a held reply becomes releasable when its commit lands, a
timer fires), so while paused the panel redraws every frame; that is one ``lab.choices()`` call.
The buttons are rebuilt only when the set of choices changes, so a click is never lost to a
redraw. A click on a transition that is no longer legal (the lab moved on) says so in red.

A counterexample found by ``durable_lab.explore`` plays here too: ``panel.play(player)`` with
``player = await result.counterexample.player()`` (a fresh lab paused before the first step;
make the panel, or the ``watch``, on ``player.lab``) adds a *play counterexample* button that
takes the schedule's next step, and *play to the end*; the status says which step of how many
comes next. Each step is the same transition a click in the list would take, so the timeline
draws the counterexample's gate spans as it goes.

Pausing, resuming and stepping are the Controls bar's (one set of stepping buttons in every
panel): this panel shows that bar above its list, or, inside ``watch(...)``, uses the watch's.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import ipywidgets as w

from ._base import Panel
from ._reducers import ObjectsReducer
from ._targets import label_of
from ._theme import COLORS, esc
from .controls import Controls

if TYPE_CHECKING:
    from durable_lab import Lab
    from durable_lab.events import RuntimeEvent
    from durable_lab.explore import Player
    from durable_lab.scheduler import Choice

__all__ = ["SchedulerPanel", "choice_key"]

#: At most this many buttons; the rest are counted ("... 7 more").
MAX_BUTTONS = 12

#: Colour of a transition button by kind: admits and resumes go through the input gate.
KIND_STYLE = {"admit": "info", "resume": "info", "critical section": "warning",
              "constructor": "", "flush": "", "commit": "success", "reply": "success"}


def choice_key(choice: Choice) -> tuple[str, str, int, int]:
    """What identifies a transition across two calls of ``lab.choices()``."""
    return (choice.kind, choice.object, choice.delivery, choice.seq)


def choice_words(choice: Choice) -> str:
    """A button's text: what happens when it is taken."""
    return choice.description


class SchedulerPanel(Panel):
    """Pause, then click the next transition. ``target`` (optional) highlights one object."""

    kind = "scheduler"

    def __init__(self, lab: Lab, target: Any = None, *, reducer: ObjectsReducer | None = None,
                 controls: bool = True, **kwargs: Any) -> None:
        self.reducer = reducer if reducer is not None else ObjectsReducer()
        self._shared = reducer is not None
        self.target = label_of(target)
        self._lock = asyncio.Lock()
        self._shown: tuple[tuple[str, str, int, int], ...] | None = None
        self.clicks = 0  # transitions taken from this panel
        self.last_taken = ""
        self.message = ""  # a refusal to show (a stale click), in red
        self.status = w.HTML()
        self.buttons = w.VBox(layout=w.Layout(align_items="flex-start"))
        #: A counterexample being played (``play()``), and its buttons (hidden until then).
        self.player: Player | None = None
        self.play_step_button = w.Button(description="play counterexample: next step",
                                         button_style="danger", icon="step-forward",
                                         layout=w.Layout(width="auto", display="none"))
        self.play_step_button.add_class("dl-play-counterexample")
        self.play_all_button = w.Button(description="play to the end", icon="fast-forward",
                                        layout=w.Layout(width="auto", display="none"))
        self.play_step_button.on_click(self.guarded(lambda _b: self.spawn(self.play_step())))
        self.play_all_button.on_click(self.guarded(lambda _b: self.spawn(self.play_all())))
        self.play_row = w.HBox([self.play_step_button, self.play_all_button])
        super().__init__(lab, **kwargs)
        # The stepping buttons are the Controls bar's (Play / Pause / Step +1 / speed), the
        # same everywhere; this panel adds the clickable list under it. Inside watch(), the
        # watch's own Controls bar is that bar (controls=False here).
        self.controls: Controls | None = None
        if controls:
            self.controls = Controls(lab, target, reducer=self.reducer, faults=False,
                                     transitions=False, feed=self._feed, register=False)
            self.share_lock(self.controls)
        # Long transition names wrap inside their button instead of being cut off.
        style = w.HTML("<style>.dl-choice-button{white-space:normal;height:auto;"
                       "min-height:32px;text-align:left;line-height:1.3;padding:4px 10px}"
                       "</style>")
        self.children = tuple(x for x in (self.controls, self.status, self.play_row,
                                          self.buttons, style, self.errors) if x is not None)
        self.refresh()

    def share_lock(self, controls: Controls) -> None:
        """Take turns with ``controls``' Step button: a click here and a Step there never
        race for the same transition."""
        self._lock = controls._step_lock

    # -- actions --------------------------------------------------------------------------

    async def take(self, key: tuple[str, str, int, int]) -> Choice | None:
        """Take the transition ``key`` (see :func:`choice_key`) if it is still legal."""
        async with self._lock:
            for choice in self.lab.choices():
                if choice_key(choice) == key:
                    taken = await self.lab.choose(choice)
                    self.clicks += 1
                    self.last_taken = taken.description
                    self.message = ""
                    break
            else:
                taken = None
                self.message = "that transition is no longer possible: pick one of the list"
        self.refresh()
        return taken

    def play(self, player: Player) -> None:
        """Load a counterexample to play step by step (``await counterexample.player()``; this
        panel must be on ``player.lab``)."""
        if player.lab is not self.lab:
            raise ValueError("this counterexample plays in its own lab: make the panel on it, "
                             "widgets.scheduler(player.lab) (or watch(player.lab, ...))")
        self.player = player
        self.play_step_button.layout.display = ""
        self.play_all_button.layout.display = ""
        self.refresh()

    async def play_step(self) -> str | None:
        """Take the counterexample's next step (what the *play counterexample* button does)."""
        if self.player is None:
            raise RuntimeError("no counterexample loaded: panel.play(player) first")
        async with self._lock:
            try:
                taken = await self.player.step()
            except RuntimeError as error:
                self.message = str(error)
                taken = None
            if taken is not None:
                self.clicks += 1
                self.last_taken = taken
                self.message = ""
        self.refresh()
        return taken

    async def play_all(self) -> None:
        """Play the rest of the counterexample."""
        while self.player is not None and self.player.next_step is not None:
            if await self.play_step() is None:
                break

    def click(self, index: int) -> asyncio.Future[Any]:
        """What a click on button ``index`` does (for tests and notebooks)."""
        keys = self._shown or ()
        if not 0 <= index < len(keys):
            raise IndexError(f"no button {index}: {len(keys)} shown")
        return self.spawn(self.take(keys[index]))

    # -- the feed's side ------------------------------------------------------------------

    def start_from(self, snapshot: Any) -> None:
        """Start from the lab's snapshot (steps taken, objects) unless the reducer is shared."""
        if not self._shared:
            self.reducer.seed(snapshot)

    def select(self, target: Any) -> None:
        self.target = label_of(target)
        self._shown = None
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
        self._dirty = True

    def render(self) -> None:
        if self.lab.paused:  # choices change without events: look every frame
            self._dirty = True
        super().render()

    def draw(self) -> None:
        lab = self.lab
        paused = lab.paused and not lab.closed
        choices = lab.choices() if paused else []
        steps = lab.scheduler.steps_taken
        if lab.closed:
            state, color = "LAB CLOSED", COLORS["bad"]
        elif paused:
            state, color = "PAUSED", "#b45309"
        else:
            state, color = "RUNNING", COLORS["ok"]
        hint = ("pick the next transition below; only what the gates allow is offered"
                if paused and choices else
                "nothing can happen now: make a call, advance the clock, or press Play"
                if paused else "press Pause to take over the scheduling")
        message = (f'<div class="dl-scheduler-message" style="color:{COLORS["bad"]};'
                   f'font:13px sans-serif">{esc(self.message)}</div>' if self.message else "")
        last = (f'<div style="font:13px sans-serif;color:#334155">last taken: '
                f'<b>{esc(self.last_taken)}</b></div>' if self.last_taken else "")
        player = self.player
        if player is not None:
            total = len(player.keys)
            upcoming = player.next_step
            where = (f"step {player.position + 1} of {total} next: <b>{esc(upcoming)}</b>"
                     if upcoming is not None else
                     f"all {total} steps played; the calls returned "
                     f"<b>{esc(', '.join(map(repr, player.outcomes)))}</b>")
            last += (f'<div class="dl-counterexample" data-position="{player.position}" '
                     f'data-steps="{total}" style="font:13px sans-serif;color:#991b1b">'
                     f"counterexample: {where}</div>")
            self.play_step_button.disabled = self.play_all_button.disabled = upcoming is None
        self.status.value = (
            f'<div class="dl-scheduler" data-steps="{steps}" data-paused="{str(paused).lower()}"'
            f' data-choices="{len(choices)}" data-clicks="{self.clicks}" '
            f'style="font:14px sans-serif;margin:4px 0">'
            f'<b style="color:{color}">{state}</b> · steps taken: <b class="dl-steps">{steps}'
            f'</b> · <span style="color:{COLORS["muted"]}">{esc(hint)}</span>{last}{message}</div>')
        keys = tuple(choice_key(c) for c in choices[:MAX_BUTTONS])
        if keys == self._shown:
            return
        self._shown = keys
        rows: list[w.Widget] = []
        for index, choice in enumerate(choices[:MAX_BUTTONS]):
            mine = self.target is None or choice.object == self.target
            button = w.Button(description=f"{index}: {choice_words(choice)}",
                              button_style=KIND_STYLE.get(choice.kind, "") if mine else "",
                              tooltip=f"{choice.kind} at {choice.object}: "
                                      f"await lab.choose({index})",
                              layout=w.Layout(width="auto", max_width="100%"))
            button.add_class("dl-choice-button")
            button.on_click(self.guarded(
                lambda _b, key=keys[index]: self.spawn(self.take(key))))
            rows.append(button)
        if len(choices) > MAX_BUTTONS:
            rows.append(w.HTML(f'<span style="font:13px sans-serif;color:{COLORS["muted"]}">'
                               f"... {len(choices) - MAX_BUTTONS} more</span>"))
        old = self.buttons.children
        self.buttons.children = tuple(rows)
        for widget in old:
            widget.close()
