"""The bridge between a job running in a worker thread and the app.

A job is any callable that takes a console: `run_stage` and the commands already report
through the CLI's `Console` (show, follow, line, import_progress, writing), so the same
code runs under the TUI with `JobConsole` in its place. The console queues events for the app to
drain at its own pace (a fast job cannot flood the UI), holds the job while paused, and
ends it when asked to stop: at the next event that leaves no model output unstored
(the loop stores every attempt before it reports it, and judging what the model has
written takes seconds, writing it took minutes), so the store resumes with nothing lost.
What the model is writing (`writing`, the writer's listener) reaches the app through the
same queue, with at most one text per output waiting in it (`LatestText`).
"""

from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass
from typing import Callable, Iterable

from mlx_repair.events import AttemptFinished, Generating, Log, PartialText, Prefilling, Progress, WritingListener

IMPORT_EVERY_S = 0.25  # a model import reports each tensor; the UI needs a few a second


class JobStopped(Exception):
    """Raised inside the job after `stop()`, at the first event that leaves no model output
    unstored; it unwinds the job's `with` blocks, which close the store and the sandbox."""


@dataclass(frozen=True)
class _NewText:
    """In the queue in place of a partial text: the newest text for `key` is read when the
    app drains it, so the text keeps its place among the events (before the attempt it
    becomes) without queueing every token's text."""

    key: tuple


class LatestText(WritingListener):
    """Keeps the newest text of each output the model is writing; a fast model replaces
    texts the app has not drawn yet instead of queueing them."""

    def __init__(self, events: queue.SimpleQueue) -> None:
        self._events = events
        self._lock = threading.Lock()
        self._latest: dict[tuple, PartialText] = {}

    def on_text(self, partial: PartialText) -> None:
        with self._lock:
            queued = partial.key in self._latest
            self._latest[partial.key] = partial
        if not queued:
            self._events.put(_NewText(partial.key))

    def on_prefill(self, prefilling: Prefilling) -> None:
        """Queued as it is: one per prompt, seconds apart on a CPU."""
        self._events.put(prefilling)

    def take(self, key: tuple) -> PartialText:
        with self._lock:
            return self._latest.pop(key)


class JobConsole:
    def __init__(self) -> None:
        self._events: queue.SimpleQueue = queue.SimpleQueue()
        self.writing = LatestText(self._events)  # the job's writer tells it what the model writes
        self._running = threading.Event()
        self._running.set()
        self._stopping = threading.Event()
        self.waiting = threading.Event()  # set while the job is held by a pause
        self.done = threading.Event()  # set when the job has returned, failed or stopped
        self._last_import = 0.0
        self._unstored = 0  # outputs the model has written that the job has not reported yet

    # The Console API, called from the job's thread.
    def show(self, event: object) -> None:
        if isinstance(event, Generating):
            self._unstored = event.count
        elif isinstance(event, AttemptFinished) and not event.resumed:
            self._unstored -= 1
        self._checkpoint()
        self._events.put(event)

    def follow(self, events: Iterable[object]) -> None:
        try:
            for event in events:
                self.show(event)
        finally:
            getattr(events, "close", lambda: None)()

    def line(self, text: str) -> None:
        self.show(Log(text))

    def import_progress(self, done: int, total: int, name: str) -> None:
        """No checkpoint here: stopping half-way through an import would leave a partial cache."""
        now = time.monotonic()
        if done == total or now - self._last_import >= IMPORT_EVERY_S:
            self._last_import = now
            self._events.put(Progress("importing model", done, total))

    def _checkpoint(self) -> None:
        if not self._running.is_set():
            self.waiting.set()
            self._running.wait()
            self.waiting.clear()
        if self._stopping.is_set() and self._unstored <= 0:
            raise JobStopped

    @property
    def stopping(self) -> threading.Event:
        """Set once the app asked the job to stop; a job that waits can wait on it."""
        return self._stopping

    # Control, called from the app's thread.
    def pause(self) -> None:
        self._running.clear()

    def resume(self) -> None:
        self._running.set()

    def stop(self) -> None:
        self._stopping.set()
        self._running.set()

    def drain(self) -> list[object]:
        events = []
        while True:
            try:
                event = self._events.get_nowait()
            except queue.Empty:
                return events
            events.append(self.writing.take(event.key) if isinstance(event, _NewText) else event)


def run_job(job: Callable[[JobConsole], object], console: JobConsole) -> bool:
    """Run `job` to its end; False when it was stopped. Errors propagate (the worker shows them)."""
    try:
        job(console)
        return True
    except JobStopped:
        return False
    finally:
        console.done.set()
