"""A progress bar for ``durable_lab.explore`` in Jupyter.

The core reports progress to a callback and never imports a UI package; importing ``widgets``
in a kernel hands this bar down as the default display (``set_default_progress``), so a long
exploration in a lesson shows a bar under its cell instead of a line on stderr. The bar appears
once a search has run for a second (a short one shows nothing), counts schedules against
``max_schedules``, and turns green (all held) or red (something failed) at the end.
"""

from __future__ import annotations

from typing import Any

import ipywidgets as w

from durable_lab.explore import ExploreProgress

from ._theme import esc

__all__ = ["ExploreProgressBar", "explore_progress"]


class ExploreProgressBar(w.VBox):
    """Call it with an ``ExploreProgress``; shows itself the first time it has something."""

    def __init__(self, *, show_after: float = 1.0, display: Any = None) -> None:
        self.bar = w.IntProgress(value=0, min=0, max=1, bar_style="info",
                                 layout=w.Layout(width="420px"))
        self.label = w.HTML()
        super().__init__([self.bar, self.label])
        self.add_class("dl-explore-progress")
        self.show_after = show_after
        self.shown = False
        self._display = display
        self.last: ExploreProgress | None = None

    def __call__(self, progress: ExploreProgress) -> None:
        self.last = progress
        if not self.shown:
            if progress.elapsed < self.show_after:
                return
            self.shown = True
            show = self._display
            if show is None:
                from IPython.display import display as show
            show(self)
        self.bar.max = max(progress.max_schedules, 1)
        self.bar.value = min(progress.schedules, self.bar.max)
        if progress.finished:
            self.bar.bar_style = "danger" if progress.failures else "success"
        self.label.value = f'<span style="font:13px monospace">{esc(progress.line())}</span>'


def explore_progress() -> ExploreProgressBar:
    """A fresh bar (``explore(..., progress=widgets.explore_progress())``)."""
    return ExploreProgressBar()
