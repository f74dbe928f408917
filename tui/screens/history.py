"""One problem's full history: its samples and the selection's picks among them (when it
has several), then every attempt in chain order, with code, cases and diff."""

from __future__ import annotations

from rich.console import Group
from rich.rule import Rule
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Footer, Static

from mlx_repair.tui import render
from mlx_repair.tui.state import StageState


class HistoryScreen(ModalScreen):
    BINDINGS = [
        Binding("escape,q,h", "dismiss", "Back"),
    ]
    DEFAULT_CSS = """
    HistoryScreen { align: center middle; }
    HistoryScreen > VerticalScroll {
        width: 95%; height: 95%;
        border: round $accent; background: $surface; padding: 0 1;
    }
    """

    def __init__(self, state: StageState, task_id: str) -> None:
        super().__init__()
        self.state = state
        self.task_id = task_id

    def compose(self) -> ComposeResult:
        history = self.state.history(self.task_id)
        candidates = self.state.candidates(self.task_id)
        with VerticalScroll() as scroll:
            scroll.border_title = f"{self.task_id} · {self.state.status(self.task_id)} · {len(history)} attempts"
            if len(candidates) > 1:
                yield Static(Group(Rule("candidates", style="cyan"), render.candidates(candidates)))
            for attempt in history:
                title = render.attempt_title(attempt, self.state.picked_by(attempt))
                parts = [Rule(title, style="cyan"), render.code(attempt), render.cases(attempt)]
                if attempt.kind != "draft":
                    parts.append(render.diff(self.state.parent(attempt), attempt))
                yield Static(Group(*parts))
            if not history:
                yield Static("no attempts yet")
        yield Footer()
