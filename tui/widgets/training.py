"""The training pane: loss per iteration (and validation loss), tokens/s, peak memory."""

from __future__ import annotations

import math

from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Static
from textual_plotext import PlotextPlot

from mlx_repair.events import TrainStep


class TrainingPane(Vertical):
    DEFAULT_CSS = """
    TrainingPane { border: round $panel; border-title-color: $text-muted; }
    TrainingPane > Static { height: 1; }
    """

    def compose(self) -> ComposeResult:
        yield PlotextPlot()
        yield Static()

    def on_mount(self) -> None:
        self.border_title = "training"

    def show(self, steps: list[TrainStep]) -> None:
        plot = self.query_one(PlotextPlot)
        plt = plot.plt
        plt.clear_data()
        # The trainer reports the validation loss before step 1 with no training loss (NaN).
        # An empty series must not be plotted: plotext's legend then indexes past its end.
        trained = [s for s in steps if math.isfinite(s.loss)]
        validation = [s for s in steps if s.validation_loss is not None and math.isfinite(s.validation_loss)]
        for label, series, value in (
            ("train loss", trained, lambda s: s.loss),
            ("validation", validation, lambda s: s.validation_loss),
        ):
            if series:
                plt.plot([s.iteration for s in series], [value(s) for s in series], label=label, marker="braille")
        plot.refresh()
        last = steps[-1]
        loss = f"loss {last.loss:.3f} · " if math.isfinite(last.loss) else ""
        self.query_one(Static).update(
            f"iter {last.iteration} · {loss}{last.tokens_per_second:.0f} tok/s · {last.peak_memory_gb:.1f} GB peak"
        )
