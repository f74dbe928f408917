"""A user who runs `pip install .` (not the editable install of `make`) gets every module
and every data file.

setuptools only ships the packages pyproject lists, so a new subpackage that is not
listed works in the repository and vanishes from the wheel.
"""

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _source_files() -> set[str]:
    """Every file the installed package needs, as its path inside the wheel."""
    files = {f"mlx_repair/{p.relative_to(ROOT / 'mlx_repair')}" for p in (ROOT / "mlx_repair").rglob("*.py")}
    files |= {f"mlx_repair/tui/{p.relative_to(ROOT / 'tui')}" for p in (ROOT / "tui").rglob("*.py")}
    files |= {f"mlx_repair/tui/{p.name}" for p in (ROOT / "tui").glob("*.tcss")}
    files |= {f"mlx_repair/problems/data/{p.name}" for p in (ROOT / "mlx_repair" / "problems" / "data").iterdir()}
    return files


def test_wheel_holds_every_module_the_stylesheet_and_the_fresh_problems(tmp_path):
    source = tmp_path / "source"  # a copy, so the build leaves nothing in the repository
    for name in ("mlx_repair", "tui"):
        shutil.copytree(ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(tmp_path), str(source)],
        check=True,
        cwd=tmp_path,
    )
    (wheel,) = tmp_path.glob("mlx_repair-*.whl")
    shipped = set(zipfile.ZipFile(wheel).namelist())
    assert {"mlx_repair/tui/app.tcss", "mlx_repair/problems/data/fresh.jsonl"} <= _source_files()
    assert _source_files() - shipped == set()
