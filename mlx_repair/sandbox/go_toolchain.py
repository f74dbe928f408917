"""The Go toolchain a Go candidate is built with, and its shared build cache.

`go test` is only fast with a warm build cache: the standard library packages a test
links are compiled once and reused. The cache is shared by every run, so it must never
hold anything a candidate wrote: it is filled by `warm` alone, which builds the whole
standard library and a fixed test of ours (no candidate, no problem's test) outside any
sandbox, and candidates see it read-only (bwrap and unshare mount the whole file system
read-only). The Go command skips writing what it cannot, so a candidate's own packages
are compiled in its throwaway directory and forgotten; but it fails ("package net is not
in GOROOT") when a standard package it needs has no entry it can write, which is why all
of `std` is warmed, not only what tests usually import. Only `rlimits-only` cannot make it read-only;
runs at that level get a cache of their own, so what they might write never reaches a
run under a real sandbox.

Offline by construction: a module with no requirements, `GOFLAGS=-mod=mod`,
`GOPROXY=off`, `GOTOOLCHAIN=local`, cgo off.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from mlx_repair.errors import UserError

INSTALL = (
    "install Go and goimports (Debian/Ubuntu: apt-get install golang-go golang-golang-x-tools; "
    "macOS: brew install go, then go install golang.org/x/tools/cmd/goimports@latest)"
)
# Where a toolchain lives when it is not on PATH (official tarball, Debian, Homebrew, `go install`).
GO_DIRS = ("/usr/local/go/bin", "/usr/lib/go/bin", "/opt/homebrew/bin", "/usr/local/bin")
MODULE = "mlxrepair.local/candidate"
WARM_LEVEL = "shared"  # the cache that runs under a read-only file system share


@dataclass(frozen=True)
class Toolchain:
    go: str  # absolute paths, resolved
    goimports: str
    goroot: str
    version: str  # e.g. "1.19": the language version a candidate's go.mod declares

    def visible(self) -> tuple[str, ...]:
        """The host paths a sandboxed build must see (bound back where a home is hidden)."""
        return tuple(dict.fromkeys([self.goroot, os.path.dirname(self.go), os.path.dirname(self.goimports)]))


def toolchain() -> Toolchain:
    """The Go toolchain here, or a one-line UserError saying how to install it."""
    found = find_toolchain()
    if isinstance(found, str):
        raise UserError(f"Go problems: {found}; {INSTALL}")
    return found


@lru_cache(maxsize=1)
def find_toolchain() -> Toolchain | str:
    """The toolchain, or why there is none (checked once per process)."""
    go, goimports = _find("go"), _find("goimports")
    if go is None:
        return "no `go` command found"
    if goimports is None:
        return "no `goimports` command found"
    try:
        lines = subprocess.run(
            [go, "env", "GOROOT", "GOVERSION"], capture_output=True, text=True, timeout=60, check=True,
            env=_plain_env(),
        ).stdout.split()
    except (OSError, subprocess.SubprocessError) as error:
        return f"`go env` failed ({error})"
    goroot, version = lines[0], lines[1].removeprefix("go")
    return Toolchain(go, goimports, os.path.realpath(goroot), ".".join(version.split(".")[:2]))


def _find(name: str) -> str | None:
    home_bin = Path(os.environ.get("GOPATH") or Path.home() / "go") / "bin"
    for directory in [None, *GO_DIRS, str(home_bin)]:
        path = shutil.which(name, path=directory)
        if path:
            return os.path.realpath(path)
    return None


def _plain_env() -> dict[str, str]:
    return {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": tempfile.gettempdir(), "LANG": "C.UTF-8"}


def cache_dir(level: str) -> Path:
    """The shared build cache of this toolchain for runs at `level` (see the docstring)."""
    root = Path(os.environ.get("MLX_REPAIR_CACHE") or "~/.cache/mlx-repair").expanduser()
    share = "rlimits-only" if level == "rlimits-only" else WARM_LEVEL
    return root / "go" / f"go{toolchain().version}" / share


def build_env(tools: Toolchain, workdir: str, cache: str) -> dict[str, str]:
    """The whole environment of `go` and `goimports` for one build in `workdir`."""
    return {
        "PATH": f"{os.path.dirname(tools.go)}:/usr/local/bin:/usr/bin:/bin",
        "HOME": f"{workdir}/home",
        "TMPDIR": f"{workdir}/tmp",
        "GOTMPDIR": f"{workdir}/tmp",
        "GOROOT": tools.goroot,
        "GOPATH": f"{workdir}/gopath",
        "GOCACHE": cache,
        "GOFLAGS": "-mod=mod",
        "GOPROXY": "off",
        "GOSUMDB": "off",
        "GOTOOLCHAIN": "local",
        "GOTELEMETRY": "off",
        "GOENV": "off",
        "GOWORK": "off",
        "CGO_ENABLED": "0",
        "GO111MODULE": "on",
        "LANG": "C.UTF-8",
    }


def go_mod(tools: Toolchain) -> str:
    return f"module {MODULE}\n\ngo {tools.version}\n"


WARM_TEST = 'package main\n\nimport "testing"\n\nfunc TestWarm(t *testing.T) {}\n'


def warm(level: str) -> Path:
    """The shared cache for `level`, filled once by building `std` and a fixed test of
    ours exactly as candidates are built (same flags, same env). A file lock keeps
    parallel processes (test workers, two commands) from doing it twice."""
    tools, cache = toolchain(), cache_dir(level)
    stamp = hashlib.sha256(f"{tools}{WARM_TEST}{build_env(tools, '', '')}".encode()).hexdigest()[:16]
    cache.mkdir(parents=True, exist_ok=True)
    marker = cache / f"warmed-{stamp}"
    if marker.exists():
        return cache
    with open(cache.parent / f"{cache.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not marker.exists():
            _build_warm(tools, cache)
            marker.touch()
    return cache


def _build_warm(tools: Toolchain, cache: Path) -> None:
    with tempfile.TemporaryDirectory(prefix="mlx-repair-go-warm-") as workdir:
        for sub in ("home", "tmp", "gopath"):
            os.makedirs(os.path.join(workdir, sub))
        Path(workdir, "go.mod").write_text(go_mod(tools))
        Path(workdir, "warm_test.go").write_text(WARM_TEST)
        for command in ([tools.go, "build", "std"], [tools.go, "test", "-c", "-o", os.path.join(workdir, "warm.test"), "."]):
            result = subprocess.run(command, cwd=workdir, env=build_env(tools, workdir, str(cache)),
                                    capture_output=True, text=True, timeout=1800)
            if result.returncode != 0:
                raise UserError(f"Go: warming the build cache {cache} failed: {result.stderr.strip()[-300:]}")
    for directory, _, files in os.walk(cache):  # readable by a run's throwaway uid, whatever the umask
        for name in [directory, *(os.path.join(directory, f) for f in files)]:
            os.chmod(name, os.stat(name).st_mode | 0o444 | (0o111 if os.path.isdir(name) else 0))
