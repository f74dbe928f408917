"""Extra inputs for execution agreement, and what candidates do on them in the sandbox.

Agreement (MBR-exec) compares what samples *do*. Every sample that passes the visible
cases already agrees with the others there, so it needs inputs beyond them. Mutations
of the visible inputs (a number moved by one, a list reversed or shortened, a string
emptied) keep the types the function expects and cost no model call. They come without
expected values, and need none: the samples are compared with each other.

Candidates run in the real sandbox (`sandbox.Pool`), never anywhere else: as a copy of
the problem whose check() calls the candidate on each extra input and compares the
result with None, so that the judge reports, case by case, what the call returned (as
the feedback shows values: a repr capped at a few hundred characters) or raised.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, replace
from itertools import chain, zip_longest
from typing import Hashable, Iterable

from mlx_repair.problems import Problem
from mlx_repair.sandbox.cases import plan_tests

MAX_EXTRA_INPUTS = 8  # per problem: all of them run in one sandbox run per candidate


@dataclass(frozen=True)
class Probe:
    """A problem's extra inputs (argument lists, as source) and the problem that runs a
    candidate on them."""

    inputs: tuple[str, ...]
    problem: Problem


def make_probe(problem: Problem, limit: int = MAX_EXTRA_INPUTS) -> Probe | None:
    """The probe of `problem`'s visible inputs, or None when none can be mutated (no
    visible case calls the function with literal arguments; a Go problem, whose inputs
    are Go values)."""
    if problem.language != "python":
        return None
    inputs = extra_inputs(visible_inputs(problem), limit)
    if not inputs:
        return None
    calls = "\n".join(f"    assert candidate({text}) == None" for text in inputs)
    # The last check() of the test module is the one the sandbox runs.
    test = f"{problem.test.rstrip()}\n\n\ndef check(candidate):\n{calls}\n"
    return Probe(tuple(inputs), replace(problem, test=test))


def visible_inputs(problem: Problem) -> list[str]:
    """The argument lists of the problem's visible cases, as the sandbox splits them."""
    return [case.input for case in plan_tests(problem).cases if not case.hidden and case.input]


def extra_inputs(inputs: list[str], limit: int = MAX_EXTRA_INPUTS) -> list[str]:
    """Up to `limit` argument lists, each one of `inputs` with one argument mutated, none
    equal to a given one. Every input's first variant comes before any second one, so a
    few extra inputs already start from each visible input."""
    seen = set(inputs)
    chosen: list[str] = []
    for text in chain.from_iterable(zip_longest(*(variants(text) for text in inputs))):
        if text is not None and text not in seen:
            seen.add(text)
            chosen.append(text)
    return chosen[:limit]


def variants(text: str) -> list[str]:
    """`text` (the arguments of a call) with one literal argument mutated: each argument's
    first mutation, then each one's second, and so on. Nothing when an argument is not a
    literal (a name from the test's setup, a starred argument) or the text is cut short."""
    arguments = _literal_arguments(text)
    if arguments is None:
        return []
    per_argument = [[(i, value) for value in mutations(arguments[i][1])] for i in range(len(arguments))]
    result = []
    for i, value in chain.from_iterable(zip_longest(*per_argument, fillvalue=(None, None))):
        if i is not None:
            changed = list(arguments)
            changed[i] = (changed[i][0], value)
            result.append(_render(changed))
    return result


def _literal_arguments(text: str) -> list[tuple[str | None, object]] | None:
    """(keyword or None, value) per argument, or None unless every one is a literal (a
    starred argument is not)."""
    try:
        call = ast.parse(f"f({text})", mode="eval").body
        if any(k.arg is None for k in call.keywords):  # **mapping
            return None
        return [(None, ast.literal_eval(node)) for node in call.args] + [
            (k.arg, ast.literal_eval(k.value)) for k in call.keywords
        ]
    except (SyntaxError, ValueError, TypeError, MemoryError, RecursionError):
        return None


def _render(arguments: list[tuple[str | None, object]]) -> str:
    return ", ".join(repr(value) if key is None else f"{key}={value!r}" for key, value in arguments)


def mutations(value) -> list:
    """Values near `value` and of its type, different from it, in a fixed order."""
    if isinstance(value, bool):
        near = [not value]
    elif isinstance(value, int):
        near = [value + 1, value - 1, 0, 2 * value, -value]
    elif isinstance(value, float):
        near = [value + 1.0, value / 2, 0.0, -value]
    elif isinstance(value, (str, list, tuple)):
        near = [value[::-1], value[:-1], value + value[:1], value[:0]]
    elif isinstance(value, dict):
        near = [dict(list(value.items())[:-1])]
    else:
        near = []
    unique: list = []
    for candidate in near:
        if repr(candidate) != repr(value) and all(repr(candidate) != repr(u) for u in unique):
            unique.append(candidate)
    return unique


def run_probes(pool, jobs: Iterable[tuple[Hashable, Probe, str]]) -> dict[Hashable, tuple[str, ...]]:
    """(key, probe, code) in; {key: what the code did on each of the probe's inputs} out,
    every run in the sandbox pool."""
    verdicts = pool.run((key, probe.problem, code) for key, probe, code in jobs)
    return {key: behaviour(verdict.cases) for key, verdict in verdicts}


def behaviour(cases) -> tuple[str, ...]:
    """Per case: the value the call returned, the kind of error it raised, or that the run
    ended before it (a timeout, a crash)."""
    return tuple(
        f"raised {case.error.split(':', 1)[0]}" if case.error
        else "not run" if not case.ran
        else f"returned {case.got}"
        for case in cases
    )
