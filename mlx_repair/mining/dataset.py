"""Mined pairs -> mlx-lm chat records, mixed, split by problem, written as JSONL.

Each pair becomes one `{"messages": [system, user, assistant]}` record whose user turn is
exactly what the loop shows the model (`prompts.draft_messages` / `repair_messages`), so
the adapter is trained on the turn it will see, and whose assistant turn is the code in a
```python fence, the format the loop's extraction reads. The loss is taken on the
assistant turn only (`tokenize`: mlx-lm's `ChatDataset` with `mask_prompt=True`): the
model should learn to write the fix, not to predict the feedback.

Why mix: in published self-training work, training only on corrections made a model
doubt correct answers, so `keep` pairs (passing code shown as passing -> the same code)
and `solve` pairs (problem -> passing code) are mixed in, capped at a ratio of the repair count so the
repairs stay the bulk. A repair prompt that does not show code (`facts`, `explain`) never
shows passing code either, so there the keep share goes to solve records. `control="garbage"`
is the control experiment: the same mix, with the repair pairs swapped for as many
same-shape pairs whose "fix" fails.

For the preference objective (`MixConfig.preference`), each record also carries a failing
answer to its prompt, `rejected`: the broken attempt a repair record is about, or a failing
draft of a solve record's problem.

Each mined problem gives at most `pairs_per_problem` records of each kind (identical
records once), so that a few problems with many failing samples do not make up most of
the data.

Validation records come from other problems than the training records (the mined task
ids are split by a seeded hash), so validation loss measures generalisation, not recall.
Every choice is seeded: the same store and config give byte-identical JSONL.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
from collections import Counter
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Iterable

from mlx_repair.config import RepairSection
from mlx_repair.errors import UserError
from mlx_repair.problems import MATH, Problem
from mlx_repair.problems.go import GO
from mlx_repair.generation.imports import explicit_imports
from mlx_repair.generation.prompts import draft_messages, repair_messages, shows_code, without_docs, words
from mlx_repair.mining.pairing import kind_counts, most_different
from mlx_repair.mining.store import CONTROL_KINDS, PAIR_KINDS, REPAIR_PROVENANCES, Attempt, Pair, Store

TRAIN_FILE = "train.jsonl"
VALID_FILE = "valid.jsonl"
INFO_FILE = "dataset.json"
# What a `keep` record's user turn says instead of failing tests: the loop feeds back the
# visible cases, and for passing code none of them fails.
KEEP_FEEDBACK = "All shown tests passed."
CONTROLS = (None, *CONTROL_KINDS)


@dataclass
class MixConfig:
    """Which pairs become training records, and in what proportion."""

    # keep / solve records per repair record (each capped at this ratio of the repairs):
    # enough "correct stays correct" to stop the adapter breaking good code, few enough
    # that repairs stay the majority with tens of pairs.
    keep_ratio: float = 0.5
    solve_ratio: float = 0.25
    # Records of each kind per mined problem, at most.
    pairs_per_problem: int = 2
    # The repair prompt mode of the loop that will use the adapter (prompts.REPAIR_MODES):
    # records show exactly that prompt.
    prompt_mode: str = RepairSection.prompt
    # Answers leave out the docstrings (Go: doc comments) that the prompt already holds
    # unless this is True. A sample that copies the problem's docstring spends about half of
    # its answer, and of the loss, on copying; trained on that, Qwen 0.5B learned
    # to repeat docstrings (benchmarks/results/learning_signal_qwen0.5b.md).
    answer_docstrings: bool = False
    # A near-copy fix passed hidden tests its broken code failed: a one-line bug fix.
    # Kept by default; False trains on larger edits only.
    include_near_copies: bool = True
    # Share of the mined problems held out for validation (at least one when there are two).
    valid_fraction: float = 0.15
    control: str | None = None  # None, or "garbage": the same-shape control
    # Only repair pairs of this provenance ("self-repair" or "resample"; None: both):
    # self-repairs answer the facts the prompt shows, resamples ignore them.
    repair_provenance: str | None = None
    # Records for the preference objective: each also holds a failing answer to the same
    # prompt (`rejected`), and pairs that have none are left out (`rejected_answer`).
    preference: bool = False
    seed: int = 0
    # Fewer trained pairs than this and no adapter is trained: LoRA memorises a handful of
    # records and breaks more than it fixes (benchmarks/results/measurement_notes.md).
    min_pairs: int = 10

    def __post_init__(self):
        if self.control not in CONTROLS:
            raise UserError(f"control must be one of {CONTROLS}, got {self.control!r}")
        if self.min_pairs < 1:
            raise UserError(f"min_pairs must be at least 1, got {self.min_pairs}")
        if self.pairs_per_problem < 1:
            raise UserError(f"pairs_per_problem must be at least 1, got {self.pairs_per_problem}")
        if self.repair_provenance not in (None, *REPAIR_PROVENANCES):
            raise UserError(f"repair_provenance must be unset or one of {REPAIR_PROVENANCES}, got {self.repair_provenance!r}")
        if not 0.0 <= self.valid_fraction < 1.0:
            raise UserError(f"valid_fraction must be in [0, 1), got {self.valid_fraction}")


@dataclass
class Dataset:
    """Records for mlx-lm, and what they were made of (for the manifest and the report)."""

    train: list[dict]
    valid: list[dict]
    train_tasks: list[str]  # the problems with a usable pair; the mix may leave some out
    valid_tasks: list[str]
    # {"train": {kind: {provenance: n}}, "valid": ...}: records per kind and provenance
    counts: dict = field(default_factory=dict)
    available: dict = field(default_factory=dict)  # usable pairs per kind and provenance, before mixing
    config: dict = field(default_factory=dict)

    @property
    def trained_problems(self) -> set[str]:
        """The problems the training records come from."""
        return {record["task_id"] for record in self.train}


@dataclass(frozen=True)
class DatasetInfo:
    """What `write_dataset` wrote: the folder, the data hash, and the dataset.json record."""

    path: Path
    sha256: str
    info: dict


def build_dataset(
    store: Store, problems: Iterable[Problem], config: MixConfig | None = None, only: set[str] | None = None
) -> Dataset:
    """The mixed, split records of the run `store` has selected (of the problems in `only`,
    when given: a held-out part of a set the run mined whole)."""
    config = config or MixConfig()
    by_id = {problem.task_id: problem for problem in problems}
    attempts = {attempt.id: attempt for attempt in store.attempts()}
    pairs = [p for p in store.pairs() if config.include_near_copies or not p.near_copy]
    if only is not None:
        pairs = [p for p in pairs if p.task_id in only]
    if config.repair_provenance:
        pairs = [p for p in pairs if p.kind != "repair" or p.provenance == config.repair_provenance]
    if by_id and all(problem.domain == MATH for problem in by_id.values()):
        if config.keep_ratio <= 0:
            raise UserError("math training needs keep records (a correct answer stays correct): set train.keep_ratio above 0")
        config = replace(config, prompt_mode="code")  # math repair turns show the attempt in every mode
    if not shows_code(config.prompt_mode):
        pairs = [p for p in pairs if p.kind != "keep"]
    failing = failing_drafts(attempts.values()) if config.preference else {}
    if config.preference:
        pairs = [p for p in pairs if rejected_answer(p, attempts, failing) is not None]
    missing = sorted({p.task_id for p in pairs} - set(by_id))
    if missing:
        raise UserError(
            f"{store.path}: pairs of {len(missing)} problems not in the given problem set "
            f"(e.g. {missing[0]}); pass the problems the run was mined on"
        )
    # Validation problems are drawn from those with the pairs being trained on: with one
    # mined repair, holding its problem out would leave nothing to train.
    trained = trained_kind(config)
    _, valid_tasks = split_tasks(sorted({p.task_id for p in pairs if p.kind == trained}), config)
    train_tasks = sorted({p.task_id for p in pairs} - set(valid_tasks))
    sides = {
        side: mix(capped([p for p in pairs if p.task_id in set(tasks)], attempts, config), config)
        for side, tasks in (("train", train_tasks), ("valid", valid_tasks))
    }
    available = kind_counts(pairs)
    return Dataset(
        train=[record(p, by_id[p.task_id], attempts, config, failing) for p in sides["train"]],
        valid=[record(p, by_id[p.task_id], attempts, config, failing) for p in sides["valid"]],
        train_tasks=train_tasks,
        valid_tasks=valid_tasks,
        counts={side: kind_counts(chosen) for side, chosen in sides.items()},
        available=available,
        config=asdict(config),
    )


def trained_kind(config: MixConfig) -> str:
    """The pair kind the adapter learns from: repairs, or garbage for the control."""
    return "garbage" if config.control == "garbage" else "repair"


def too_few_pairs(dataset: Dataset, config: MixConfig) -> str | None:
    """Why this dataset is too small to train on, or None when it is big enough."""
    kind = trained_kind(config)
    have = sum(dataset.counts.get("train", {}).get(kind, {}).values())
    if have >= config.min_pairs:
        return None
    mined = sum(dataset.available.get(kind, {}).values())
    held_out = sum(dataset.counts.get("valid", {}).get(kind, {}).values())
    why = ""
    if kind == "repair" and mined > have:  # where the others went
        why = (f" (of {mined} mined: at most {config.pairs_per_problem} per problem, train.pairs_per_problem, "
               f"and {held_out} on the validation problems)")
    return f"{kind} pairs to train on: {have}{why}, fewer than the minimum of {config.min_pairs} (--min-pairs)"


def split_tasks(task_ids: list[str], config: MixConfig) -> tuple[list[str], list[str]]:
    """Hold out the `valid_fraction` of problems whose seeded hash of the id ranks lowest:
    an exact count (it matters with ten problems), independent of their order."""
    if len(task_ids) < 2 or config.valid_fraction == 0:
        return list(task_ids), []
    ranked = sorted(task_ids, key=lambda t: hashlib.sha256(f"{config.seed}\0{t}".encode()).digest())
    count = max(1, round(config.valid_fraction * len(task_ids)))
    valid = set(ranked[:count])
    return [t for t in task_ids if t not in valid], [t for t in task_ids if t in valid]


def capped(pairs: list[Pair], attempts: dict[int, Attempt], config: MixConfig) -> list[Pair]:
    """At most `pairs_per_problem` pairs of each kind per problem, chosen by the seed
    among pairs that make distinct records (same broken code, same answer: one record)."""
    rng = random.Random(config.seed)
    chosen, seen, taken = [], set(), Counter()
    for pair in _shuffled(pairs, rng):
        code = attempts[pair.broken_id].code if pair.broken_id else None
        record_key = (pair.task_id, pair.kind, code, attempts[pair.fixed_id].code)
        if record_key in seen or taken[pair.task_id, pair.kind] >= config.pairs_per_problem:
            continue
        seen.add(record_key)
        taken[pair.task_id, pair.kind] += 1
        chosen.append(pair)
    return chosen


def mix(pairs: list[Pair], config: MixConfig) -> list[Pair]:
    """All repair pairs (or as many garbage pairs, for the control), plus keep and solve
    pairs capped at their ratio of the repair count; shuffled with the seed. Without
    code in the repair prompt, the keep share goes to solve records."""
    rng = random.Random(config.seed)
    of = {kind: _shuffled([p for p in pairs if p.kind == kind], rng) for kind in PAIR_KINDS}
    repairs = len(of["repair"])
    keep_ratio, solve_ratio = config.keep_ratio, config.solve_ratio
    if not shows_code(config.prompt_mode):
        keep_ratio, solve_ratio = 0.0, keep_ratio + solve_ratio
    chosen = of["garbage"][:repairs] if config.control == "garbage" else of["repair"]
    chosen += of["keep"][: math.ceil(keep_ratio * repairs)]
    chosen += of["solve"][: math.ceil(solve_ratio * repairs)]
    return _shuffled(chosen, rng)


def _shuffled(pairs: list[Pair], rng: random.Random) -> list[Pair]:
    ordered = sorted(pairs, key=lambda p: (p.task_id, p.kind, p.fixed_id, p.broken_id or 0))
    rng.shuffle(ordered)
    return ordered


def record(
    pair: Pair, problem: Problem, attempts: dict[int, Attempt], config: MixConfig, failing: dict[str, list[Attempt]]
) -> dict:
    """One chat record: the user turn the loop showed (in the config's repair prompt mode),
    the code as the answer (`_answer`); with `config.preference`, the failing answer as `rejected`."""
    mode, fixed = config.prompt_mode, attempts[pair.fixed_id].code
    if pair.kind == "solve":
        messages = draft_messages(problem)
    elif pair.kind == "keep":
        messages = repair_messages(problem, fixed, KEEP_FEEDBACK, mode)
    else:  # repair, garbage: the broken code and the feedback it got
        messages = repair_messages(problem, attempts[pair.broken_id].code, pair.feedback, mode)
    chat = {
        "messages": [*messages, answer_message(_answer(fixed, problem, config.answer_docstrings), problem)],
        "task_id": pair.task_id,
        "language": problem.subject,
        "kind": pair.kind,
        "provenance": pair.provenance,
    }
    if config.preference:
        rejected = _answer(rejected_answer(pair, attempts, failing).code, problem, config.answer_docstrings)
        chat["rejected"] = answer_message(rejected, problem)["content"]
    return chat


def failing_drafts(attempts: Iterable[Attempt]) -> dict[str, list[Attempt]]:
    """Each problem's failing drafts, in sample order."""
    by_task: dict[str, list[Attempt]] = {}
    for attempt in sorted(attempts, key=lambda a: (a.task_id, a.sample_index)):
        if attempt.kind == "draft" and not attempt.passed:
            by_task.setdefault(attempt.task_id, []).append(attempt)
    return by_task


def rejected_answer(pair: Pair, attempts: dict[int, Attempt], failing: dict[str, list[Attempt]]) -> Attempt | None:
    """The failing answer a preference record sets against the pair's answer: for a
    repair (or garbage) pair, the broken attempt its prompt is about (writing it again is
    the failure to unlearn); for a solve pair, the problem's failing draft most different
    from the answer. None for keep pairs, and for solve pairs of problems with no failing
    draft."""
    if pair.kind in ("repair", "garbage"):
        return attempts[pair.broken_id]
    if pair.kind == "solve":
        return most_different(attempts[pair.fixed_id], failing.get(pair.task_id, []))
    return None


def _answer(code: str, problem: Problem, docstrings: bool) -> str:
    """The code as an answer: without the docstrings the prompt holds (unless kept), and
    in Python with its wildcard imports made explicit."""
    if problem.domain == MATH:
        return code
    shaped = code if docstrings else without_docs(problem, code)
    return shaped if problem.language == GO else explicit_imports(shaped)


def answer_message(code: str, problem: Problem | None = None) -> dict:
    """The assistant turn: the code in the ```python (or ```go) fence the loop's extraction reads;
    a math attempt as written (its reasoning and answer line)."""
    if problem is not None and problem.domain == MATH:
        return {"role": "assistant", "content": code.strip()}
    fence = words(problem).fence if problem is not None else "python"
    return {"role": "assistant", "content": f"```{fence}\n{code.rstrip()}\n```"}


def write_dataset(dataset: Dataset, folder: str | Path) -> DatasetInfo:
    """Write train.jsonl, valid.jsonl and dataset.json (split, counts, hash) to `folder`.

    The hash covers both JSONL files byte for byte: the manifest's proof of which data an
    adapter was trained on.
    """
    if not dataset.train:
        raise UserError(
            "no training records: the run mined no usable repair pairs "
            f"(usable pairs per kind: {dataset.available}); mine more problems or samples"
        )
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for name, records in ((TRAIN_FILE, dataset.train), (VALID_FILE, dataset.valid)):
        (folder / name).write_text(_jsonl(records), encoding="utf-8")
    info = {
        "sha256": data_hash(folder),
        "counts": dataset.counts,
        "languages": dict(Counter(r["language"] for r in dataset.train + dataset.valid if "language" in r)),
        "available": dataset.available,
        "split": {"train": dataset.train_tasks, "valid": dataset.valid_tasks},
        "mix": dataset.config,
    }
    (folder / INFO_FILE).write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    return DatasetInfo(folder, info["sha256"], info)


def prepare_dataset(
    store: Store, problems: Iterable[Problem], folder: str | Path, config: MixConfig | None = None
) -> DatasetInfo:
    """build_dataset then write_dataset: the store's pairs as JSONL in the adapter folder."""
    return write_dataset(build_dataset(store, problems, config), folder)


def data_hash(folder: str | Path) -> str:
    """sha256 over train.jsonl then valid.jsonl (each preceded by its name)."""
    digest = hashlib.sha256()
    for name in (TRAIN_FILE, VALID_FILE):
        path = Path(folder) / name
        digest.update(name.encode() + b"\n")
        digest.update(path.read_bytes() if path.is_file() else b"")
    return digest.hexdigest()


def read_jsonl(path: str | Path) -> list[dict]:
    path = Path(path)
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _jsonl(records: list[dict]) -> str:
    return "".join(json.dumps(r, ensure_ascii=False, sort_keys=True) + "\n" for r in records)


def tokenize(records: list[dict], tokenizer, max_seq_length: int) -> tuple[list[tuple[list[int], int]], int]:
    """(token ids, offset of the assistant turn) per record, as mlx-lm's `iterate_batches`
    and `default_loss` take them, and how many records were dropped for length.

    Too-long records are dropped rather than truncated: truncation cuts the end, which is
    the answer, the only part the loss counts.
    """
    from mlx_lm.tuner.datasets import ChatDataset

    chat = ChatDataset(records, tokenizer, mask_prompt=True)
    examples = [chat.process(r) for r in records]
    kept = [e for e in examples if len(e[0]) <= max_seq_length]
    return kept, len(examples) - len(kept)
