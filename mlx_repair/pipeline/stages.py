"""What eval, mine and train share: the problems of one side of the split, the run
directory named after the settings (so re-running a command resumes it), the sandbox
pool, and the model writer."""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from functools import partial
from pathlib import Path

from mlx_repair.config import Config
from mlx_repair.errors import UserError
from mlx_repair.problems import INVENTED, Problem, load_problems
from mlx_repair.problems.split import Split, select, split_problems


def problems_for(config: Config, side: str) -> tuple[list[Problem], Split]:
    """The problems of one side ('train', 'eval' or 'all'), limited to the first
    `run.limit` in file order; the split is always computed over the whole set. Invented
    problems are mined only: all of them join the train side (the limit counts the given
    problems), and any other side refuses them."""
    everything = load_problems(config.run.problems)
    if side != "train" and any(p.origin == INVENTED for p in everything):
        raise UserError(
            f"{config.run.problems}: invented problems are for mining only; evaluate on a given set "
            "(humaneval's eval side, fresh, math)"
        )
    split = split_problems(everything, config.run.eval_fraction)
    chosen = select(everything, split, side)
    given = [p for p in chosen if p.origin != INVENTED]
    if config.run.limit is not None:
        given = given[: config.run.limit]
    chosen = given + [p for p in chosen if p.origin == INVENTED]
    if not chosen:
        raise UserError(f"{config.run.problems}: no problems on the {side!r} side of the split")
    return chosen, split


def run_dir(config: Config, stage: str, settings: dict, explicit: str | None = None) -> Path:
    """runs/<stage>-<model>-<hash of settings>: the same command finds the same directory
    (and resumes); any change of settings starts a new one."""
    if explicit:
        return Path(explicit)
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:8]
    model = re.sub(r"[^A-Za-z0-9.]+", "-", Path(config.run.model).name).strip("-").lower()
    return Path(config.run.out_dir) / f"{stage}-{model}-{digest}"


def settings_of(config: Config, problems=(), **extra) -> dict:
    """The settings that decide a loop stage's results (and so its directory and store),
    the prompts' wording included. `[train]` is left out: it shapes the adapter, not the
    drafts and repairs, and the train job reaches its stages through `run.limit`. So is
    `[mine]`: mining puts it into `[sampling]` (`pipeline.mine.mining_config`), and it
    must not move the evaluation's directory. And so are `[select]`, which chooses among
    stored drafts after the loop, `[invent]`, whose problems reach a stage through
    `run.problems` (and whose own job names its settings), and the sandbox's isolation
    level: it decides where candidates run, not what they return, and every verdict
    records it. The prompts' fingerprint covers the languages and domains of `problems`."""
    from mlx_repair.generation.prompts import fingerprint

    left_out = ("train", "mine", "select", "invent")
    sections = {name: value for name, value in asdict(config).items() if name not in left_out}
    sections["sandbox"].pop("isolation")
    return {**sections, **extra, "prompts": fingerprint(config.repair.prompt, problems)}


def stage_settings(config: Config, side: str, adapter=None, **extra) -> tuple[list[Problem], Split, dict]:
    """A loop stage's problems, split and settings (which name its default directory)."""
    problems, split = problems_for(config, side)
    return problems, split, settings_of(config, problems, side=side, adapter=adapter, **extra)


def adds_repair_rounds(stored: dict, settings: dict, problems=()) -> bool:
    """Whether a stage's `settings` continue a run stored with `stored` by adding repair
    rounds: all else equal, more rounds, and the same prompts. A run that showed no repair
    prompt (0 rounds) may take any mode, if its recorded prompts are still today's wording
    of `problems`. Its drafts and earlier rounds stay valid, so only the new rounds are
    written: `mine --rounds 1 --run-dir DIR` adds self-repairs to a run mined without."""
    from mlx_repair.generation.prompts import fingerprint

    def rest(s):
        return {k: v for k, v in s.items() if k not in ("repair", "prompts")}

    old, new = stored.get("repair"), settings.get("repair")
    if not (isinstance(old, dict) and isinstance(new, dict)):  # eval records whether it repairs, not rounds
        return False
    if rest(stored) != rest(settings) or new.get("rounds", 0) <= old.get("rounds", 0):
        return False
    if old.get("rounds", 0) == 0:
        return "prompt" in old and stored.get("prompts") == fingerprint(old["prompt"], problems)
    return {**old, "rounds": new["rounds"]} == new and stored.get("prompts") == settings.get("prompts")


def sandbox_pool(config: Config):
    from mlx_repair.sandbox import Limits, Pool

    s = config.sandbox
    limits = Limits(timeout_s=s.timeout_s, cpu_s=s.cpu_s or s.timeout_s, memory_mb=s.memory_mb)
    return Pool(workers=config.sandbox.workers, limits=limits, isolation_level=s.isolation)


def load_writer(config: Config, adapter: str | None = None, progress=None, listener=None):
    """Load the model (importing a GGUF on first use, reported to `progress(done, total,
    name)`) and wrap it for the loop; `listener` (a `WritingListener`) sees outputs grow."""
    from mlx_repair.generation.writer import MLXWriter, WriterSampling
    from mlx_repair.model.resolve import load_model
    from mlx_repair.generation.sampling import SamplingConfig

    bits = config.run.quantize
    model, tokenizer = load_model(config.run.model, adapter_path=adapter, quantize=bits, progress=progress)
    s = config.sampling
    draft = SamplingConfig(
        temperature=s.temperature, top_p=s.top_p, max_tokens=s.max_tokens, seed=s.seed, batch_size=s.batch_size
    )
    name = config.run.model if adapter is None else f"{config.run.model}+{adapter}"
    name += f" ({bits}-bit)" if bits else ""
    sampling = WriterSampling.from_draft(draft)
    return MLXWriter(model, tokenizer, name, sampling, listener=listener, repair_prompt=config.repair.prompt)


LOCK_FILE = "writer.lock"


@contextmanager
def run_lock(directory: Path):
    """Be the only process writing this run: a second `mine` or `eval` on the same run
    directory refuses at once, naming the process that holds it. The kernel drops the
    lock when its holder dies, even by SIGKILL, so a crash never leaves a stale lock."""
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / LOCK_FILE, "a+") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.seek(0)
            holder = lock.read().strip() or "unknown"
            raise UserError(
                f"{directory}: another mlx-repair process (pid {holder}) is writing this run; "
                "wait for it to finish, or give this one another --run-dir"
            ) from None
        lock.seek(0)
        lock.truncate()
        lock.write(f"{os.getpid()}\n")
        lock.flush()
        yield


@dataclass
class StageRun:
    """What a finished (or resumed-and-finished) loop stage leaves behind."""

    directory: Path
    problems: list[Problem]
    split: Split
    writer: object
    seconds: float
    peak_memory_gb: float  # the weights included, so a resumed stage that generates nothing still says


def run_stage(config: Config, stage: str, side: str, loop_config, console, adapter=None, explicit_dir=None, **extra) -> StageRun:
    """Load the model, open (or resume) the stage's store and run the loop to the end,
    showing its events on `console`."""
    import mlx.core as mx

    from mlx_repair.events import Log, StageFinished, StageStarted
    from mlx_repair.mining.loop import run_loop
    from mlx_repair.model.resolve import quantize_warning
    from mlx_repair.mining.store import Store
    from mlx_repair.sandbox.levels import announcement, isolation

    problems, split, settings = stage_settings(config, side, adapter, **extra)
    # A chunk's drafts go to the model together: enough problems to fill the batch.
    chunk = max(loop_config.chunk_size, -(-config.sampling.batch_size // loop_config.samples))
    loop_config = replace(loop_config, chunk_size=chunk)
    directory = run_dir(config, stage, settings, explicit_dir)
    if warning := quantize_warning(config.run.quantize):
        console.show(Log(warning))
    label = stage if adapter is None else f"{stage} + adapter"  # train runs "eval" twice
    started = time.perf_counter()
    # Before the run directory and the model: no real sandbox (nor a chosen weaker one) refuses here.
    if notice := announcement(isolation(config.sandbox.isolation)):
        console.show(Log(notice))
    with run_lock(directory):  # before the model loads: a second writer refuses at once
        console.show(Log(f"loading {config.run.model}" + (f" with adapter {adapter}" if adapter else "")))
        writer = load_writer(config, adapter, progress=console.import_progress, listener=console.writing)
        with Store.open(directory) as store, sandbox_pool(config) as pool:
            continues = partial(adds_repair_rounds, problems=problems)
            store.start_run(stage, writer.name, config.run.problems, settings, split.to_dict(), continues)
            console.show(StageStarted(label, len(problems)))
            console.follow(run_loop(problems, writer, pool, store, loop_config))
    seconds = time.perf_counter() - started
    peak = max(writer.stats.peak_memory_gb, mx.get_peak_memory() / 1e9)
    console.show(StageFinished(label, seconds, peak))
    return StageRun(directory, problems, split, writer, seconds, peak)
