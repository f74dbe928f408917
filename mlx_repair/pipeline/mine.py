"""Mining: run draft -> execute -> repair on the train side and store the verified pairs.

Each problem gets `mine.samples` drafts at `mine.temperature` (its own settings, so
that evaluation stays greedy): failing and passing samples of one problem pair up as
repair pairs (`mining.pairing`), and with `repair.rounds` > 0 each failing draft also
gets the model's own repair. Only train-side problems are ever mined (the split is by
task id), so nothing learnt here can leak into an evaluation. Re-running with the same
settings resumes the run.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from mlx_repair.console import Console
from mlx_repair.events import Log
from mlx_repair.mining.loop import LoopConfig
from mlx_repair.mining.pairing import format_pair_counts, kind_counts
from mlx_repair.mining.store import STORE_FILE, Store
from mlx_repair.pipeline.stages import run_dir as default_dir, run_stage, stage_settings
from mlx_repair.problems import subjects_named


def mine(config, run_dir=None, console=None) -> tuple[Path, dict[str, int]]:
    """Mine pairs on the train side; returns the run directory and pair counts per kind."""
    console = console or Console()
    config = mining_config(config)
    loop_config = LoopConfig(samples=config.sampling.samples, rounds=config.repair.rounds, stage="mine")
    if run_dir is None:
        start_from_fewer_rounds(config, console)
    done = run_stage(config, "mine", "train", loop_config, console, explicit_dir=run_dir)
    with Store.open(done.directory) as store:
        store.select_run("mine")
        counts = kind_counts(store.pairs())
        near_copies = sum(p.near_copy for p in store.pairs("repair"))
    console.line(
        f"pairs in {done.directory}: {format_pair_counts(counts)} ({near_copies} repair pairs flagged as "
        f"near-copies) from {len(done.problems)} train problems "
        f"({subjects_named(problem.subject for problem in done.problems)})"
    )
    return done.directory, counts


def start_from_fewer_rounds(config, console) -> None:
    """Raised `--rounds` without a run directory (whose default name holds the rounds): a
    run of the same settings with fewer rounds is copied into the new run's directory, so
    its drafts and repairs are read back and only the new rounds written, and the run it
    came from stays as it was (`mine --rounds 1 --run-dir DIR` continues DIR itself)."""
    if not config.repair.rounds:
        return
    target = default_dir(config, "mine", stage_settings(config, "train")[2])
    if (target / STORE_FILE).is_file():
        return
    for rounds in reversed(range(config.repair.rounds)):
        fewer = mining_config(replace(config, repair=replace(config.repair, rounds=rounds)))
        source = default_dir(fewer, "mine", stage_settings(fewer, "train")[2])
        if (source / STORE_FILE).is_file():
            Store.copy(source, target)
            console.show(Log(f"{target}: starts from a copy of {source} (the same drafts, {rounds} repair rounds)"))
            return


# Mining without repair turns shows no repair prompt: its runs all record this mode, so
# that the run (and its directory) is one whichever mode the records will be written in.
UNUSED_REPAIR_PROMPT = "code"


def mining_config(config):
    """`config` with the drafts' sampling set by `[mine]`, and without repair turns, the
    unused repair prompt set to UNUSED_REPAIR_PROMPT."""
    sampling = replace(config.sampling, samples=config.mine.samples, temperature=config.mine.temperature)
    repair = config.repair if config.repair.rounds else replace(config.repair, prompt=UNUSED_REPAIR_PROMPT)
    return replace(config, sampling=sampling, repair=repair)
