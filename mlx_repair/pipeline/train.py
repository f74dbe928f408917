"""The whole `train` job: evaluate the base on the eval side -> mine pairs on the train
side -> train a LoRA adapter -> evaluate base + adapter on the eval side -> write the
report. With `invent.count` (`--invent N`), N problems the model invents join the
mining side before mining (never the evaluation). With `train.control = "garbage"`, a second adapter trained the same way on
same-shape garbage pairs is evaluated too, and the report puts the three side by side.

Every stage resumes: re-running the same command skips what is done. The `cpu` preset
(chosen automatically without Metal) evaluates and mines fewer problems and trains
fewer steps, so the run fits a 2-core CPU; its numbers rest on few problems, and the
report says how few.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from mlx_repair.console import Console
from mlx_repair.evaluation.goal import verdict
from mlx_repair.evaluation.report import StageTime, TrainReport, report_notes, write_no_adapter_report, write_report
from mlx_repair.events import TrainStep
from mlx_repair.mining.dataset import Dataset, MixConfig, build_dataset, too_few_pairs
from mlx_repair.mining.pairing import nested_counts
from mlx_repair.mining.store import Store
from mlx_repair.pipeline.evaluate import evaluate_model
from mlx_repair.pipeline.invent import invented_pair_notes, with_invented
from mlx_repair.pipeline.mine import mine
from mlx_repair.pipeline.stages import problems_for, settings_of
from mlx_repair.problems import load_problems
from mlx_repair.problems.split import split_problems
from mlx_repair.training.config import TrainConfig, preset, preset_name
from mlx_repair.training.lora import train_adapter

# Stage sizes per preset: eval problems and mined problems (None: all). On a 2-core CPU
# every token, read or written, costs about a GFLOP (a 600-token repair prompt costs as
# much as 600 generated tokens), so the cpu preset keeps the stages small there.
PIPELINE_PRESETS = {
    "cpu": {"eval_limit": 16, "mine_limit": 40},
    "default": {"eval_limit": None, "mine_limit": None},
}
# Settings that never change what a run computes, left out of the adapter folder's name.
NOT_RESULT_SETTINGS = (("sandbox", "workers"), ("run", "out_dir"), ("train", "mine_dir"))


def train_pipeline(config, command: str, out: str | Path | None = None, console=None) -> Path:
    """Run every stage (each resumes) and return the path of report.md."""
    console = console or Console()
    train_config = train_config_of(config)
    mix = mix_of(config)
    control_mix = replace(mix, control=config.train.control) if config.train.control else None
    chosen = preset_name(config.train.preset)
    sizes = PIPELINE_PRESETS[chosen]
    console.line(f"preset {chosen} ({_preset_reason(config.train.preset, chosen)})")
    eval_config = _with_limit(_greedy(config), config.train.eval_limit or sizes["eval_limit"])
    mine_config = _with_limit(config, config.train.mine_limit or sizes["mine_limit"])
    out = Path(out or default_out(config, train_config))
    stages: list[StageTime] = []

    def timed(stage: str, work):
        started = time.perf_counter()
        result = work()
        stages.append(StageTime(stage, time.perf_counter() - started, _peak_memory_gb()))
        return result

    base = timed("evaluate base", lambda: evaluate_model(eval_config, "eval", console=console))
    if config.invent.count:  # --invent N: N invented problems join the mining side
        mine_config = timed("invent problems", lambda: with_invented(mine_config, console))
    mine_dir, counts = timed("mine pairs", lambda: mine(mine_config, run_dir=config.train.mine_dir, console=console))
    mined_problems, split = problems_for(mine_config, "train")
    dataset = mined_dataset(mined_problems, mine_dir, mix)
    too_few = too_few_pairs(dataset, mix)
    if too_few:
        advice = more_pairs_advice(config, len(mined_problems), len(problems_for(config, "train")[0]))
        console.line(f"no adapter trained: {too_few}. {advice}")
        return write_no_adapter_report(out, base, counts, mine_dir, command, too_few, stages, advice)
    trained = timed("train adapter", lambda: train_stage(mine_config, split, dataset, out, train_config, console))
    adapter = timed("evaluate adapter", lambda: evaluate_model(eval_config, "eval", adapter=str(out), console=console))
    control = None
    if control_mix is not None:
        control_data = mined_dataset(mined_problems, mine_dir, control_mix)
        too_few = too_few_pairs(control_data, control_mix)
        if too_few:
            console.line(f"no control adapter trained: {too_few}")
        else:
            control_out = out.with_name(out.name + "-control-garbage")
            timed("train control", lambda: train_stage(mine_config, split, control_data, control_out, train_config, console))
            control = timed("evaluate control", lambda: evaluate_model(eval_config, "eval", adapter=str(control_out), console=console))
    for name, result in (("base", base), ("adapter", adapter), ("control", control)):
        if result is not None:
            (out / f"eval-{name}.json").write_text(json.dumps(result, indent=2) + "\n")
    report = TrainReport(
        base=base, adapter=adapter, control=control, pair_counts=counts, losses=trained.losses,
        validation_losses=trained.validation_losses, stages=stages, command=command,
        notes=report_notes(base["n"], counts) + invented_pair_notes(mine_dir),
    )
    for part in report.goal:
        console.line(part.line())
    console.line(verdict(report.goal))
    return write_report(report, out)


def more_pairs_advice(config, mined: int, train_side: int) -> str:
    """What would mine more repair pairs, from the settings this run used."""
    if mined < train_side:
        problems = f"mine more of the {train_side} train-side problems (`--mine-limit N`, `--preset default`; {mined} were mined)"
    else:
        problems = f"add problems (all {train_side} train-side problems were mined; `--invent N` adds problems the model writes)"
    ways = [
        problems,
        f"draw more drafts per problem (`--samples {2 * config.mine.samples}`; this run drew {config.mine.samples})",
        "repair failing drafts with the model's own repair turn (`--rounds 1`: this run's drafts are kept "
        "and only the repairs written)" if config.repair.rounds == 0 else None,
        f"keep more pairs per problem (`train.pairs_per_problem`, now {config.train.pairs_per_problem})",
        "use a stronger model",
    ]
    return "To mine more: " + "; ".join(filter(None, ways)) + ". Or lower `--min-pairs` to train anyway."


def train_config_of(config) -> TrainConfig:
    """The LoRA settings: the preset's, with what `[train]` (or a flag) sets."""
    t = config.train
    return preset(
        t.preset, iters=t.iters, rank=t.rank, num_layers=t.layers, learning_rate=t.learning_rate, scale=t.scale,
        batch_size=t.batch_size, patience=t.patience, weights=t.weights, fine_tune_type="dora" if t.dora else None,
        objective=t.objective, beta=t.beta, nll_weight=t.nll_weight, per_token_margin=t.per_token_margin,
    )


def mix_of(config) -> MixConfig:
    t = config.train
    return MixConfig(
        min_pairs=t.min_pairs, keep_ratio=t.keep_ratio, solve_ratio=t.solve_ratio,
        pairs_per_problem=t.pairs_per_problem, prompt_mode=config.repair.prompt, answer_docstrings=t.answer_docstrings,
        repair_provenance=t.repair_provenance, preference=t.objective == "preference",
    )


def default_out(config, train_config: TrainConfig) -> Path:
    """adapters/<model>-<hash>: a hash of the settings that change the result only, so
    the same command in another process finds the same folder (and resumes)."""
    settings = settings_of(config, train=asdict(config.train), lora=asdict(train_config))
    for section, key in NOT_RESULT_SETTINGS:
        settings[section].pop(key, None)
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:8]
    return Path("adapters") / f"{Path(config.run.model).name}-{digest}"


def _preset_reason(asked: str, chosen: str) -> str:
    if asked != "auto":
        return "asked for"
    return "auto: MLX runs on the CPU" if chosen == "cpu" else "auto: MLX runs on a GPU"


def _greedy(config):
    """Evaluation is always one greedy draft per problem, whatever mining samples."""
    return replace(config, sampling=replace(config.sampling, samples=1, temperature=0.0))


def _with_limit(config, limit):
    return replace(config, run=replace(config.run, limit=limit if limit is not None else config.run.limit))


def mined_dataset(problems, mine_dir: Path, mix, only: set[str] | None = None):
    """The mixed, split training records built from the mined store."""
    with Store.open(mine_dir) as store:
        store.select_run("mine")
        return build_dataset(store, problems, mix, only)


def with_added_run(config, dataset: Dataset, mine_dir, problems: str, control: str | None = None) -> tuple[Dataset, Dataset]:
    """`dataset` with the records of a second mining run (of `problems`: ones the model
    invented, or a set written for practice) joined to its training side, and the added
    records alone (for their counts). Only the set's train side is taken, by the same
    split as any set (invented problems are all on it), so its eval side stays held out
    even when the run mined all of it. The validation records stay the first run's, so
    validation losses compare with an adapter trained without them."""
    everything = load_problems(problems)
    train_side = set(split_problems(everything, config.run.eval_fraction).train)
    mix = replace(mix_of(config), control=control, valid_fraction=0)
    added = mined_dataset(everything, Path(mine_dir), mix, only=train_side)
    train = dataset.train + added.train
    counts = {**dataset.counts, "train": nested_counts((r["kind"], r["provenance"]) for r in train)}
    joined = replace(dataset, train=train, train_tasks=dataset.train_tasks + added.train_tasks, counts=counts)
    return joined, added


@dataclass
class Trained:
    """What the training stage leaves: its losses for the report, and the manifest."""

    losses: list[tuple[int, float]] = field(default_factory=list)
    validation_losses: list[tuple[int, float]] = field(default_factory=list)
    manifest: dict = field(default_factory=dict)


def train_stage(config, split, dataset, out: Path, train_config, console) -> Trained:
    """Train on `dataset` into `out` (resuming its checkpoint), showing progress."""
    trained = Trained()
    extra = {"split": split.to_dict(), "problems": config.run.problems}
    events = train_adapter(config.run.model, dataset, out, train_config, extra=extra, quantize=config.run.quantize)
    while True:
        try:
            event = next(events)
        except StopIteration as done:
            trained.manifest = done.value
            return trained
        console.show(event)
        if not isinstance(event, TrainStep):
            continue
        if event.iteration > 0 and not math.isnan(event.loss):  # step 0 only validates
            trained.losses.append((event.iteration, event.loss))
        if event.validation_loss is not None:
            trained.validation_losses.append((event.iteration, event.validation_loss))


def _peak_memory_gb() -> float:
    import mlx.core as mx

    peak = mx.get_peak_memory() / 1e9
    mx.reset_peak_memory()
    return peak
