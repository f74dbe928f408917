"""Evaluation: run (or resume) the loop on one side of a problem set and summarise it.

By default every problem gets one greedy draft; each failing draft gets one repair turn
(feedback from the visible cases, verified on all cases) and one independent resample at
the same cost, so that `repair_pass@1` is read beside its budget-matched baseline
`resample_pass@2`. With a fresh set beside it, the same model is measured with the same
settings on problems it cannot have seen in training: a score that holds only on the
leaked benchmark is memory.

With `[select]` strategies (`--select`), each problem's N drafts are also chosen among
(evaluation/selection.py) after the loop: each strategy's pass@1 is reported beside cold
pass@1 and pass@N, with the problems it moved against the first sample.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import replace
from pathlib import Path

from mlx_repair.config import selected_strategies
from mlx_repair.console import Console
from mlx_repair.errors import UserError
from mlx_repair.evaluation.metrics import format_metric, format_value, gains_over_cold, problems, summarize
from mlx_repair.evaluation.selection import critic_line, select_samples
from mlx_repair.events import Log, Selected
from mlx_repair.mining.loop import LoopConfig
from mlx_repair.mining.store import Store
from mlx_repair.pipeline.stages import run_stage, sandbox_pool


def evaluate_model(config, side: str, adapter=None, repair: bool = True, run_dir=None, console=None) -> dict:
    """Run (or resume) the evaluation loop and return the result dict that --json writes."""
    console = console or Console()
    strategies = selection_strategies(config)
    loop_config = LoopConfig(
        samples=config.sampling.samples,
        rounds=1 if repair else 0,
        resample=repair,
        save_pairs=False,
        stage="eval",
    )
    done = run_stage(config, "eval", side, loop_config, console, adapter, run_dir, repair=repair)
    with Store.open(done.directory) as store:
        store.select_run("eval")
        metrics, rows = summarize(store, done.problems)
        cut = cut_at_limit(store.attempts(), config.sampling.max_tokens)
        selection = select(config, done.problems, store, strategies, console) if strategies else None
    if selection:
        metrics.update(selection.metrics())
    writer = done.writer
    result = {
        "model": writer.name,
        "adapter": adapter,
        "problems": config.run.problems,
        "languages": sorted({problem.subject for problem in done.problems}),
        "side": side,
        "n": len(rows),
        "metrics": metrics,
        "per_problem": [r.to_dict() for r in rows],
        "split": done.split.to_dict(),
        "sampling": writer.sampling_for("draft"),
        "seconds": round(done.seconds, 1),
        "generated_tokens": writer.stats.generated_tokens,
        "prompt_tokens": writer.prompt_tokens,
        "tokens_per_second": round(writer.stats.tokens_per_second, 2),
        "peak_memory_gb": round(done.peak_memory_gb, 2),
        "cut_at_limit": cut,
        "run_dir": str(done.directory),
    }
    if selection:
        result["selection"] = selection.to_dict()
    show_result(result, rows, console)
    return result


def cut_at_limit(attempts, max_tokens: int) -> dict[str, list[int]]:
    """Per kind of attempt, [outputs that ran to the token limit, all outputs]. A model
    that has learned to loop (an adapter repeating an import line) shows here first: its
    validation loss, on answers it is given, does not."""
    counts: dict[str, list[int]] = {}
    for attempt in attempts:
        tally = counts.setdefault(attempt.kind, [0, 0])
        tally[0] += attempt.num_tokens >= max_tokens
        tally[1] += 1
    return counts


def selection_strategies(config) -> tuple[str, ...]:
    """The strategies `[select]` names (none by default); with nothing to choose from, a
    one-line error before the model loads."""
    strategies = selected_strategies(config.select.strategies, critic=bool(config.select.critic))
    if "critic" in strategies and not config.select.critic:
        raise UserError("selection by critic needs a critic: give --critic DIR (a folder `mlx-repair train-critic` wrote)")
    if strategies and config.sampling.samples < 2:
        raise UserError(
            "selection (--select) chooses among several samples per problem: give --samples N, N of 2 or more"
        )
    if strategies and config.sampling.temperature == 0:
        raise UserError(
            "selection (--select) needs different samples, and greedy decoding draws equal ones: "
            "give --temperature (e.g. 0.8)"
        )
    return strategies


def select(config, problems, store, strategies, console):
    """Choose among each problem's drafts (running candidates on extra inputs in a sandbox
    pool of their own), and report each problem's picks as `Selected` events."""
    console.show(Log(f"selecting one of {config.sampling.samples} samples per problem: {', '.join(strategies)}"))
    critic = load_scorer(config.select.critic, console, len(problems)) if "critic" in strategies else None
    with sandbox_pool(config) as pool:
        selection = select_samples(problems, store, pool, strategies, critic)
    for chosen in selection.problems:
        console.show(Selected(chosen.task_id, chosen.picks))
    return selection


def load_scorer(path: str, console, problems: int):
    """The critic's `scores(problem, codes)`, its base model loaded (a minute or more on a
    CPU); reading the samples takes seconds each there, so it reports as it goes."""
    from mlx_repair.training.critic import load_critic

    console.show(Log(f"loading the critic {path}; it reads every sample once"))
    critic, started, scored = load_critic(path), time.perf_counter(), itertools.count(1)

    def scores(problem, codes: list[str]) -> list[float]:
        found, done = critic.scores(problem, codes), next(scored)
        if done % CRITIC_REPORT_EVERY == 0 or done == problems:
            console.show(Log(f"critic: read the samples of {done}/{problems} problems ({time.perf_counter() - started:.0f}s)"))
        return found

    return scores


CRITIC_REPORT_EVERY = 8  # problems


def evaluate_with_fresh(config, side: str, fresh: str | None, adapter=None, repair=True, run_dir=None, console=None) -> dict:
    """`evaluate_model`, then (when `fresh` names a set) the same on the fresh set, shown
    side by side; the fresh result is the main one's "fresh" entry."""
    console = console or Console()
    options = dict(adapter=adapter, repair=repair, console=console)
    result = evaluate_model(config, side, run_dir=run_dir, **options)
    if fresh:
        fresh_config = replace(config, run=replace(config.run, problems=fresh))
        # An explicit run directory holds the main run's store; the fresh run needs its own.
        fresh_dir = run_dir and f"{Path(run_dir)}-fresh"
        result["fresh"] = evaluate_model(fresh_config, side, run_dir=fresh_dir, **options)
        show_side_by_side(result, result["fresh"], console)
    return result


def show_result(result: dict, rows, console) -> None:
    n = result["n"]
    console.line(f"{result['model']} on {result['problems']} ({result['side']} side, n={n}), run in {result['run_dir']}")
    moved = {key: _moved_text(r) for key, r in _selection_results(result).items()}
    for key, value in result["metrics"].items():
        console.line("  " + format_metric(key, value, n) + moved.get(key, ""))
    if critic := result.get("selection", {}).get("critic"):
        console.line(f"  {critic_line(critic)}")
    for attr, label, metric in (("repair", "repair", "repair_pass@1"), ("resample", "resampling", "resample_pass@2")):
        if metric in result["metrics"]:
            gained = gains_over_cold(rows, attr)
            console.line(f"  gained over cold by {label}: {problems(len(gained))} {' '.join(gained)}".rstrip())
    if result["generated_tokens"]:
        console.line(
            f"  {result['generated_tokens']} tokens generated in {result['seconds']:.0f}s "
            f"({result['tokens_per_second']:.1f} tok/s while generating), peak {result['peak_memory_gb']:.1f} GB"
        )
    else:
        console.line(f"  resumed: every attempt was already stored, nothing generated; peak {result['peak_memory_gb']:.1f} GB")
    if cut := [f"{kind} {at} of {total}" for kind, (at, total) in result.get("cut_at_limit", {}).items() if at]:
        limit = result["sampling"]["max_tokens"]
        console.line(f"  outputs cut at the {limit}-token limit: {', '.join(cut)} (looping ones end there)")
    for kind, tally in result.get("prompt_tokens", {}).items():
        if tally["reused"]:
            console.line("  " + prompt_tokens_line(kind, tally))


def prompt_tokens_line(kind: str, tally: dict) -> str:
    """Prompt tokens per prompt of a kind: processed, and taken from a kept earlier prompt
    (a repair's or resample's from its draft, a draft's from the system turn of another)."""
    prompts = max(tally["prompts"], 1)
    whole = (tally["processed"] + tally["reused"]) / prompts
    return (
        f"{kind} prompts: {tally['processed'] / prompts:.0f} tokens processed per prompt of {whole:.0f} "
        f"({tally['reused'] / prompts:.0f} taken from a kept earlier prompt; {tally['prompts']} prompts)"
    )


def _selection_results(result: dict) -> dict[str, dict]:
    """The selection's results by metric key (as `Selection.metrics` names them)."""
    results = result.get("selection", {}).get("results", [])
    return {r["metric"]: r for r in results if r["strategy"] != "first"}


def _moved_text(r: dict) -> str:
    """Against the first sample: problems fixed and broken, McNemar p, the oracle gap closed."""
    closes = r["gap_share"] is not None and r["strategy"] != "oracle"  # the oracle closes all of it
    share = f", {100 * r['gap_share']:.0f}% of the oracle gap" if closes else ""
    moved = f"{len(r['fixed'])} fixed, {len(r['broken'])} broken"
    return f"  vs first: {moved}, McNemar p={r['p_value']:.3g}{share}"


def show_side_by_side(result: dict, fresh: dict, console) -> None:
    """Leaked vs fresh: each metric of both sets on one line, each rate with its own n."""
    console.line(f"{result['model']}, {result['side']} side: leaked vs fresh")
    console.line(f"  {'problems':<36} {result['problems']:<33}| {fresh['problems']}")
    for key, value in result["metrics"].items():
        if key in fresh["metrics"]:
            leaked = format_metric(key, value, result["n"])
            console.line(f"  {leaked:<70}| {format_value(fresh['metrics'][key], fresh['n'])}")
