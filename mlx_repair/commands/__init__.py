"""One module per `mlx-repair` subcommand: add_arguments(parser) and run(args) -> int.

The flags that several commands share, and the way a job runs (printed, or under the
TUI with `--tui`), live here once. A flag whose `dest` is "section.key" overrides that
key of the config file (config.py)."""

from mlx_repair.config import ISOLATION_CHOICES, QUANTIZE_BITS, QUANTIZE_GROUP_SIZE, REPAIR_MODES, MineSection, RepairSection


def add_model_arguments(parser) -> None:
    """--model and --quantize, for the commands that load a model to generate or train."""
    parser.add_argument("--model", dest="run.model", metavar="MODEL", help="packaged name, .gguf file, model folder or hub id")
    parser.add_argument(
        "--quantize", dest="run.quantize", type=int, choices=QUANTIZE_BITS,
        help=f"quantize the weights to this many bits after loading (group size {QUANTIZE_GROUP_SIZE}, "
        "as mlx-lm): less memory and faster on Metal; on the CPU, where weights stay float32, MLX's "
        "quantized matmuls are 3-10x slower, so use it there only when memory is short",
    )
    parser.add_argument("--problems", dest="run.problems", metavar="PROBLEMS", help="'humaneval', 'fresh', 'math', 'go' or a HumanEval/MBPP/math/Go JSONL (sets join with +)")


def add_sampling_arguments(parser) -> None:
    """--samples, --temperature and --max-tokens of evaluation drafts ([sampling])."""
    parser.add_argument("--samples", dest="sampling.samples", type=int, metavar="N", help="drafts per problem (pass@k needs >= 2k)")
    parser.add_argument("--temperature", dest="sampling.temperature", type=float, metavar="T", help="sampling temperature (0, the default, is greedy)")
    add_max_tokens_argument(parser)


def add_mining_arguments(parser) -> None:
    """--samples, --temperature ([mine]), --max-tokens, --rounds and --repair-prompt, for
    the commands that mine."""
    mine = MineSection()
    parser.add_argument("--samples", dest="mine.samples", type=int, metavar="N",
                        help=f"drafts per train-side problem when mining (default {mine.samples}): failing and passing "
                             "drafts of one problem become repair pairs")
    parser.add_argument("--temperature", dest="mine.temperature", type=float, metavar="T",
                        help=f"sampling temperature of mined drafts (default {mine.temperature})")
    add_max_tokens_argument(parser)
    parser.add_argument("--rounds", dest="repair.rounds", type=int, metavar="R",
                        help=f"the model's own repair turns per failing draft when mining, 0-3 (default {RepairSection.rounds}); "
                        "raised, only the repairs are written: in --run-dir itself, or in a new run started "
                        "from a copy of the one with fewer rounds")
    add_repair_prompt_argument(parser)


def add_max_tokens_argument(parser) -> None:
    parser.add_argument("--max-tokens", dest="sampling.max_tokens", type=int, metavar="N", help="tokens per model output")


def add_repair_prompt_argument(parser) -> None:
    parser.add_argument("--repair-prompt", dest="repair.prompt", choices=REPAIR_MODES,
                        help=f"what a repair prompt shows (default {RepairSection.prompt}): 'code' the failing attempt and "
                             "its test results, 'facts' the test results only, 'explain' facts and a sentence on what they show first")


def add_sandbox_arguments(parser) -> None:
    """--isolation, for the commands that run model-written code ([sandbox] isolation)."""
    parser.add_argument(
        "--isolation", dest="sandbox.isolation", choices=ISOLATION_CHOICES,
        help="how candidates are isolated: auto (the default) runs them only in the platform's real sandbox "
        "(bubblewrap on Linux, sandbox-exec on macOS) and refuses without it; naming a weaker level runs them "
        "under it (README: The sandbox, what each level protects)",
    )


def add_job_arguments(parser, stage: str) -> None:
    """--run-dir and --tui, for the commands that run a resumable job."""
    parser.add_argument("--run-dir", metavar="DIR", help=f"store the run here (default: runs/{stage}-<model>-<settings hash>)")
    parser.add_argument("--tui", action="store_true", help="watch the run in the terminal UI (q stops it; re-run to resume)")


def run_job(args, title: str, job, plan=None, done=None) -> int:
    """Read the config (file, then flags) and run `job(config, console)`: printed, or
    drawn by the TUI with --tui (`plan(config)` tells the app which problems to expect).
    `done(result)` then prints what the job made, on stdout, once it finished."""
    from mlx_repair.config import config_from_args
    from mlx_repair.console import Console

    config = config_from_args(args)
    results = []

    def work(console):
        results.append(job(config, console))

    if getattr(args, "tui", False):
        from mlx_repair.tui import run_with_tui

        code = run_with_tui(work, title, plan(config) if plan else None)
    else:
        work(Console())
        code = 0
    if results and done:
        done(results[0])
    return code
