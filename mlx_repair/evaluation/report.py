"""The report of a `train` run: markdown for people, JSON for scripts, PNG charts.

Every number carries its n and its baseline measured in the same run; comparisons say
which problems moved and how likely that is by chance, because on a few dozen problems
one problem is several points.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from mlx_repair.evaluation.compare import compare_results
from mlx_repair.evaluation.goal import GoalPart, adapter_goal, goal_dict, verdict
from mlx_repair.mining.pairing import format_pair_counts, pair_total
from mlx_repair.evaluation.metrics import format_metric, format_rate, metric_label
from mlx_repair.evaluation.selection import selection_markdown
from mlx_repair.problems import MATH, subjects_named


@dataclass
class StageTime:
    stage: str
    seconds: float
    peak_memory_gb: float


@dataclass
class TrainReport:
    base: dict  # `eval --json` result of the base model
    adapter: dict  # the same for base + adapter
    pair_counts: dict[str, dict[str, int]]  # mined pairs per kind and provenance
    losses: list[tuple[int, float]]  # (iteration, training loss)
    validation_losses: list[tuple[int, float]]
    stages: list[StageTime]
    command: str
    control: dict | None = None  # `eval --json` of base + garbage-trained adapter
    notes: list[str] = field(default_factory=list)

    @cached_property
    def comparisons(self) -> dict[str, list]:
        """Computed once (each holds a bootstrap): the JSON, the markdown and the goal read them."""
        result = {"adapter": compare_results(self.base, self.adapter)}
        if self.control:
            result["control"] = compare_results(self.base, self.control)
        return result

    @cached_property
    def goal(self) -> list[GoalPart]:
        return adapter_goal(self.comparisons["adapter"])

    def to_dict(self) -> dict:
        return {
            "command": self.command,
            "base": self.base["metrics"],
            "adapter": self.adapter["metrics"],
            "control": self.control["metrics"] if self.control else None,
            "n": self.base["n"],
            "comparisons": {k: [c.to_dict() for c in v] for k, v in self.comparisons.items()},
            "goal": goal_dict(self.goal),
            "pair_counts": self.pair_counts,
            "losses": self.losses,
            "validation_losses": self.validation_losses,
            "stages": [s.__dict__ for s in self.stages],
            "split": self.base.get("split"),
            "notes": self.notes,
        }


def write_report(report: TrainReport, directory: Path) -> Path:
    """Write report.md, report.json and the charts into `directory`; returns report.md."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "report.json").write_text(json.dumps(report.to_dict(), indent=2) + "\n")
    charts = _charts(report, directory)
    path = directory / "report.md"
    path.write_text(markdown(report, charts))
    return path


def markdown(report: TrainReport, charts: list[str]) -> str:
    n = report.base["n"]
    systems = [("base", report.base), ("base + adapter", report.adapter)]
    if report.control:
        systems.append(("base + garbage-trained adapter (control)", report.control))
    lines = [
        "# mlx-repair training report",
        "",
        f"Command: `{report.command}`",
        "",
        f"Model: {report.base['model']}; problems: {problems_named(report.base)}, "
        f"{report.base['side']} side of the split, n={n} problems never mined or trained on.",
        "",
        "| metric | " + " | ".join(name for name, _ in systems) + " |",
        "| --- | " + " | ".join("---" for _ in systems) + " |",
    ]
    for key in report.base["metrics"]:
        cells = [format_rate(result["metrics"].get(key), n) for _, result in systems]
        lines.append(f"| {metric_label(key)} | " + " | ".join(cells) + " |")
    cut = [cut_cell(result) for _, result in systems]
    lines.append("| outputs cut at the token limit (a looping model's) | " + " | ".join(cut) + " |")
    if MATH in report.base.get("languages", []):
        lines += ["", "A math repair turn is shown the expected answer (`Expected: ... / Got: ...`): judge "
                      "math by cold pass@1 and resampling, not by the repair turn."]
    lines += ["", "## What moved", "", "Each line compares the base (A) with the adapter or the control (B).", ""]
    for name, comparisons in report.comparisons.items():
        for comparison in comparisons:
            lines.append(f"- {name}, {comparison.describe()}")
            if comparison.fixed:
                lines.append(f"  - fixed: {', '.join(comparison.fixed)}")
            if comparison.broken:
                lines.append(f"  - broken: {', '.join(comparison.broken)}")
    lines += [
        "",
        "`resampling, same budget` is the baseline repair must beat: the same number of model",
        "calls spent on an independent fresh sample instead of a repair.",
        "",
        *goal_markdown(report.goal),
    ]
    for name, result in systems:
        if "selection" in result:
            lines += selection_markdown(result["selection"], name)
    lines += [
        "## Training data",
        "",
        f"Pairs mined on the train side: {format_pair_counts(report.pair_counts)}.",
        "",
    ]
    lines += stage_table(report.stages)
    lines += [""] + [f"![{Path(c).stem}]({c})" for c in charts]
    if report.notes:
        lines += ["", "## Notes", ""] + [f"- {note}" for note in report.notes]
    return "\n".join(lines) + "\n"


def cut_cell(result: dict) -> str:
    """Outputs of every kind that ran to the token limit, of all the model wrote."""
    tallies = result.get("cut_at_limit", {}).values()
    return f"{sum(at for at, _ in tallies)} of {sum(total for _, total in tallies)}" if tallies else "-"


def goal_markdown(parts: list[GoalPart]) -> list[str]:
    """The goal section: each part met or not, with its evidence, and the verdict."""
    return ["## The goal", "", *(f"- {part.line()}" for part in parts), "", f"**{verdict(parts)}**", ""]


def stage_table(stages: list[StageTime]) -> list[str]:
    """The markdown lines of the time and peak memory of each stage."""
    lines = ["## Time and memory", "", "| stage | time | peak memory |", "| --- | --- | --- |"]
    return lines + [f"| {s.stage} | {s.seconds / 60:.1f} min | {s.peak_memory_gb:.1f} GB |" for s in stages]


def _charts(report: TrainReport, directory: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")  # files only; never a window
    import matplotlib.pyplot as plt

    names = []
    if report.losses:
        figure, axis = plt.subplots(figsize=(6, 3.5))
        axis.plot(*zip(*report.losses), label="train")
        if report.validation_losses:
            axis.plot(*zip(*report.validation_losses), marker="o", label="validation")
        axis.set(xlabel="iteration", ylabel="loss", title="LoRA training loss")
        axis.legend()
        figure.tight_layout()
        figure.savefig(directory / "loss.png", dpi=120)
        plt.close(figure)
        names.append("loss.png")
    keys = [k for k in report.base["metrics"] if k in report.adapter["metrics"]]
    systems = [("base", report.base), ("adapter", report.adapter)]
    if report.control:
        systems.append(("control", report.control))
    figure, axis = plt.subplots(figsize=(7, 3.5))
    width = 0.8 / len(systems)
    for i, (name, result) in enumerate(systems):
        values = [100 * result["metrics"].get(k, 0.0) for k in keys]
        axis.bar([x + i * width for x in range(len(keys))], values, width, label=name)
    axis.set_xticks([x + width * (len(systems) - 1) / 2 for x in range(len(keys))], keys, fontsize=8)
    axis.set(ylabel="% of problems", title=f"n={report.base['n']} eval problems")
    axis.legend()
    figure.tight_layout()
    figure.savefig(directory / "metrics.png", dpi=120)
    plt.close(figure)
    names.append("metrics.png")
    return names


def problems_named(result: dict) -> str:
    """An evaluation's problem set and the language its answers are in: "go (Go)"."""
    languages = result.get("languages")
    return f"{result['problems']} ({subjects_named(languages)})" if languages else result["problems"]


def write_no_adapter_report(
    out: Path, base: dict, counts: dict, mine_dir: Path, command: str, reason: str, stages, advice: str = ""
) -> Path:
    """Mining found too few verified repairs: say so, with the base model's numbers and
    `advice` on how to mine more, instead of training on them (a finished run with an
    honest answer, not a crash)."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "eval-base.json").write_text(json.dumps(base, indent=2) + "\n")
    lines = [
        "# mlx-repair training report",
        "",
        f"Command: `{command}`",
        "",
        f"**No adapter was trained**: {reason}. Mining ({mine_dir}) found "
        f"{format_pair_counts(counts)}. "
        "An adapter trained on a handful of records memorises them and breaks more problems "
        f"than it fixes (benchmarks/results/train_demo_qwen0.5b.md). {advice}".rstrip(),
        "",
        f"Base model {base['model']} on {problems_named(base)}, {base['side']} side:",
        "",
    ]
    lines += [f"- {format_metric(key, value, base['n'])}" for key, value in base["metrics"].items()]
    lines += [""] + (selection_markdown(base["selection"], "base") if "selection" in base else [])
    lines += stage_table(stages)
    path = out / "report.md"
    path.write_text("\n".join(lines) + "\n")
    return path


def report_notes(n: int, counts: dict) -> list[str]:
    """How much one problem weighs, and how far the pair count is from where training helps."""
    notes = [f"Each eval problem is {100 / n:.1f} points: read differences as problems moved, not percentages."]
    repairs = pair_total(counts, "repair")
    if repairs < 100:
        notes.append(
            f"{repairs} repair pairs: public results found fewer than ~100 pairs can hurt "
            "sampling diversity; treat any gain as preliminary."
        )
    return notes
