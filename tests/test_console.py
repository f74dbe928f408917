"""The plain console: what a terminal log shows for the core's events."""

import io

from mlx_repair.console import Console
from mlx_repair.events import AttemptFinished, Progress, StageStarted
from mlx_repair.mining.store import Attempt


def _finished(task_id: str, kind: str, passed: bool) -> AttemptFinished:
    attempt = Attempt(task_id, kind, 0, 0, "prompt", "completion", "code", "m", passed, "ok", "")
    return AttemptFinished(attempt)


def test_counts_start_again_with_each_stage():
    """The adapter's eval reports its own passes, not the base eval's added to them."""
    out = io.StringIO()
    console = Console(out)
    console.follow([
        StageStarted("eval-base", 2),
        _finished("a", "draft", True), _finished("b", "draft", True), _finished("b", "repair", True),
        Progress("eval-base", 2, 2),
        StageStarted("eval-adapter", 2),
        _finished("a", "draft", True), _finished("b", "draft", False),
        Progress("eval-adapter", 2, 2),
    ])
    lines = out.getvalue().splitlines()
    base = next(line for line in lines if line.startswith("eval-base ["))
    adapter = next(line for line in lines if line.startswith("eval-adapter ["))
    assert "passed 2  repaired 1" in base
    assert "passed 1  repaired 0" in adapter


def test_the_bar_counts_repairs_and_resamples_and_shows_an_eta():
    """After the drafts, the line still moves: follow-ups counted, time left estimated."""
    class Terminal(io.StringIO):
        def isatty(self):
            return True

    out = Terminal()
    console = Console(out)
    console.follow([
        StageStarted("eval", 4),
        Progress("eval", 2, 4, 100, 10.0, seconds=20.0),
        Progress("eval", 4, 4, 200, 10.0, follow_ups_done=1, follow_ups_total=3, seconds=50.0),
        Progress("eval", 4, 4, 300, 10.0, follow_ups_done=3, follow_ups_total=3, seconds=70.0),
    ])
    lines = [line.strip() for line in out.getvalue().split("\r\033[K") if line.startswith("eval [")]
    assert "2/4 drafts" in lines[0] and "ETA 20s" in lines[0]  # 2 steps left at 10 s each
    assert "4/4 drafts  1/3 repairs+resamples" in lines[1] and "ETA 20s" in lines[1]
    assert "3/3 repairs+resamples" in lines[-1] and "ETA" not in lines[-1]
