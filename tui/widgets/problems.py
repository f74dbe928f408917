"""The problem list: one line per problem with its status mark."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import OptionList
from textual.widgets.option_list import Option

from mlx_repair.tui.render import status_mark


class ProblemList(OptionList):
    DEFAULT_CSS = """
    ProblemList { border: round $panel; border-title-color: $text-muted; }
    ProblemList:focus { border: round $accent; }
    """

    def show(self, rows: list[tuple[str, str]]) -> None:
        """Show (task id, status) rows. Only changed lines are redrawn when the problems
        are the same, so a live run does not reset the highlight or the scroll."""
        ids = [task_id for task_id, _ in rows]
        if ids == [option.id for option in self.options]:
            for task_id, status in rows:
                prompt = _line(task_id, status)
                if self.get_option(task_id).prompt != prompt:
                    self.replace_option_prompt(task_id, prompt)
            return
        current = self.highlighted_option.id if self.highlighted_option else None
        self.clear_options()
        self.add_options([Option(_line(task_id, status), id=task_id) for task_id, status in rows])
        if current in ids:
            self.highlighted = ids.index(current)
        elif ids:
            self.highlighted = 0


def _line(task_id: str, status: str) -> Text:
    return Text.assemble(status_mark(status), " ", task_id)
