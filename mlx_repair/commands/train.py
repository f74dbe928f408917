"""`mlx-repair train`: the whole job in one command.

evaluate the base on the eval side -> mine pairs on the train side -> train a LoRA
adapter -> evaluate base + adapter on the eval side -> write the report. With
`--control garbage`, a second adapter trained the same way on same-shape garbage pairs
is evaluated too, and the report puts the three side by side.

Every stage resumes: re-running the same command skips what is done. On a CPU the
`cpu` preset (chosen automatically there) keeps the whole run near 30 minutes on the
packaged Qwen 0.5B by evaluating and mining fewer problems and training fewer steps;
its numbers rest on few problems, and the report says how few.
"""

from __future__ import annotations

import hashlib
import json
import math
import shlex
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

from mlx_repair.commands import add_model_arguments
from mlx_repair.mining.dataset import MixConfig, too_few_pairs

# Stage sizes per preset: eval problems and mined problems (None: all). On a 2-core CPU
# every token, read or written, costs about a GFLOP (a 600-token repair prompt costs as
# much as 600 generated tokens), so the cpu preset is what fits 30 minutes there.
PIPELINE_PRESETS = {
    "cpu": {"eval_limit": 16, "mine_limit": 24},
    "default": {"eval_limit": None, "mine_limit": None},
}


def add_arguments(parser) -> None:
    add_model_arguments(parser)
    parser.add_argument("--problems", dest="run.problems", metavar="PROBLEMS", help="'humaneval', 'fresh' or a HumanEval/MBPP-format JSONL")
    parser.add_argument("--preset", choices=("auto", "cpu", "default"), default="auto",
                        help="stage sizes and training steps: 'cpu' fits ~30 min on a 2-core CPU; auto picks it without Metal")
    parser.add_argument("--limit", type=int, metavar="N", help="evaluate on the first N eval-side problems")
    parser.add_argument("--mine-limit", type=int, metavar="N", help="mine the first N train-side problems")
    parser.add_argument("--samples", dest="sampling.samples", type=int, metavar="N", help="drafts per problem when mining")
    parser.add_argument("--temperature", dest="sampling.temperature", type=float, metavar="T", help="mining temperature (0: greedy)")
    parser.add_argument("--max-tokens", dest="sampling.max_tokens", type=int, metavar="N", help="per model output")
    parser.add_argument("--rounds", dest="repair.rounds", type=int, metavar="R", help="repair rounds when mining, 0-3")
    parser.add_argument("--iters", type=int, metavar="N", help="training steps")
    parser.add_argument("--rank", type=int, metavar="R", help="LoRA rank")
    parser.add_argument("--layers", type=int, metavar="N", help="adapt the last N transformer blocks (-1: all)")
    parser.add_argument("--learning-rate", type=float, metavar="LR")
    parser.add_argument("--batch-size", type=int, metavar="N", help="training batch size")
    parser.add_argument("--dora", action="store_true", help="train DoRA instead of LoRA")
    parser.add_argument("--min-pairs", type=int, default=MixConfig.min_pairs, metavar="N",
                        help=f"train only with at least N mined repair pairs (default {MixConfig.min_pairs}): "
                             "a few records are memorised, which breaks more than it teaches")
    parser.add_argument("--control", choices=("garbage",), help="also train on same-shape garbage pairs (the control)")
    parser.add_argument("--out", metavar="DIR", help="adapter folder (default: adapters/<model>-<settings hash>)")
    parser.add_argument("--tui", action="store_true", help="watch the run in the terminal UI (q stops it; re-run to resume)")


def run(args) -> int:
    from mlx_repair.config import config_from_args

    config = config_from_args(args)
    command = "mlx-repair " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    if args.tui:
        from mlx_repair.tui import run_with_tui

        return run_with_tui(lambda console: train_pipeline(config, args, command, console), "train")
    report = train_pipeline(config, args, command)
    print(f"adapter: {report.parent}\nreport:  {report}")
    return 0


def train_pipeline(config, args, command: str, console=None) -> Path:
    """Run every stage (each resumes) and return the path of report.md."""
    from mlx_repair.commands.eval import evaluate_model
    from mlx_repair.commands.mine import mine
    from mlx_repair.console import Console
    from mlx_repair.evaluation.report import StageTime, TrainReport, write_report
    from mlx_repair.runs import problems_for
    from mlx_repair.training.config import preset_name

    console = console or Console()
    sizes = PIPELINE_PRESETS[preset_name(args.preset)]
    train_config = _train_config(args)
    eval_config = _with_limit(_greedy(config), args.limit or sizes["eval_limit"])
    mine_config = _with_limit(config, args.mine_limit or sizes["mine_limit"])
    out = Path(args.out or _default_out(config, args, train_config))
    stages: list[StageTime] = []

    def timed(stage: str, work):
        started = time.perf_counter()
        result = work()
        stages.append(StageTime(stage, time.perf_counter() - started, _peak_memory_gb()))
        return result

    base = timed("evaluate base", lambda: evaluate_model(eval_config, "eval", console=console))
    mine_dir, counts = timed("mine pairs", lambda: mine(mine_config, console=console))
    mined_problems, split = problems_for(mine_config, "train")
    mix = MixConfig(min_pairs=args.min_pairs)
    dataset = _dataset(mined_problems, mine_dir, mix)
    too_few = too_few_pairs(dataset, mix)
    if too_few:
        console.line(f"no adapter trained: {too_few}")
        return _no_adapter_report(out, base, counts, mine_dir, command, too_few, stages)
    losses, validation = timed("train adapter", lambda: _train(mine_config, split, dataset, out, train_config, console))
    adapter = timed("evaluate adapter", lambda: evaluate_model(eval_config, "eval", adapter=str(out), console=console))
    control = None
    if args.control:
        control_mix = replace(mix, control=args.control)
        control_data = _dataset(mined_problems, mine_dir, control_mix)
        too_few = too_few_pairs(control_data, control_mix)
        if too_few:
            console.line(f"no control adapter trained: {too_few}")
        else:
            control_out = out.with_name(out.name + "-control-garbage")
            timed("train control", lambda: _train(mine_config, split, control_data, control_out, train_config, console))
            control = timed("evaluate control", lambda: evaluate_model(eval_config, "eval", adapter=str(control_out), console=console))
    for name, result in (("base", base), ("adapter", adapter), ("control", control)):
        if result is not None:
            (out / f"eval-{name}.json").write_text(json.dumps(result, indent=2) + "\n")
    report = TrainReport(
        base=base, adapter=adapter, control=control, pair_counts=counts, losses=losses,
        validation_losses=validation, stages=stages, command=command,
        notes=_notes(base["n"], counts),
    )
    return write_report(report, out)


def _train_config(args):
    from mlx_repair.training.config import preset

    return preset(
        args.preset,
        iters=args.iters,
        rank=args.rank,
        num_layers=args.layers,
        learning_rate=args.learning_rate,
        batch_size=args.batch_size,
        fine_tune_type="dora" if args.dora else None,
    )


def _greedy(config):
    """Evaluation is always one greedy draft per problem, whatever mining samples."""
    return replace(config, sampling=replace(config.sampling, samples=1, temperature=0.0))


def _with_limit(config, limit):
    return replace(config, run=replace(config.run, limit=limit if limit is not None else config.run.limit))


def _default_out(config, args, train_config) -> Path:
    settings = json.dumps({"config": asdict(config), "train": asdict(train_config), "args": vars(args)}, sort_keys=True, default=str)
    digest = hashlib.sha256(settings.encode()).hexdigest()[:8]
    return Path("adapters") / f"{Path(config.run.model).name}-{digest}"


def _dataset(problems, mine_dir: Path, mix):
    """The mixed, split training records built from the mined store."""
    from mlx_repair.mining.dataset import build_dataset
    from mlx_repair.mining.store import Store

    with Store.open(mine_dir) as store:
        store.select_run("mine")
        return build_dataset(store, problems, mix)


def _train(config, split, dataset, out: Path, train_config, console):
    """Train on `dataset`, showing progress; returns (losses, validation losses)."""
    from mlx_repair.events import TrainStep
    from mlx_repair.training.lora import train_adapter

    losses, validation = [], []
    extra = {"split": split.to_dict(), "problems": config.run.problems}
    for event in train_adapter(config.run.model, dataset, out, train_config, extra=extra, quantize=config.run.quantize):
        console.show(event)
        if not isinstance(event, TrainStep):
            continue
        if event.iteration > 0 and not math.isnan(event.loss):  # step 0 only validates
            losses.append((event.iteration, event.loss))
        if event.validation_loss is not None:
            validation.append((event.iteration, event.validation_loss))
    return losses, validation


def _no_adapter_report(out: Path, base: dict, counts: dict, mine_dir: Path, command: str, reason: str, stages) -> Path:
    """Mining found too few verified repairs: say so, with the base model's numbers,
    instead of training on them (a finished run with an honest answer, not a crash)."""
    from mlx_repair.evaluation.metrics import format_metric
    from mlx_repair.evaluation.report import stage_table

    out.mkdir(parents=True, exist_ok=True)
    (out / "eval-base.json").write_text(json.dumps(base, indent=2) + "\n")
    lines = [
        "# mlx-repair training report",
        "",
        f"Command: `{command}`",
        "",
        f"**No adapter was trained**: {reason}. Mining ({mine_dir}) found "
        f"{', '.join(f'{kind} {count}' for kind, count in counts.items())}. "
        "An adapter trained on a handful of records memorises them and breaks more problems "
        "than it fixes (benchmarks/results/train_demo_qwen0.5b.md). Mine more problems "
        "(`--mine-limit N`, `--preset default`), draw more drafts per problem "
        "(`--samples 4 --temperature 0.8`), allow more repair rounds (`--rounds 3`), use a stronger model, "
        "or lower `--min-pairs` to train anyway.",
        "",
        f"Base model {base['model']} on {base['problems']}, {base['side']} side:",
        "",
    ]
    lines += [f"- {format_metric(key, value, base['n'])}" for key, value in base["metrics"].items()]
    lines += [""] + stage_table(stages)
    path = out / "report.md"
    path.write_text("\n".join(lines) + "\n")
    return path


def _peak_memory_gb() -> float:
    import mlx.core as mx

    peak = mx.get_peak_memory() / 1e9
    mx.reset_peak_memory()
    return peak


def _notes(n: int, counts: dict) -> list[str]:
    notes = [f"Each eval problem is {100 / n:.1f} points: read differences as problems moved, not percentages."]
    if counts.get("repair", 0) < 100:
        notes.append(
            f"{counts.get('repair', 0)} repair pairs: public results found fewer than ~100 pairs can hurt "
            "sampling diversity; treat any gain as preliminary."
        )
    return notes
