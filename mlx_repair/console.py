"""Print the core's events on a terminal: one live progress line, and plain lines when the
output is a file or a CI log (no carriage-return noise there)."""

from __future__ import annotations

import sys
import time
from collections import Counter
from typing import Iterable, TextIO

from mlx_repair.events import (
    AttemptFinished,
    Generating,
    PairSaved,
    Prefilling,
    Progress,
    StageStarted,
    WritingListener,
    duration,
    event_line,
)

PLAIN_EVERY_S = 30.0  # without a terminal, a progress line at most this often
BAR_WIDTH = 20


class Console(WritingListener):
    def __init__(self, stream: TextIO | None = None):
        self.stream = stream or sys.stderr
        self.live = self.stream.isatty()
        # The writer's listener: prompt processing goes on the progress line; the text being
        # written does not (a line per finished output is all a terminal log wants).
        self.writing = self
        self.outcomes: Counter = Counter()
        self.pairs: dict[str, int] = {}
        self._call = ""  # the model call under way: "writing 32 drafts"
        self._prefill: Prefilling | None = None  # its prompts read so far
        self._bar: Progress | None = None  # the stage's latest, extended by the prefill
        self._last_plain = 0.0
        self._line_open = False
        # (stage, follow-ups asked for) whose all-done progress line was printed: once each
        self._completed: set[tuple[str, int]] = set()

    def follow(self, events: Iterable[object]) -> None:
        for event in events:
            self.show(event)
        self._end_line()

    def show(self, event: object) -> None:
        if isinstance(event, AttemptFinished):
            attempt = event.attempt
            self.outcomes[(attempt.kind, attempt.passed)] += 1
        elif isinstance(event, PairSaved):
            self.pairs = dict(event.counts)
        elif isinstance(event, Progress):
            self._progress(event)
        elif isinstance(event, Generating):
            self._call, self._prefill = f"writing {event.count} {event.kind}s", None
            self._progress_text(f"{self._call} ...", force=False)
        elif isinstance(event, Prefilling):
            self._prefill = event
            head = f"{self._bar_text(self._bar)} " if self._bar else f"{self._call}:"
            self._progress_text(f"{head} {event.text()}", force=False)
        if isinstance(event, StageStarted):
            # Counts are per stage: the adapter's eval must not add to the base eval's.
            self.outcomes.clear()
            self.pairs = {}
            self._bar = None
            self._completed = {c for c in self._completed if c[0] != event.stage}
        if (text := event_line(event)) is not None:
            self.line(text)

    def on_prefill(self, prefilling: Prefilling) -> None:
        self.show(prefilling)

    def line(self, text: str) -> None:
        self._end_line()
        print(text, file=self.stream, flush=True)

    def import_progress(self, done: int, total: int, name: str) -> None:
        """For a model import: (tensors done, tensors total, tensor name)."""
        self._progress_text(f"importing model: tensor {done}/{total} {name}", force=done == total)

    def _progress(self, event: Progress) -> None:
        self._bar = event
        text = self._bar_text(event)
        if self._prefill and self._prefill.done < self._prefill.total:
            text += "  " + self._prefill.text()
        key = (event.stage, event.follow_ups_total)
        all_done = event.done == event.total and event.follow_ups_done == event.follow_ups_total
        complete = all_done and key not in self._completed
        if complete:
            self._completed.add(key)
        self._progress_text(text, force=complete)

    def _bar_text(self, event: Progress) -> str:
        share = event.done / event.total if event.total else 0.0
        filled = int(share * BAR_WIDTH)
        passed = self.outcomes[("draft", True)]
        repaired = self.outcomes[("repair", True)]
        text = f"{event.stage} [{'#' * filled}{'.' * (BAR_WIDTH - filled)}] {event.done}/{event.total} drafts"
        if event.follow_ups_total:
            text += f"  {event.follow_ups_done}/{event.follow_ups_total} repairs+resamples"
        text += (
            f"  passed {passed}  repaired {repaired}"
            f"  {event.generated_tokens} tok  {event.tokens_per_second:.1f} tok/s"
        )
        if eta := _eta(event):
            text += f"  ETA {eta}"
        if self.pairs:
            text += "  pairs " + " ".join(f"{k}={v}" for k, v in self.pairs.items() if v)
        return text

    def _progress_text(self, text: str, force: bool) -> None:
        if self.live:
            print(f"\r\033[K{text}", end="", file=self.stream, flush=True)
            self._line_open = True
            return
        now = time.monotonic()
        if force or now - self._last_plain >= PLAIN_EVERY_S:
            self._last_plain = now
            print(text, file=self.stream, flush=True)

    def _end_line(self) -> None:
        if self._line_open:
            print(file=self.stream, flush=True)
            self._line_open = False


def _eta(event: Progress) -> str | None:
    """Time left if the rest goes at the pace so far: drafts and the repairs and resamples
    asked for until now count as one step each (later failures may ask for more)."""
    done = event.done + event.follow_ups_done
    left = (event.total - event.done) + (event.follow_ups_total - event.follow_ups_done)
    if not done or not left or not event.seconds:
        return None
    return duration(event.seconds * left / done)
