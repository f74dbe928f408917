"""Draft -> execute -> repair -> verify, as a generator of events.

For each problem: `samples` drafts; each runs in the sandbox. A failing attempt gets a
repair prompt holding the feedback of its *visible* cases; up to `rounds` repairs follow
one chain per draft, and each is verified on *all* cases, hidden ones included. When
`resample` is set, every failing draft also gets one independent fresh sample: the
budget-matched baseline (two model calls either way) that repair has to beat. When
pairs are saved, the drafts of each problem are also paired with each other once all
are judged (`pairing.sample_pairs`): with several samples per problem, that is where
most repair pairs come from.

Everything is written to the store before it is reported, keyed by (task, kind, sample,
round), so a re-run skips what is stored and a killed run loses nothing committed.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Iterable, Iterator, Protocol

from mlx_repair.events import AttemptFinished, Generating, PairSaved, Progress
from mlx_repair.problems import Problem
from mlx_repair.mining.pairing import attempt_pairs, sample_pairs
from mlx_repair.mining.store import Attempt, Store


@dataclass
class Request:
    """One model call: write (or repair) code for `problem`."""

    problem: Problem
    kind: str  # "draft", "repair" or "resample"
    sample_index: int
    round: int
    broken: Attempt | None = None  # the attempt a repair starts from


@dataclass
class Output:
    request: Request
    prompt: str
    completion: str
    code: str
    num_tokens: int
    logprob: float | None = None  # the mean token log-probability (generation.sampling.Sample)


class Writer(Protocol):
    """The model side: turns requests into code. `generation.writer.MLXWriter` is the real one;
    tests may script one."""

    name: str

    def write(self, requests: list[Request]) -> Iterator[Output]: ...

    def sampling_for(self, kind: str) -> dict: ...


class Judge(Protocol):
    """The sandbox side: `sandbox.Pool` satisfies it."""

    def run(self, jobs: Iterable[tuple]) -> Iterator[tuple]: ...


@dataclass
class LoopConfig:
    samples: int = 1
    rounds: int = 1
    resample: bool = False
    save_pairs: bool = True
    # Problems whose drafts go to the model together (then their repairs): enough to fill
    # a batch of 32 sequences; each output is judged and stored as soon as it is written.
    chunk_size: int = 32
    stage: str = "mine"


@dataclass
class _Tally:
    done: int = 0
    tokens: int = 0
    follow_ups_done: int = 0
    follow_ups_total: int = 0
    started: float = field(default_factory=time.perf_counter)

    def count(self, request: Request) -> None:
        if request.kind == "draft":
            self.done += 1
        else:
            self.follow_ups_done += 1

    def progress(self, stage: str, total: int) -> Progress:
        seconds = max(time.perf_counter() - self.started, 1e-9)
        return Progress(
            stage, self.done, total, self.tokens, self.tokens / seconds,
            self.follow_ups_done, self.follow_ups_total, seconds,
        )


def run_loop(
    problems: list[Problem], writer: Writer, judge: Judge, store: Store, config: LoopConfig
) -> Iterator[object]:
    if not 0 <= config.rounds <= 3:
        raise ValueError(f"repair rounds must be between 0 and 3, got {config.rounds}")
    tally = _Tally()
    total = len(problems) * config.samples
    for start in range(0, len(problems), config.chunk_size):
        chunk = problems[start : start + config.chunk_size]
        yield from _step(_draft_requests(chunk, config), writer, judge, store, config, tally, total)
        if config.save_pairs:
            yield from _save_sample_pairs(chunk, store)
        for round in range(1, config.rounds + 1):
            requests = _repair_requests(chunk, store, config, round)
            yield from _step(requests, writer, judge, store, config, tally, total)
        if config.resample:
            requests = _resample_requests(chunk, store, config)
            yield from _step(requests, writer, judge, store, config, tally, total)


def _draft_requests(chunk: list[Problem], config: LoopConfig) -> list[Request]:
    return [
        Request(problem, "draft", sample, 0)
        for problem in chunk
        for sample in range(config.samples)
    ]


def _repair_requests(chunk, store: Store, config: LoopConfig, round: int) -> list[Request]:
    """A repair for every chain whose latest attempt (draft or previous repair) failed."""
    latest = ("draft", 0) if round == 1 else ("repair", round - 1)
    return _after_failures(chunk, store, config, latest, "repair", round)


def _resample_requests(chunk, store: Store, config: LoopConfig) -> list[Request]:
    """An independent fresh sample for every failing draft."""
    return _after_failures(chunk, store, config, ("draft", 0), "resample", 1)


def _after_failures(chunk, store: Store, config: LoopConfig, source: tuple[str, int], kind: str, round: int):
    """A `kind` request for every chain whose stored `source` (kind, round) attempt failed."""
    requests = []
    for problem in chunk:
        for sample in range(config.samples):
            failed = store.attempt_by_key(problem.task_id, source[0], sample, source[1])
            if failed is not None and not failed.passed:
                requests.append(Request(problem, kind, sample, round, broken=failed))
    return requests


def _step(requests, writer, judge, store, config, tally, total) -> Iterator[object]:
    """Write the requests that are not stored yet, judge them, store and report all."""
    todo = []
    tally.follow_ups_total += sum(r.kind != "draft" for r in requests)
    for request in requests:
        stored = store.attempt_by_key(request.problem.task_id, request.kind, request.sample_index, request.round)
        if stored is None:
            todo.append(request)
            continue
        tally.count(request)
        yield AttemptFinished(stored, resumed=True)
        if config.save_pairs:  # the run may have died between the attempt and its pairs
            yield from _save_pairs(request, stored, store)
    if not todo:
        return
    yield Generating(todo[0].kind, tuple(r.problem.task_id for r in todo), len(todo))
    outputs: dict[int, Output] = {}

    def jobs():  # each output goes to the sandbox as soon as the model finishes it
        for output in writer.write(todo):
            outputs[id(output.request)] = output
            yield id(output.request), output.request.problem, output.code

    for key, verdict in judge.run(jobs()):
        output = outputs.pop(key)
        attempt = store.add_attempt(_attempt(output, verdict, writer))
        tally.tokens += output.num_tokens
        tally.count(output.request)
        yield AttemptFinished(attempt)
        if config.save_pairs:
            yield from _save_pairs(output.request, attempt, store)
        yield tally.progress(config.stage, total)


def _attempt(output: Output, verdict, writer: Writer) -> Attempt:
    request = output.request
    return Attempt(
        task_id=request.problem.task_id,
        kind=request.kind,
        sample_index=request.sample_index,
        round=request.round,
        prompt=output.prompt,
        completion=output.completion,
        code=output.code,
        model=writer.name,
        passed=verdict.passed,
        status=verdict.status,
        feedback=verdict.feedback,
        num_tokens=output.num_tokens,
        sampling=writer.sampling_for(request.kind),
        verdict=verdict.to_dict(),
        parent_id=request.broken.id if request.broken else None,
        logprob=output.logprob,
    )


def _save_pairs(request: Request, attempt: Attempt, store: Store) -> Iterator[PairSaved]:
    yield from _store_pairs(attempt_pairs(attempt, request.broken), store, request.problem)


def _save_sample_pairs(chunk: list[Problem], store: Store) -> Iterator[PairSaved]:
    """Once every draft of the chunk is judged: pairs among each problem's drafts."""
    for problem in chunk:
        drafts = [a for a in store.attempts(problem.task_id) if a.kind == "draft"]
        yield from _store_pairs(sample_pairs(drafts), store, problem)


def _store_pairs(pairs, store: Store, problem: Problem) -> Iterator[PairSaved]:
    for pair in pairs:
        pair.origin = problem.origin
        if store.add_pair(pair):
            yield PairSaved(pair, store.pair_counts())
