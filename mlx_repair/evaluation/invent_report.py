"""The report of an invent run: how many requests became problems, which filter stopped
the others, and how acceptance and the model's solve rate moved with the difficulty.

Each filter's acceptance rate is counted over the requests that reached it (the filters
run in `invented.REASONS` order), so a filter that rejects much is visible even behind
an earlier one. The near-copy threshold and every other setting are recorded with it.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

from mlx_repair.events import Log
from mlx_repair.generation.invent_prompts import LEVELS
from mlx_repair.problems.invented import REASONS

REPORT_FILES = ("report.md", "report.json", "levels.png")


def summarize(inventions: list, settings, seconds: float) -> dict:
    """Counts per reason, each filter's acceptance, per-level rates and the level trace."""
    decided = [i for i in inventions if i.reason != "pending"]
    rejected = {reason: sum(i.reason == reason for i in decided) for reason in REASONS}
    filters, reaching = [], len(decided)
    for reason in REASONS:
        passed = reaching - rejected[reason]
        filters.append({"filter": reason, "reached": reaching, "passed": passed, "rate": _rate(passed, reaching)})
        reaching = passed
    kept = sum(i.kept for i in decided)
    return {
        "requests": len(decided),
        "kept": kept,
        "acceptance": _rate(kept, len(decided)),
        "rejected": rejected,
        "filters": filters,
        "levels": [_level_row(level, [i for i in decided if i.level == level]) for level in range(1, LEVELS + 1)],
        "trace": [{"request": i.request, "level": i.level, "outcome": "kept" if i.kept else i.reason} for i in decided],
        "settings": asdict(settings),
        "seconds": round(seconds, 1),
    }


def _level_row(level: int, asked: list) -> dict:
    solved = [i for i in asked if i.solutions]
    passing, solutions = sum(i.passing for i in solved), sum(i.solutions for i in solved)
    return {
        "level": level,
        "requests": len(asked),
        "kept": sum(i.kept for i in asked),
        "acceptance": _rate(sum(i.kept for i in asked), len(asked)),
        "solved_problems": len(solved),
        "solve_rate": _rate(passing, solutions),
    }


def _rate(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def write_invent_report(directory: Path, inventions: list, settings, seconds: float) -> dict:
    """report.json, report.md and levels.png in the run directory; returns the summary."""
    summary = summarize(inventions, settings, seconds)
    (directory / "report.json").write_text(json.dumps(summary, indent=2) + "\n")
    _chart(summary, directory / "levels.png")
    (directory / "report.md").write_text(markdown(summary))
    return summary


def markdown(summary: dict) -> str:
    s = summary["settings"]
    lines = [
        "# mlx-repair invent report", "",
        f"{summary['kept']} of {summary['requests']} requests kept ({_percent(summary['acceptance'])}) in "
        f"{summary['seconds'] / 60:.1f} min. Each problem was solved {s['solutions']} times by the model; kept when "
        f"at least {s['min_passing']} passed and {s['min_failing']} failed. Near-copy: more than "
        f"{s['max_overlap']:.0%} of its {s['ngram']}-token n-grams in one known problem.", "",
        "| filter | reached | passed | acceptance |", "| --- | --- | --- | --- |",
    ]
    lines += [f"| {f['filter']} | {f['reached']} | {f['passed']} | {_percent(f['rate'])} |" for f in summary["filters"]]
    lines += ["", "| level | requests | kept | acceptance | problems solved | solve rate |", "| --- | --- | --- | --- | --- | --- |"]
    lines += [
        f"| {r['level']} | {r['requests']} | {r['kept']} | {_percent(r['acceptance'])} | {r['solved_problems']} | "
        f"{_percent(r['solve_rate'])} |"
        for r in summary["levels"] if r["requests"]
    ]
    trace = " ".join(f"{t['level']}{'+' if t['outcome'] == 'kept' else ''}" for t in summary["trace"])
    lines += ["", f"Difficulty trace (level per request, + kept): {trace}", "", "![levels](levels.png)", ""]
    return "\n".join(lines)


def _percent(rate: float | None) -> str:
    return "–" if rate is None else f"{100 * rate:.0f}%"


def _chart(summary: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")  # files only; never a window
    import matplotlib.pyplot as plt

    figure, (rates, trace) = plt.subplots(1, 2, figsize=(9, 3.5))
    asked = [r for r in summary["levels"] if r["requests"]]
    for key, label in (("acceptance", "kept / requests"), ("solve_rate", "solutions passing")):
        points = [(r["level"], 100 * r[key]) for r in asked if r[key] is not None]
        if points:
            rates.plot(*zip(*points), marker="o", label=label)
    rates.set(xlabel="difficulty level", ylabel="%", ylim=(-5, 105), xticks=range(1, LEVELS + 1),
              title="acceptance and solve rate by level")
    if rates.lines:
        rates.legend()
    steps = summary["trace"]
    trace.step([t["request"] for t in steps], [t["level"] for t in steps], where="post", color="grey")
    kept = [t for t in steps if t["outcome"] == "kept"]
    trace.scatter([t["request"] for t in kept], [t["level"] for t in kept], color="green", label="kept", zorder=3)
    trace.set(xlabel="request", ylabel="level", yticks=range(1, LEVELS + 1), title="difficulty trace")
    if kept:
        trace.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def show_summary(summary: dict, console) -> None:
    console.show(Log(f"kept {summary['kept']} of {summary['requests']} requests ({_percent(summary['acceptance'])})"))
    for f in summary["filters"]:
        console.show(Log(f"  {f['filter']:<18} passed {f['passed']}/{f['reached']} ({_percent(f['rate'])})"))
