"""Settings as dataclasses, read from an optional `mlx-repair.toml`, overridden by CLI flags.

The file has one table per section below; every key is optional:

    [run]
    model = "qwen2.5-coder-0.5b-instruct"
    [sampling]
    temperature = 0.8

A CLI flag overrides a file value when its argparse `dest` is "section.key" and the user
gave it (flags default to None). Unknown keys and wrong types are one-line errors that
name the key and the file, because a typo silently ignored is a wrong experiment.
"""

from __future__ import annotations

import sys
import types
import typing
from dataclasses import dataclass, field, fields
from pathlib import Path

from mlx_repair.errors import UserError
from mlx_repair.mining.store import CONTROL_KINDS, REPAIR_PROVENANCES
from mlx_repair.training.config import OBJECTIVES, WEIGHTS

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised only on Python 3.10
    import tomli as tomllib

# What a repair prompt may show (generation/prompts.py renders each).
REPAIR_MODES = ("code", "facts", "explain")
CONFIG_FILE = "mlx-repair.toml"
DEFAULT_MODEL = "qwen2.5-coder-0.5b-instruct"
QUANTIZE_BITS = (4, 8)
QUANTIZE_GROUP_SIZE = 64  # mlx-lm's default for affine quantization
# Isolation levels, strongest first (sandbox/levels.py runs each; named here so that
# reading settings and building the CLI never import the sandbox). "auto" is the
# platform's real sandbox (bwrap, sandbox-exec) or a refusal.
ISOLATION_LEVELS = ("bwrap", "unshare", "sandbox-exec", "rlimits-only")
ISOLATION_CHOICES = ("auto", *ISOLATION_LEVELS)
# Ways to choose one of a problem's samples (evaluation/selection.py has one function per
# name; named here so that reading settings never imports evaluation). "first" is the
# cold baseline at the same number of samples, always reported beside the others;
# "critic" needs a trained critic ([select] critic).
SELECT_STRATEGIES = ("first", "visible", "agreement", "critic")
# What a critic is (training/critic.py), the default first: a head on the frozen model's
# hidden state, or a LoRA adapter that answers yes or no.
CRITIC_KINDS = ("head", "lora")


@dataclass
class RunSection:
    model: str = DEFAULT_MODEL
    problems: str = "humaneval"
    # Fraction of task ids held out for evaluation; decided per id by a hash (problems/split.py).
    eval_fraction: float = 0.5
    limit: int | None = None
    out_dir: str = "runs"
    # Bits (4 or 8) to quantize the weights to after loading: less memory and faster
    # generation on Metal; on the CPU, MLX's quantized matmuls are slower than float32.
    quantize: int | None = None


@dataclass
class SamplingSection:
    temperature: float = 0.0
    top_p: float = 1.0
    max_tokens: int = 512
    samples: int = 1
    seed: int = 0
    batch_size: int = 32


@dataclass
class SandboxSection:
    timeout_s: float = 10.0  # wall clock per candidate
    cpu_s: float | None = None  # CPU seconds per candidate (None: the same as timeout_s)
    memory_mb: int = 1024
    workers: int | None = None  # candidates at once (None: one per core)
    # "auto": the platform's real sandbox, or refuse to run candidates; a weaker level
    # (e.g. "unshare") only when named here or with --isolation.
    isolation: str = "auto"


@dataclass
class RepairSection:
    # The model's own repair turns per failing draft when mining (evaluation always takes
    # one). 0 by default: pairs of a failing and a passing draft cost no extra model call
    # (benchmarks/results/learning_signal_qwen0.5b.md).
    rounds: int = 0
    # What a repair prompt shows: "code" (the failing attempt and its test results),
    # "facts" (the test results only) or "explain" (facts, and the model says what they
    # show before it writes code); generation/prompts.py. "facts": on Qwen 0.5B, 17 of 40
    # repairs passed against 1 of 40 showing the code (same drafts and seed).
    prompt: str = "facts"


@dataclass
class MineSection:
    """Drafts per train-side problem when mining: several samples at a temperature, so
    that failing and passing samples of one problem become repair pairs."""

    samples: int = 4
    temperature: float = 0.8


@dataclass
class InventSection:
    """`mlx-repair invent`: problems the model writes for itself, kept only when they pass
    every filter (problems/invented.py, pipeline/invent.py); `train` adds `count` of them
    to the mining side."""

    count: int = 0  # problems to keep (invent --count; train --invent: 0 invents none)
    domain: str = "code"  # "code" (HumanEval format) or "math" (train: the set's own)
    solutions: int = 4  # k: the model's solutions judged per invented problem
    min_passing: int = 1  # kept only when at least this many of the k pass ...
    min_failing: int = 1  # ... and at least this many fail: neither impossible nor trivial
    temperature: float = 0.8  # for the problems and their solutions
    batch: int = 4  # requests written together; the level moves after each of their problems
    start_level: int = 2  # difficulty of the first request, 1 to 5
    fall_after: int = 4  # ... and it falls after this many requests in a row rejected before solving (0: never)
    ngram: int = 6  # near-copies: token n-grams of this length ...
    max_overlap: float = 0.5  # ... shared above this share with a known problem
    requests_per_problem: int = 5  # give up after count x this many requests


@dataclass
class SelectSection:
    """`eval` chooses one of each problem's `sampling.samples` drafts by these strategies:
    "all", or names separated by commas ("visible,agreement"); "" chooses none."""

    strategies: str = ""
    critic: str = ""  # the critic folder `mlx-repair train-critic` wrote, for "critic"


def selected_strategies(text: str, critic: bool = False) -> tuple[str, ...] | None:
    """The strategies `text` names, in SELECT_STRATEGIES order, "first" (the baseline)
    included whenever any is; None when it names an unknown one. "all" is every strategy
    that can run: "critic" only when there is a critic."""
    names = {name.strip() for name in text.split(",") if name.strip()}
    if names == {"all"}:
        return tuple(name for name in SELECT_STRATEGIES if critic or name != "critic")
    if not names <= set(SELECT_STRATEGIES):
        return None
    if names:
        names.add("first")
    return tuple(name for name in SELECT_STRATEGIES if name in names)


@dataclass
class TrainSection:
    """`mlx-repair train`: stage sizes, LoRA settings and the data mix. None means what the
    preset gives (`training.config.PRESETS`, and the stage sizes in `pipeline.train`)."""

    preset: str = "auto"  # "auto", "cpu" or "default"
    eval_limit: int | None = None  # evaluate on the first N eval-side problems
    mine_limit: int | None = None  # mine the first N train-side problems
    mine_dir: str | None = None  # mine into (and resume, or add repair rounds to) this run directory
    iters: int | None = None
    rank: int | None = None
    layers: int | None = None  # the last N transformer blocks get adapters (-1: all)
    learning_rate: float | None = None
    scale: float | None = None  # mlx-lm's LoRA scale (not PEFT's alpha)
    batch_size: int | None = None
    patience: int | None = None  # validations without a new best before training stops
    weights: str = "best"  # the adapter: the best validation loss's weights, or the last step's ("last")
    dora: bool = False
    min_pairs: int = 10  # fewer mined repair pairs than this and no adapter is trained
    keep_ratio: float = 0.5  # keep records per repair record
    solve_ratio: float = 0.25  # solve records per repair record
    pairs_per_problem: int = 2  # at most this many records of each kind per mined problem
    answer_docstrings: bool = False  # true: answers keep the docstrings the prompt holds
    repair_provenance: str | None = None  # "self-repair" or "resample": train on those repair pairs only
    control: str | None = None  # "garbage": also train and evaluate the same-shape control
    # "sft" (the passing answers' likelihood) or "preference" (DPO: a passing over a
    # failing answer to the same prompt, against the base; training/preference.py)
    objective: str = "sft"
    beta: float | None = None  # the preference objective's beta
    per_token_margin: bool | None = None  # compare answers per token (the default) or whole (DPO's original)
    nll_weight: float | None = None  # weight of the passing answer's NLL in the preference loss


@dataclass
class Config:
    run: RunSection = field(default_factory=RunSection)
    sampling: SamplingSection = field(default_factory=SamplingSection)
    sandbox: SandboxSection = field(default_factory=SandboxSection)
    repair: RepairSection = field(default_factory=RepairSection)
    mine: MineSection = field(default_factory=MineSection)
    invent: InventSection = field(default_factory=InventSection)
    select: SelectSection = field(default_factory=SelectSection)
    train: TrainSection = field(default_factory=TrainSection)


def load_config(path: str | Path | None = None) -> Config:
    """Read `path`, or ./mlx-repair.toml when present, or return the defaults."""
    if path is None:
        if not Path(CONFIG_FILE).is_file():
            return Config()
        path = CONFIG_FILE
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"{path}: config file not found") from None
    except tomllib.TOMLDecodeError as error:
        raise UserError(f"{path}: not valid TOML ({error})") from None
    return check(_build(Config, data, path, prefix=""), f"{path}: ")


# (key, rule, what the rule says): every setting is checked before any work starts.
RULES = (
    ("run.eval_fraction", lambda v: 0 < v < 1, "between 0 and 1 (exclusive)"),
    ("run.limit", lambda v: v is None or v >= 1, "at least 1"),
    ("run.quantize", lambda v: v in (None, *QUANTIZE_BITS), " or ".join(map(str, QUANTIZE_BITS)) + " (bits)"),
    ("sampling.temperature", lambda v: v >= 0, "0 (greedy) or more"),
    ("sampling.top_p", lambda v: 0 < v <= 1, "in (0, 1]"),
    ("sampling.max_tokens", lambda v: v >= 1, "at least 1"),
    ("sampling.samples", lambda v: v >= 1, "at least 1"),
    ("sampling.batch_size", lambda v: v >= 1, "at least 1"),
    ("sandbox.timeout_s", lambda v: v > 0, "more than 0"),
    ("sandbox.cpu_s", lambda v: v is None or v > 0, "more than 0"),
    ("sandbox.memory_mb", lambda v: v >= 16, "at least 16"),
    ("sandbox.workers", lambda v: v is None or v >= 1, "at least 1"),
    ("sandbox.isolation", lambda v: v in ISOLATION_CHOICES, ", ".join(ISOLATION_CHOICES)),
    ("repair.rounds", lambda v: 0 <= v <= 3, "0 to 3"),
    ("repair.prompt", lambda v: v in REPAIR_MODES, ", ".join(REPAIR_MODES)),
    ("mine.samples", lambda v: v >= 1, "at least 1"),
    ("mine.temperature", lambda v: v >= 0, "0 (greedy) or more"),
    ("invent.count", lambda v: v >= 0, "0 or more"),
    ("invent.domain", lambda v: v in ("code", "math"), "code or math"),
    ("invent.solutions", lambda v: v >= 2, "at least 2 (one must pass and one fail)"),
    ("invent.min_passing", lambda v: v >= 1, "at least 1"),
    ("invent.min_failing", lambda v: v >= 1, "at least 1"),
    ("invent.temperature", lambda v: v > 0, "more than 0 (k equal greedy solutions judge nothing)"),
    ("invent.batch", lambda v: v >= 1, "at least 1"),
    ("invent.start_level", lambda v: 1 <= v <= 5, "1 to 5"),
    ("invent.fall_after", lambda v: v >= 0, "0 (never) or more"),
    ("invent.ngram", lambda v: v >= 1, "at least 1"),
    ("invent.max_overlap", lambda v: 0 < v <= 1, "in (0, 1]"),
    ("invent.requests_per_problem", lambda v: v >= 1, "at least 1"),
    ("select.strategies", lambda v: selected_strategies(v) is not None, '"all" or some of ' + ", ".join(SELECT_STRATEGIES)),
    ("train.preset", lambda v: v in ("auto", "cpu", "default"), "auto, cpu or default"),
    ("train.eval_limit", lambda v: v is None or v >= 1, "at least 1"),
    ("train.mine_limit", lambda v: v is None or v >= 1, "at least 1"),
    ("train.iters", lambda v: v is None or v >= 1, "at least 1"),
    ("train.rank", lambda v: v is None or v >= 1, "at least 1"),
    ("train.layers", lambda v: v is None or v == -1 or v >= 1, "-1 (all) or at least 1"),
    ("train.learning_rate", lambda v: v is None or v > 0, "more than 0"),
    ("train.scale", lambda v: v is None or v > 0, "more than 0"),
    ("train.patience", lambda v: v is None or v >= 1, "at least 1"),
    ("train.batch_size", lambda v: v is None or v >= 1, "at least 1"),
    ("train.weights", lambda v: v in WEIGHTS, " or ".join(WEIGHTS)),
    ("train.min_pairs", lambda v: v >= 1, "at least 1"),
    ("train.keep_ratio", lambda v: v >= 0, "0 or more"),
    ("train.solve_ratio", lambda v: v >= 0, "0 or more"),
    ("train.pairs_per_problem", lambda v: v >= 1, "at least 1"),
    ("train.repair_provenance", lambda v: v in (None, *REPAIR_PROVENANCES), "unset or one of " + ", ".join(REPAIR_PROVENANCES)),
    ("train.control", lambda v: v in (None, *CONTROL_KINDS), "unset or one of " + ", ".join(CONTROL_KINDS)),
    ("train.objective", lambda v: v in OBJECTIVES, " or ".join(OBJECTIVES)),
    ("train.beta", lambda v: v is None or v > 0, "more than 0"),
    ("train.nll_weight", lambda v: v is None or v >= 0, "0 or more"),
)


def check(config: Config, where: str = "") -> Config:
    """`config` if every setting is in range, else a one-line error naming the key."""
    for key, rule, expected in RULES:
        section, name = key.split(".")
        value = getattr(getattr(config, section), name)
        if not rule(value):
            raise UserError(f"{where}{key!r} must be {expected}, got {value!r}")
    return config


def _build(cls, data: dict, path: Path, prefix: str):
    known = {f.name: f for f in fields(cls)}
    values = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if key not in known:
            raise UserError(f"{path}: unknown key {name!r} (known: {', '.join(sorted(known))})")
        kind = typing.get_type_hints(cls)[key]
        if _is_dataclass_type(kind):
            if not isinstance(value, dict):
                raise UserError(f"{path}: {name!r} must be a table ([{name}])")
            values[key] = _build(kind, value, path, prefix=f"{name}.")
        else:
            values[key] = _check_type(value, kind, name, path)
    return cls(**values)


def _is_dataclass_type(kind) -> bool:
    return isinstance(kind, type) and hasattr(kind, "__dataclass_fields__")


def _check_type(value, kind, name: str, path: Path):
    allowed = _allowed_types(kind)
    # bool is an int in Python, but `samples = true` in a file is a typo, not 1.
    if (isinstance(value, bool) and bool not in allowed) or not isinstance(value, tuple(allowed)):
        expected = " or ".join(t.__name__ for t in allowed if t is not type(None))
        raise UserError(f"{path}: {name!r} must be {expected}, got {value!r}")
    return float(value) if float in allowed and isinstance(value, int) else value


def _allowed_types(kind) -> list[type]:
    """Plain types a TOML value may have for a field annotated `kind` (ints fit floats)."""
    options = list(typing.get_args(kind)) if isinstance(kind, types.UnionType) else [kind]
    if float in options:
        options.append(int)
    return options


def apply_overrides(config: Config, values: dict) -> Config:
    """Set every "section.key" entry of `values` (argparse's vars) that is not None."""
    for dest, value in values.items():
        if value is None or "." not in dest:
            continue
        section_name, key = dest.split(".", 1)
        section = getattr(config, section_name)
        if not hasattr(section, key):
            raise ValueError(f"flag dest {dest!r} names no config key")
        setattr(section, key, value)
    return config


def config_from_args(args) -> Config:
    """The file named by --config (or found in the working directory), then the flags;
    checked again once the flags are in."""
    return check(apply_overrides(load_config(getattr(args, "config", None)), vars(args)))
