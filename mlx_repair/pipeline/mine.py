"""Mining: run draft -> execute -> repair on the train side and store the verified pairs.

Only train-side problems are ever mined (the split is by task id), so nothing learnt
here can leak into an evaluation. Re-running with the same settings resumes the run.
"""

from __future__ import annotations

from pathlib import Path

from mlx_repair.console import Console
from mlx_repair.mining.loop import LoopConfig
from mlx_repair.mining.store import Store
from mlx_repair.pipeline.stages import run_stage


def mine(config, run_dir=None, console=None) -> tuple[Path, dict[str, int]]:
    """Mine pairs on the train side; returns the run directory and pair counts per kind."""
    console = console or Console()
    loop_config = LoopConfig(samples=config.sampling.samples, rounds=config.repair.rounds, stage="mine")
    done = run_stage(config, "mine", "train", loop_config, console, explicit_dir=run_dir)
    with Store.open(done.directory) as store:
        store.select_run("mine")
        counts = store.pair_counts()
        near_copies = sum(p.near_copy for p in store.pairs("repair"))
    console.line(
        f"pairs in {done.directory}: " + ", ".join(f"{kind} {count}" for kind, count in counts.items())
        + f" ({near_copies} repair pairs flagged as near-copies) from {len(done.problems)} train problems"
    )
    return done.directory, counts
