"""Attempts as Rich renderables: the code, the sandbox's cases, the repair's diff.

Pure functions, so the main screen and the history screen draw an attempt the same way
and tests can read what a pane will show.
"""

from __future__ import annotations

import difflib
import re
from typing import Sequence

from rich.console import Group, RenderableType
from rich.syntax import Syntax
from rich.table import Table
from rich.text import Text

from mlx_repair.events import PartialText
from mlx_repair.generation import math_prompts
from mlx_repair.mining.store import Attempt

from mlx_repair.tui.state import MARKS, Counters

CELL_CHARS = 60  # a huge input or output is cut in its cell (the stored verdict keeps it whole)
FENCE = re.compile(r"```(\w+)")
GO_PACKAGE = re.compile(r"^package \w+", re.M)


def status_mark(status: str) -> Text:
    mark, style = MARKS[status]
    return Text(mark, style=style)


def attempt_title(attempt: Attempt, picked_by: Sequence[str] = ()) -> str:
    """What the code pane shows: which attempt, its outcome, and the selection strategies
    that picked it among its problem's samples."""
    outcome = "passed" if attempt.passed else attempt.status
    picked = f" · picked by {', '.join(picked_by)}" if picked_by else ""
    return f"{attempt.task_id} · {_which(attempt)} · {outcome}{picked}"


def writing_title(partial: PartialText) -> str:
    return f"{partial.task_id} · writing {_which(partial)} … {partial.num_tokens} tokens"


def _which(item: Attempt | PartialText) -> str:
    """Which output of a problem's chains it is: "draft #0", "repair #0 round 2"."""
    return f"{item.kind} #{item.sample_index}" + (f" round {item.round}" if item.kind == "repair" else "")


def code(attempt: Attempt) -> RenderableType:
    if not attempt.code.strip():
        return Text("(no code could be extracted from the model's output)", style="italic dim")
    return Syntax(attempt.code, language_of(attempt), line_numbers=True, word_wrap=False, theme="ansi_dark")


def language_of(attempt: Attempt) -> str:
    """The lexer for an attempt's code, read from the prompt it answered: the fence the
    chat prompt asked for; a base model's Go prompt by its package clause; a math answer
    (its prompt asks for the answer line) is plain text; anything else is Python."""
    if fence := FENCE.search(attempt.prompt):
        return fence.group(1)
    if GO_PACKAGE.search(attempt.prompt):
        return "go"
    return "text" if math_prompts.ANSWER_FORMAT in attempt.prompt else "python"


def writing(partial: PartialText) -> RenderableType:
    """The model's raw output so far: no code is extracted from it until it is finished."""
    return Text(partial.text)


def cases(attempt: Attempt) -> RenderableType:
    """The sandbox's verdict per case: what the repair prompt showed (visible cases) and
    what only the verification saw (hidden cases, marked)."""
    verdict = attempt.verdict or {}
    rows = verdict.get("cases", [])
    table = Table(box=None, padding=(0, 1), header_style="bold", caption_justify="left")
    table.add_column("", no_wrap=True)
    table.add_column("#", no_wrap=True)
    for column in ("input", "expected", "got"):
        table.add_column(column, overflow="fold", min_width=6)
    for case in rows:
        got = case.get("got")
        if got is None:
            got = case.get("error") or ("not run" if not case.get("ran", True) else "")
        table.add_row(
            Text("✓", "green") if case["passed"] else Text("✗", "red"),
            Text(f"{case['index']}h", "dim") if case["hidden"] else Text(str(case["index"])),
            _cell(case.get("input")),
            _cell(case.get("expected")),
            _cell(got, "" if case["passed"] else "red"),
        )
    if any(case["hidden"] for case in rows):
        table.caption = "h: hidden case"
        table.caption_style = "dim"
    parts: list[RenderableType] = []
    if verdict.get("error"):
        parts.append(Text(verdict["error"], style="red"))
    if rows:
        parts.append(table)
    elif not verdict.get("error"):
        parts.append(Text(attempt.feedback or "(no cases)", style="dim"))
    return Group(*parts)


def cases_summary(attempt: Attempt) -> str:
    rows = attempt.verdict.get("cases", []) if attempt.verdict else []
    passed = sum(c["passed"] for c in rows)
    hidden_failing = sum(c["hidden"] and not c["passed"] for c in rows)
    return f"{attempt.status} · {passed}/{len(rows)} cases" + (
        f" · {hidden_failing} hidden failing" if hidden_failing else ""
    )


def candidates(rows: list[dict], shown: int | None = None) -> RenderableType:
    """A problem's samples (`StageState.candidates`): each one's likelihood, its verdict on
    the visible cases (all a selector sees) and on all cases, and the strategies that
    picked it; `shown` (a sample index) is the one in the code pane."""
    table = Table(box=None, padding=(0, 1), header_style="bold")
    for column in ("", "#", "log p", "visible", "all", "picked by"):
        table.add_column(column, no_wrap=column != "picked by")
    for row in rows:
        logprob = "" if row["logprob"] is None else f"{row['logprob']:.3f}"
        table.add_row(
            Text("▶", "bold") if row["sample"] == shown else Text(""),
            Text(str(row["sample"])),
            Text(logprob, "dim"),
            Text(row["visible"], "green" if row["visible_passed"] else "red"),
            Text(row["all"], "green" if row["passed"] else "red"),
            Text(", ".join(row["picked_by"]), "bold cyan"),
        )
    return table


def _cell(value: str | None, style: str = "") -> Text:
    text = "" if value is None else str(value)
    if len(text) > CELL_CHARS:
        text = text[: CELL_CHARS - 1] + "…"
    return Text(text, style=style)


def diff(broken: Attempt | None, attempt: Attempt) -> RenderableType:
    """A repair (or resample) against the broken attempt it started from, as a colored unified diff."""
    if broken is None:
        return Text("(the broken attempt is not loaded)", style="italic dim")
    lines = difflib.unified_diff(
        broken.code.splitlines(), attempt.code.splitlines(),
        f"{broken.kind} #{broken.sample_index}", f"{attempt.kind} #{attempt.sample_index}", lineterm="",
    )
    text = Text()
    for line in lines:
        style = {"+": "green", "-": "red", "@": "cyan"}.get(line[:1], "")
        if line.startswith(("+++", "---")):
            style = "bold"
        text.append(line + "\n", style=style)
    return text or Text("(identical to the broken attempt)", style="italic dim")


def counters(counts: Counters, progress_line: str) -> Text:
    n = counts.drafted
    kinds = [f"{kind} {count}" for kind, count in counts.pairs.items()]
    text = Text()
    text.append(progress_line + "\n", style="bold")
    text.append(f"cold          {_share(counts.cold, n)}\n")
    text.append(f"after repair  {_share(counts.after_repair, n)}\n")
    text.append("pairs " + " · ".join(kinds[:2]) + "\n")
    text.append("      " + " · ".join(kinds[2:]))
    return text


def _share(value: float, n: int) -> str:
    if not n:
        return "-"
    shown = f"{value:g}" if value != int(value) else f"{int(value)}"
    return f"{shown}/{n}  {100 * value / n:5.1f}%"
