"""The Textual app (installed as mlx_repair.tui); it only consumes the core's events and store.

`run_with_tui(job, title)` runs a job with the app attached; `open_run(run_dir)` browses a
stored run. Textual is imported only when one of them is called.
"""

from mlx_repair.tui.launch import open_run, run_with_tui
from mlx_repair.tui.state import Plan

__all__ = ["Plan", "open_run", "run_with_tui"]
