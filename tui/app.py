"""The mlx-repair TUI: a job's (or a stored run's) problems, attempts, verdicts, repairs,
pairs and training, live.

The job runs in a thread worker and reports through a `JobConsole`; the app drains it a
few times a second (`REFRESH_S`), applies the events to a `RunState` and redraws what
changed, the text the model is writing included. The panes show one stage of the job at
a time (`s` goes back to earlier ones). Nothing here writes to the store: quitting stops
the job once what the model wrote is stored (see `JobConsole`), so a re-run resumes with
nothing lost.
"""

from __future__ import annotations

import asyncio
import time
from typing import Callable, Iterable

from rich.text import Text
from textual import on, work
from textual.app import App, ComposeResult, SystemCommand
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.reactive import reactive
from textual.screen import Screen
from textual.widgets import Footer, Header, Log, OptionList, Static
from textual.worker import Worker, WorkerState

from mlx_repair.events import PartialText, TrainStep
from mlx_repair.mining.store import Attempt
from mlx_repair.tui import render
from mlx_repair.tui.job import JobConsole, run_job
from mlx_repair.tui.screens.history import HistoryScreen
from mlx_repair.tui.state import STATUSES, Plan, RunState, log_line
from mlx_repair.tui.widgets.pane import Pane
from mlx_repair.tui.widgets.problems import ProblemList
from mlx_repair.tui.widgets.training import TrainingPane

REFRESH_S = 0.1  # at most this many redraws a second, however fast the job reports
QUIT_GRACE_S = 2.0  # how long quitting waits in the app for the job to stop
FILTERS = (None, *STATUSES)

Job = Callable[[JobConsole], object]


class RepairApp(App):
    CSS_PATH = "app.tcss"
    TITLE = "mlx-repair"
    # The screen gets these classes by size (app.tcss): a laptop's 80x24 still shows every pane.
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (100, "-wide")]
    VERTICAL_BREAKPOINTS = [(0, "-short"), (32, "-tall")]
    BINDINGS = [
        Binding("left,[", "attempt(-1)", "Prev attempt", key_display="←"),
        Binding("right,]", "attempt(1)", "Next attempt", key_display="→"),
        Binding("f", "cycle_filter", "Filter"),
        Binding("h,enter", "history", "History"),
        Binding("p,space", "toggle_pause", "Pause/resume"),
        Binding("s", "next_stage", "Stage"),
        Binding("question_mark", "help", "Help", key_display="?"),
        Binding("q", "quit", "Quit"),
    ]

    selected_task: reactive[str | None] = reactive(None)
    attempt_index: reactive[int] = reactive(0)
    status_filter: reactive[str | None] = reactive(None)
    paused: reactive[bool] = reactive(False)

    def __init__(self, job: Job, title: str, plan: Plan | None = None) -> None:
        super().__init__()
        self.job = job
        self.job_console = JobConsole()
        self.state = RunState(plan or Plan())
        self.sub_title = title
        self._follow_latest = True  # show a problem's newest attempt as it arrives
        self.job_error: BaseException | None = None

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal(id="main"):
            yield ProblemList(id="problems")
            with Vertical(id="detail"):
                yield Pane("code", id="code")
                with Horizontal(id="verdict"):
                    yield Pane("sandbox", id="cases")
                    yield Pane("repair diff", id="diff")
                    yield Pane("candidates", id="candidates")
        with Horizontal(id="bottom"):
            yield Static(id="counters")
            yield TrainingPane(id="training")
            yield Log(id="log", max_lines=2000)
        yield Footer()

    def on_mount(self) -> None:
        # Held here because `query_one` searches the active screen, which may be the history.
        self.problems = self.query_one(ProblemList)
        self.code, self.cases, self.diff, self.candidates = (
            self.query_one(f"#{name}", Pane) for name in ("code", "cases", "diff", "candidates")
        )
        self.counters = self.query_one("#counters", Static)
        self.training = self.query_one(TrainingPane)
        self.log_pane = self.query_one("#log", Log)
        self.main_screen = self.screen
        self.problems.border_title = "problems"
        self.log_pane.border_title = "log"
        self.problems.focus()
        self.set_interval(REFRESH_S, self.drain)
        self.set_interval(1.0, self._refresh_status)  # the clock of a long model call
        self._show_stage()  # what the job does before its first event: loading the model
        self.run_job_worker()

    @work(thread=True, exit_on_error=False, name="job")
    def run_job_worker(self) -> bool:
        return run_job(self.job, self.job_console)

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.worker.name != "job" or not event.worker.is_finished:
            return
        self.drain()
        log = self.log_pane
        if event.state == WorkerState.SUCCESS and event.worker.result:
            self.state.finish()
            log.write_line("job finished")
            self._refresh_problems()
        elif event.state == WorkerState.SUCCESS:
            log.write_line("job stopped; re-run the same command to resume it")
        elif event.state == WorkerState.ERROR:
            self.job_error = event.worker.error
            log.write_line(f"job failed: {event.worker.error}")
            self.notify(str(event.worker.error), title="job failed", severity="error", timeout=30)
        self._refresh_status()
        if not self.shown():  # an empty pane said what the job was doing
            self._show_attempt()

    def drain(self) -> None:
        """Apply what the job reported since the last call, and redraw once."""
        events = self.job_console.drain()
        if not events:
            return
        viewed = self.state.view
        changed = {self.state.apply(event) for event in events}
        lines = [line for e in events if (line := log_line(e))]
        if lines:
            self.log_pane.write_lines(lines)
            # Again once laid out: lines written before the first layout leave the log short of its end.
            self.call_after_refresh(self.log_pane.scroll_end, animate=False)
        if any(isinstance(event, TrainStep) for event in events):
            self.training.show(self.state.train)
            self.main_screen.add_class("training")
        if self.state.view is not viewed:  # the job started a new stage, and the panes follow it
            self._show_stage()
            return
        self._refresh_problems()
        self._refresh_status()
        if self.state.view is not self.state.current:  # an earlier stage: nothing changes there
            return
        shown = self.shown()
        if not shown:  # its status (pending, drafting) may have changed
            self._show_attempt()
        elif self.selected_task in changed:
            if self._follow_latest and self.attempt_index != len(shown) - 1:
                self.attempt_index = len(shown) - 1
            else:
                self._show_attempt()

    # What the panes mirror.
    def visible_problems(self) -> list[tuple[str, str]]:
        view = self.state.view
        rows = [(task_id, view.status(task_id)) for task_id in view.order]
        return [row for row in rows if self.status_filter in (None, row[1])]

    def shown(self) -> list[Attempt | PartialText]:
        """What the attempt keys step through for the selected problem: its attempts in
        chain order, then the output the model is writing for it, if any."""
        if not self.selected_task:
            return []
        view = self.state.view
        partial = view.partial(self.selected_task)
        return view.history(self.selected_task) + ([partial] if partial else [])

    def _show_stage(self) -> None:
        """Redraw all that shows the viewed stage: problems, counters, the selected attempt."""
        self._refresh_problems()
        self._refresh_status()
        self._show_latest()

    def _refresh_problems(self) -> None:
        rows = self.visible_problems()
        self.problems.show(rows)
        self.problems.border_title = f"problems · {self.status_filter or 'all'} {len(rows)}"
        if not rows:
            self.selected_task = None

    def _refresh_status(self) -> None:
        state = self.state
        parts = [state.stage or "run"]
        if state.progress:
            label = "drafts" if state.progress.stage == state.stage else state.progress.stage
            parts.append(f"{label} {state.progress.done}/{state.progress.total}")
            if state.progress.tokens_per_second:
                parts.append(f"{state.progress.tokens_per_second:.1f} tok/s")
        if self.paused:
            parts.append("PAUSED" + ("" if self.job_console.waiting.is_set() else " at the next event"))
        elif activity := self._activity():
            parts.append(f"{activity} … {time.monotonic() - state.generating_since:.0f}s")
        self.counters.update(render.counters(state.view.counters(), " · ".join(parts)))
        self.counters.border_title = state.view_title()

    def _activity(self) -> str:
        """The job's activity while it runs (a job that failed or stopped does nothing)."""
        return "" if self.job_console.done.is_set() else self.state.activity()

    def _show_attempt(self) -> None:
        shown = self.shown()
        code, cases, diff = self.code, self.cases, self.diff
        if not shown:
            status = self.state.view.status(self.selected_task) if self.selected_task else "no problem"
            waiting = Text(f"{status}: no attempt yet", style="dim italic")
            self.candidates.display = False
            for pane in (code, cases, diff):
                pane.show(waiting)
            if activity := self._activity():  # the first minutes of a run: say what it is doing
                code.show(Text.assemble((f"{activity} …", "bold"), "\n", waiting))
            return
        item = shown[min(self.attempt_index, len(shown) - 1)]
        position = f"{self.attempt_index + 1}/{len(shown)}"
        self._show_candidates(item)
        if isinstance(item, PartialText):
            diff.display = False  # nothing to compare with until it is written
            code.show(render.writing(item), f"{render.writing_title(item)} · {position}", at_end=True)
            cases.show(Text("not run yet: the model is still writing it", style="dim italic"))
            return
        view = self.state.view
        diff.display = item.kind != "draft"  # a draft has nothing to compare with: cases get the room
        code.show(render.code(item), f"{render.attempt_title(item, view.picked_by(item))} · {position}")
        cases.show(render.cases(item), render.cases_summary(item))
        diff.show(render.diff(view.parent(item), item))

    def _show_candidates(self, item: Attempt | PartialText) -> None:
        """Beside a draft of a problem with several, all of its samples and the strategies'
        picks among them (what `eval --select` chose)."""
        rows = self.state.view.candidates(item.task_id)
        self.candidates.display = item.kind == "draft" and len(rows) > 1
        if self.candidates.display:
            picked = sum(bool(row["picked_by"]) for row in rows)
            subtitle = f"{len(rows)} samples" + (f" · {picked} picked" if picked else "")
            self.candidates.show(render.candidates(rows, item.sample_index), subtitle)

    def watch_selected_task(self) -> None:
        self._show_latest()

    def _show_latest(self) -> None:
        """Show the selected problem's newest attempt (or text being written), and follow
        the ones to come."""
        self.set_reactive(RepairApp.attempt_index, max(len(self.shown()) - 1, 0))
        self._follow_latest = True
        self._show_attempt()

    def watch_attempt_index(self) -> None:
        self._show_attempt()

    def watch_status_filter(self) -> None:
        self._refresh_problems()

    def watch_paused(self, paused: bool) -> None:
        if paused:
            self.job_console.pause()
        else:
            self.job_console.resume()
        self._refresh_status()

    @on(OptionList.OptionHighlighted, "#problems")
    def _highlighted(self, event: OptionList.OptionHighlighted) -> None:
        self.selected_task = event.option.id

    @on(OptionList.OptionSelected, "#problems")
    def _selected(self, event: OptionList.OptionSelected) -> None:
        self.action_history()

    # Actions (keys and command palette).
    def action_attempt(self, step: int) -> None:
        count = len(self.shown())
        if count:
            self.attempt_index = max(0, min(count - 1, self.attempt_index + step))
            self._follow_latest = self.attempt_index == count - 1

    def action_cycle_filter(self) -> None:
        self.status_filter = FILTERS[(FILTERS.index(self.status_filter) + 1) % len(FILTERS)]

    def action_filter(self, status: str | None) -> None:
        self.status_filter = status

    def action_next_stage(self) -> None:
        self.action_view_stage((self.state.viewed + 1) % len(self.state.stages))

    def action_view_stage(self, index: int) -> None:
        self.state.viewed = index
        self._show_stage()

    def action_history(self) -> None:
        if self.selected_task:
            self.push_screen(HistoryScreen(self.state.view, self.selected_task))

    def action_toggle_pause(self) -> None:
        self.paused = not self.paused

    def action_help(self) -> None:
        if self.screen.query("HelpPanel"):
            self.action_hide_help_panel()
        else:
            self.action_show_help_panel()

    async def action_quit(self) -> None:
        """Stop the job once what the model wrote is stored (its `with` blocks close the
        store), then exit; a job busy in a long model call is left to `run_with_tui`."""
        self.job_console.stop()
        if not self.job_console.done.is_set():
            self.notify("stopping the job once what the model wrote is stored …")
            await asyncio.to_thread(self.job_console.done.wait, QUIT_GRACE_S)
        self.exit()

    def on_unmount(self) -> None:
        """However the app ends (quit, Ctrl+C, an error), the job is asked to stop."""
        self.job_console.stop()

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        yield SystemCommand("Pause / resume the job", "Hold the job between two events", self.action_toggle_pause)
        yield SystemCommand("Open history", "Every attempt of the selected problem", self.action_history)
        yield SystemCommand("Next attempt", "Of the selected problem", lambda: self.action_attempt(1))
        yield SystemCommand("Previous attempt", "Of the selected problem", lambda: self.action_attempt(-1))
        for status in FILTERS:
            label = status or "all"
            yield SystemCommand(f"Filter: {label}", f"Show {label} problems", lambda s=status: self.action_filter(s))
        for index in range(len(self.state.stages)):
            label = self.state.label(index)
            yield SystemCommand(
                f"Stage: {label}", f"Show the problems of the job's {label} stage", lambda i=index: self.action_view_stage(i)
            )
        yield SystemCommand("Help: keys", "Show or hide the key bindings", self.action_help)
