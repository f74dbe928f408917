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
