"""The plain console: what a terminal log shows for the core's events."""

import io
import re

import mlx_lm
from tiny_repairer import double_problem

from mlx_repair.console import Console
from mlx_repair.events import AttemptFinished, Generating, Prefilling, Progress, StageStarted
from mlx_repair.generation.sampling import SamplingConfig
from mlx_repair.generation.writer import MLXWriter, WriterSampling
from mlx_repair.mining.loop import LoopConfig, run_loop
from mlx_repair.mining.store import Attempt, Store
from mlx_repair.sandbox import Pool


class Terminal(io.StringIO):
    def isatty(self):
        return True


def updates(out: Terminal) -> list[str]:
    """Each state of the live line, in order."""
    return [line.strip() for line in out.getvalue().split("\r\033[K") if line.strip()]


def _finished(task_id: str, kind: str, passed: bool) -> AttemptFinished:
    attempt = Attempt(task_id, kind, 0, 0, "prompt", "completion", "code", "m", passed, "ok", "")
    return AttemptFinished(attempt)


def test_counts_start_again_with_each_stage():
    """The adapter's eval reports its own passes, not the base eval's added to them."""
    out = io.StringIO()
    console = Console(out)
    console.follow([
        StageStarted("eval-base", 2),
        _finished("a", "draft", True), _finished("b", "draft", True), _finished("b", "repair", True),
        Progress("eval-base", 2, 2),
        StageStarted("eval-adapter", 2),
        _finished("a", "draft", True), _finished("b", "draft", False),
        Progress("eval-adapter", 2, 2),
    ])
    lines = out.getvalue().splitlines()
    base = next(line for line in lines if line.startswith("eval-base ["))
    adapter = next(line for line in lines if line.startswith("eval-adapter ["))
    assert "passed 2  repaired 1" in base
    assert "passed 1  repaired 0" in adapter


def test_the_bar_counts_repairs_and_resamples_and_shows_an_eta():
    """After the drafts, the line still moves: follow-ups counted, time left estimated."""
    out = Terminal()
    console = Console(out)
    console.follow([
        StageStarted("eval", 4),
        Progress("eval", 2, 4, 100, 10.0, seconds=20.0),
        Progress("eval", 4, 4, 200, 10.0, follow_ups_done=1, follow_ups_total=3, seconds=50.0),
        Progress("eval", 4, 4, 300, 10.0, follow_ups_done=3, follow_ups_total=3, seconds=70.0),
    ])
    lines = [line for line in updates(out) if line.startswith("eval [")]
    assert "2/4 drafts" in lines[0] and "ETA 20s" in lines[0]  # 2 steps left at 10 s each
    assert "4/4 drafts  1/3 repairs+resamples" in lines[1] and "ETA 20s" in lines[1]
    assert "3/3 repairs+resamples" in lines[-1] and "ETA" not in lines[-1]


def test_the_line_shows_the_prompts_being_read_before_the_first_draft_is_written(tiny_model_dir, tmp_path):
    """The real writer and loop on a tiny model: the console, as the writer's listener,
    shows each prompt's prefill, before any draft has finished."""
    model, tokenizer = mlx_lm.load(str(tiny_model_dir))
    out = Terminal()
    console = Console(out)
    sampling = WriterSampling.from_draft(SamplingConfig(max_tokens=8))
    writer = MLXWriter(model, tokenizer, "tiny", sampling, listener=console.writing)
    problems = [double_problem(f"T/{i}", doc=f"Twice x, take {i}.") for i in range(3)]
    with Store.open(tmp_path) as store, Pool(workers=1) as pool:
        store.start_run("mine", writer.name, "inline", {}, {"train": [p.task_id for p in problems], "eval": []})
        console.follow(run_loop(problems, writer, pool, store, LoopConfig(rounds=0, stage="mine")))
    lines = updates(out)
    first_bar = next(i for i, line in enumerate(lines) if line.startswith("mine ["))
    read = [re.fullmatch(r"writing 3 drafts: prefilling (\d)/3 prompts \((\d+) tokens\)", line) for line in lines]
    read = [(i, int(m[1]), int(m[2])) for i, m in enumerate(read) if m]
    assert [done for _, done, _ in read] == [1, 2, 3] and read[-1][0] < first_bar
    tokens = [t for _, _, t in read]
    assert 0 < tokens[0] < tokens[1] < tokens[2] == writer.stats.prompt_tokens


def test_a_prefill_still_going_extends_the_stage_bar():
    """Later calls (a chunk's repairs, the next chunk's drafts) read their prompts below
    the bar of the drafts done so far, and the bar keeps the prefill until it is done."""
    out = Terminal()
    console = Console(out)
    console.follow([
        StageStarted("mine", 4),
        Progress("mine", 2, 4, 50, 5.0, seconds=10.0),
        Generating("draft", ("c", "d"), 2),
        Prefilling("draft", 1, 2, 40),
        Progress("mine", 3, 4, 60, 5.0, seconds=12.0),
        Prefilling("draft", 2, 2, 80),
        Progress("mine", 4, 4, 70, 5.0, seconds=14.0),
    ])
    lines = updates(out)
    assert lines[2] == "writing 2 drafts ..."
    assert lines[3].startswith("mine [") and "2/4 drafts" in lines[3]
    assert lines[3].endswith("prefilling 1/2 prompts (40 tokens)")
    assert "3/4 drafts" in lines[4] and lines[4].endswith("prefilling 1/2 prompts (40 tokens)")
    assert lines[5].endswith("prefilling 2/2 prompts (80 tokens)")
    assert "4/4 drafts" in lines[6] and "prefilling" not in lines[6]
