"""Entry points: run a job with the app attached, or open a stored run."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from mlx_repair.errors import UserError

from mlx_repair.tui.state import Plan


def run_with_tui(job, title: str, plan: Plan | None = None) -> int:
    """Run `job(console)` (e.g. `lambda console: mine(config, run_dir, console)`) under the
    app; 0 when the job finished, 130 when the user quit before the end. The job's error,
if any, is raised again here, so the CLI reports it as it would without the app.

    Quitting while the model is busy in one long call (a batch of generations) leaves the
    job to finish that call, store what it wrote and stop; Ctrl+C abandons the call, which
    loses only what was not stored yet, like any killed run."""
    from mlx_repair.tui.app import RepairApp

    app = RepairApp(job, title, plan)
    # Our own loop: `asyncio.run` would join the job's thread before returning, silently.
    loop = asyncio.new_event_loop()
    app.run(loop=loop)
    console = app.job_console
    if not console.done.is_set():
        print(
            f"{title}: stopping once the model's current call ends and its outputs are stored "
            "(Ctrl+C abandons them; the store keeps every finished attempt)",
            file=sys.stderr,
        )
        try:
            console.done.wait()
        except KeyboardInterrupt:
            os._exit(130)
    # Join the job's thread now: MLX aborts the interpreter if a thread that used it is alive at exit.
    loop.run_until_complete(loop.shutdown_default_executor())
    loop.close()
    if app.job_error is not None:
        raise app.job_error
    return 0 if app.state.finished else 130


def open_run(run_dir: str | Path, name: str | None = None) -> int:
    """Browse a stored run (refreshing while another process writes to it)."""
    from mlx_repair.tui.replay import run_names, store_events

    names = run_names(run_dir)
    if not names:
        raise UserError(f"{run_dir}: the store holds no run yet")
    if name is None:
        name = names[-1]
    elif name not in names:
        raise UserError(f"{run_dir}: no run named {name!r} (it holds {', '.join(names)})")
    run_with_tui(
        lambda console: console.follow(store_events(run_dir, name, until=console.stopping)),
        title=f"{name} · {Path(run_dir).name}",
    )
    return 0
