"""The `mlx-repair` command: a thin dispatcher over one module per subcommand.

Each module in `mlx_repair.commands` has `add_arguments(parser)` and `run(args) -> int`,
like mlx-lm's `setup_arg_parser()` / `main()`; `COMMANDS` below holds their one-line help.
Command modules import the core only inside `run`, so `mlx-repair exec` never pays for MLX.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from mlx_repair.model import blas
from mlx_repair.errors import UserError

COMMANDS = {
    "train": "Evaluate base, mine pairs, train a LoRA adapter, evaluate it, write a report.",
    "train-critic": "Train a critic on judged train-side samples, to choose among samples (eval --select critic).",
    "mine": "Run draft -> execute -> repair on the train split and store verified pairs.",
    "invent": "Let the model write problems with tests for itself; keep those that pass every filter, for mining.",
    "eval": "Measure a model (and adapter) on a problem set: pass@1, repair, budget-matched baselines.",
    "tui": "Browse a run, live or finished, in a terminal UI.",
    "compare": "Compare two `eval --json` results: problems fixed/broken, exact McNemar, bootstrap.",
    "exec": "Run completions against a problem set's tests in the sandbox and write verdicts.",
    "models": "List the models mlx-repair can use, where they are cached, size and dtype.",
    "export": "Export an adapter for mlx-lm, for PEFT, or fused into its base model, with a model card.",
    "push": "Export an adapter and upload it to a Hugging Face hub repo (created if needed).",
    "doctor": "Check this machine: MLX, BLAS, sandbox isolation, packaged models and data.",
}
# The commands whose settings live in the config file; the others take no --config.
CONFIGURED = ("train", "train-critic", "mine", "invent", "eval", "exec")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mlx-repair",
        description="Make a small local code model measurably better at your tests.",
        epilog="Run `mlx-repair COMMAND --help` for the options of one command.",
    )
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--config",
        metavar="TOML",
        help="settings file (default: ./mlx-repair.toml when present); flags override it",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, help_text in COMMANDS.items():
        module = _command_module(name)
        parents = [common] if name in CONFIGURED else []
        command = sub.add_parser(name, help=help_text, description=help_text, parents=parents)
        module.add_arguments(command)
        command.set_defaults(handler=module.run)  # not `run`: a command may have a --run flag
    return parser


def _command_module(name: str):
    return importlib.import_module(f"mlx_repair.commands.{name.replace('-', '_')}")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    blas.preload()  # before any command imports mlx.core (Linux CPUs: OpenBLAS, see model/blas.py)
    try:
        return args.handler(args) or 0
    except UserError as error:
        print(f"mlx-repair {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"mlx-repair {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
