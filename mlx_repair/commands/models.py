"""`mlx-repair models`: what models are available, where they are cached, size and dtype."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--import",
        dest="prepare",
        metavar="MODEL",
        help="import this model (packaged name or .gguf file) into the cache now",
    )


def run(args: argparse.Namespace) -> int:
    from mlx_repair.config import DEFAULT_MODEL
    from mlx_repair.model import resolve

    if args.prepare:
        resolved = resolve.resolve_model(args.prepare, progress=_print_progress)
        print(f"{resolved.name}: {resolved.path}")
    rows = [("NAME", "SOURCE", "STATE", "SIZE", "DTYPE", "WHERE / NOTE")]
    for info in resolve.list_models():
        state = "cached" if info.cached else "installed" if info.installed else "missing"
        where = str(info.cached) if info.cached else info.description
        size = f"{info.size / 1e6:.0f} MB" if info.size else "-"
        default = " (default)" if info.name == DEFAULT_MODEL else ""
        rows.append((info.name + default, info.source, state, size, info.dtype, where))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)), row[-1])
    print(f"\ncache: {resolve.cache_root()}  (set MLX_REPAIR_CACHE to move it)")
    print("also accepted by --model: a .gguf file, a local MLX/Hugging Face folder, a hub id")
    return 0


def _print_progress(done: int, total: int, what: str) -> None:
    import sys

    end = "\n" if done == total else ""
    print(f"\r  importing {done}/{total} {what[:40]:<40}", end=end, file=sys.stderr, flush=True)
