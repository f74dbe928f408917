"""The train-critic job: every judged sample of a train-side problem in the given stores
becomes a labelled example (problem + code -> passed all cases, hidden ones included),
and a critic learns from them (training/critic.py).

Only train-side problems (problems/split.py) are read, whatever the stores hold: the
critic is measured on the eval side (`eval --select critic`), so a sample of an
eval-side problem must never train it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from pathlib import Path

from mlx_repair.console import Console
from mlx_repair.errors import UserError
from mlx_repair.evaluation.selection import within_clause
from mlx_repair.events import Log
from mlx_repair.mining.store import STORE_FILE, Store
from mlx_repair.pipeline.stages import problems_for
from mlx_repair.training.critic import CriticConfig, Example, train_critic


def train_critic_job(config, run_dirs: list[str], critic: CriticConfig, out=None, console=None) -> Path:
    """Train a critic of `config.run.model` on the train-side samples of `run_dirs`' stores
    into `out` (default: adapters/critic-<model>-<settings hash>); returns the folder."""
    console = console or Console()
    problems, split = problems_for(config, "train")
    examples, left_out = critic_examples(run_dirs, {p.task_id for p in problems})
    if left_out:
        console.show(Log(f"{left_out} samples of problems not on the train side of {config.run.problems} left out"))
    if not examples:
        raise UserError(
            f"{', '.join(run_dirs)}: no judged sample of a train-side problem of {config.run.problems}; "
            "mine the train side first (mlx-repair mine, or eval --split train --samples N)"
        )
    out = Path(out or default_critic_out(config, run_dirs, critic))
    extra = {"stores": [str(Path(d).resolve()) for d in run_dirs], "problems": config.run.problems, "split": split.to_dict()}
    events = train_critic(config.run.model, {p.task_id: p for p in problems}, examples, out, critic,
                          quantize=config.run.quantize, extra=extra)
    manifest = _follow(events, console)
    show_critic(manifest["critic"], console)
    return out


def critic_examples(run_dirs: list[str], train_ids: set[str]) -> tuple[list[Example], int]:
    """The judged attempts (drafts, repairs, resamples) of every run in the stores, one per
    (problem, code), of the problems in `train_ids`; and how many attempts of other
    problems were left out."""
    seen: dict[tuple[str, str], Example] = {}
    left_out = 0
    for run_dir in run_dirs:
        if not (Path(run_dir) / STORE_FILE).is_file():
            raise UserError(f"{run_dir}: no {STORE_FILE} here; give the run directory of a mine or eval run")
        with Store.open(run_dir) as store:
            for name in store.run_names():
                store.select_run(name)
                for attempt in store.attempts():
                    if attempt.task_id not in train_ids:
                        left_out += 1
                        continue
                    seen.setdefault((attempt.task_id, attempt.code), Example(attempt.task_id, attempt.code, attempt.passed))
    return list(seen.values()), left_out


def default_critic_out(config, run_dirs: list[str], critic: CriticConfig) -> Path:
    """adapters/critic-<model>-<hash of what decides the critic>: the same command finds
    the same folder, and resumes there."""
    settings = {
        "model": config.run.model, "quantize": config.run.quantize, "problems": config.run.problems,
        "eval_fraction": config.run.eval_fraction, "stores": sorted(str(Path(d).resolve()) for d in run_dirs),
        "critic": asdict(critic),
    }
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:8]
    return Path("adapters") / f"critic-{Path(config.run.model).name}-{digest}"


def _follow(events, console) -> dict:
    """Show the training events; the generator's return value (the manifest)."""
    while True:
        try:
            console.show(next(events))
        except StopIteration as done:
            return done.value


def show_critic(summary: dict, console) -> None:
    """What the critic learned from, and how well it ranks the held-out problems' samples."""
    console.line(f"critic ({summary['kind']}):")
    for side in ("train", "valid"):
        counts, tasks = summary["samples"][side], summary["split"][side]
        console.line(f"  {side}: {counts['passed']} passing and {counts['failed']} failing samples of {len(tasks)} problems")
    value = summary["valid_auroc"]
    if value is None:
        auroc = "not measured (the held-out samples have one label)"
    else:
        auroc = f"{value:.3f}" + within_clause(summary["valid_within_problem_auroc"], summary["valid_problems_with_both"])
    console.line(f"  validation AUROC (held-out problems): {auroc}")
