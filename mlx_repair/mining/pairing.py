"""Which training pairs the judged attempts of one problem make.

Two sources of `repair` pairs, told apart by their provenance:
- self-repair: the loop showed the model a failing attempt and its feedback, and the
  model's answer passed every case, hidden ones included;
- resample: an independent sample of the same problem passed, so it is paired with
  each failing sample, as the answer to that sample's repair prompt.
Small models trained on their own self-repairs learn minimal edits (and mostly copy the
failing code); a failing and a passing sample of the same problem differ where the
model's idea differed, so that is what a resample pair teaches. Each failing sample is
paired with the passing sample whose code differs most from it.

The same-shape control (`garbage`) pairs a failing attempt with an answer that fails too:
a failing repair, or the most different other failing sample.
"""

from __future__ import annotations

import difflib
from collections import Counter

from mlx_repair.mining.store import PAIR_KINDS, Attempt, Pair

# A fix this similar to the broken code is kept but flagged: it may be a trivial edit.
NEAR_COPY_RATIO = 0.98


def attempt_pairs(attempt: Attempt, broken: Attempt | None) -> list[Pair]:
    """The pairs one attempt makes on its own:
    - a passing draft: `solve` (problem -> code) and `keep` (passing code -> unchanged);
    - a repair of `broken` that changed the code: `repair` when it passes, `garbage`
      (the control) when it fails."""
    if attempt.kind == "draft" and attempt.passed:
        return [
            Pair(attempt.task_id, "solve", attempt.id, feedback=""),
            Pair(attempt.task_id, "keep", attempt.id, feedback="", broken_id=attempt.id),
        ]
    if attempt.kind == "repair" and _differs(broken, attempt):
        return [_pair("repair" if attempt.passed else "garbage", broken, attempt, "self-repair")]
    return []


def sample_pairs(drafts: list[Attempt]) -> list[Pair]:
    """Pairs among independent drafts of one problem: each failing draft with the most
    different passing draft (`repair`) and with the most different other failing draft
    (`garbage`). A draft is never paired with itself or with code identical to its own."""
    passing = [d for d in drafts if d.passed]
    failing = [d for d in drafts if not d.passed]
    pairs = []
    for broken in failing:
        for kind, candidates in (("repair", passing), ("garbage", failing)):
            answer = most_different(broken, candidates)
            if answer is not None:
                pairs.append(_pair(kind, broken, answer, "resample"))
    return pairs


def most_different(broken: Attempt, candidates: list[Attempt]) -> Attempt | None:
    """The candidate whose code is least similar to `broken`'s (ties: the first sample)."""
    others = [c for c in candidates if _differs(broken, c)]
    if not others:
        return None
    return min(others, key=lambda c: (similarity(broken.code, c.code), c.sample_index))


def similarity(a: str, b: str) -> float:
    return difflib.SequenceMatcher(None, a, b).ratio()


def _differs(broken: Attempt, other: Attempt) -> bool:
    return other.id != broken.id and other.code.strip() != broken.code.strip()


def _pair(kind: str, broken: Attempt, answer: Attempt, provenance: str) -> Pair:
    return Pair(
        broken.task_id,
        kind,
        answer.id,
        feedback=broken.feedback,
        broken_id=broken.id,
        near_copy=similarity(broken.code, answer.code) >= NEAR_COPY_RATIO,
        provenance=provenance,
    )


def kind_counts(pairs: list[Pair]) -> dict[str, dict[str, int]]:
    """Pairs per kind and provenance, e.g. {"repair": {"resample": 38, "self-repair": 3}}."""
    return nested_counts((p.kind, p.provenance) for p in pairs)


def nested_counts(kinds_and_provenances) -> dict[str, dict[str, int]]:
    """Counts of (kind, provenance) as {kind: {provenance: n}}, both sorted."""
    counts: dict[str, dict[str, int]] = {}
    for (kind, provenance), n in sorted(Counter(kinds_and_provenances).items()):
        counts.setdefault(kind, {})[provenance] = n
    return counts


def format_pair_counts(counts: dict[str, dict[str, int]]) -> str:
    """"repair 41 (resample 38, self-repair 3), solve 60, ..." from `kind_counts`."""
    return ", ".join(f"{kind} {format_kind_count(counts.get(kind, {}))}" for kind in PAIR_KINDS)


def format_kind_count(by_source: dict[str, int]) -> str:
    """One kind's total, and where its pairs came from when that can differ (not for
    solve and keep pairs, which all come from drafts)."""
    total = sum(by_source.values())
    if set(by_source) <= {"draft"}:
        return str(total)
    return f"{total} (" + ", ".join(f"{source} {n}" for source, n in sorted(by_source.items())) + ")"


def pair_total(counts: dict[str, dict[str, int]], kind: str) -> int:
    return sum(counts.get(kind, {}).values())
