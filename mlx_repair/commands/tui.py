"""`mlx-repair tui RUN_DIR`: browse a run from its store, live while another process
writes it, with no model loaded. (`mine --tui` runs a job with the same app attached.)"""

from __future__ import annotations


def add_arguments(parser) -> None:
    parser.add_argument("run_dir", metavar="RUN_DIR", help="a run directory (holds store.sqlite), e.g. runs/mine-...")
    parser.add_argument("--run", metavar="NAME", help="which run of the store ('mine', 'eval'; default: the latest)")


def run(args) -> int:
    from mlx_repair.tui import open_run

    return open_run(args.run_dir, args.run)
