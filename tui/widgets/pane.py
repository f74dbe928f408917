"""A titled, scrollable pane that shows one renderable (code, cases, a diff)."""

from __future__ import annotations

from rich.console import RenderableType
from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.widgets import Static


class Pane(VerticalScroll, can_focus=True):
    DEFAULT_CSS = """
    Pane {
        border: round $panel;
        border-title-color: $text-muted;
        padding: 0 1;
    }
    Pane:focus-within, Pane:focus { border: round $accent; }
    Pane > Static { width: auto; min-width: 100%; }
    """

    def __init__(self, title: str, **kwargs) -> None:
        super().__init__(**kwargs)
        self.border_title = title
        self._title = title

    def compose(self) -> ComposeResult:
        yield Static()

    def show(self, renderable: RenderableType, subtitle: str = "", at_end: bool = False) -> None:
        """Show from the top, or (`at_end`, for text that grows) its newest lines."""
        self.query_one(Static).update(renderable)
        self.border_title = f"{self._title} · {subtitle}" if subtitle else self._title
        if at_end:  # once laid out: the new text's height is not known yet
            self.call_after_refresh(self.scroll_end, animate=False)
        else:
            self.scroll_home(animate=False)
