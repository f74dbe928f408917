"""The TUI, driven by Textual's Pilot against runs of the real loop and the real sandbox
(with a scripted writer, as in test_loop.py), replayed from their store or live."""

import asyncio
import os
import shutil
import subprocess
import sys
import math
import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest
from rich.console import Console

from mlx_repair.cli import main
from mlx_repair.errors import UserError
from mlx_repair.events import (
    AttemptFinished,
    Generating,
    PairSaved,
    PartialText,
    Progress,
    StageFinished,
    StageStarted,
    TrainStep,
)
from mlx_repair.generation import math_prompts
from mlx_repair.mining.loop import LoopConfig, run_loop
from mlx_repair.sandbox import Pool
from mlx_repair.mining.store import Attempt, Store
from mlx_repair.tui import open_run
from mlx_repair.tui.app import RepairApp
from mlx_repair.tui.replay import store_events
from mlx_repair.tui.job import JobConsole
from mlx_repair.tui.state import Plan, RunState, problem_status
from mlx_repair.tui.widgets.pane import Pane
from test_loop import RIGHT, WRONG, ScriptedWriter, problem

SIZE = (120, 40)
CRASH = "def double(x):\n    return x[0]\n"
# One problem per outcome: passed cold, repaired, given up (a failing repair), and a
# draft that crashes. Task ids decide which cases are hidden, so the names are fixed.
SCRIPT = {
    ("T/pass", "draft"): RIGHT,
    ("T/fix", "draft"): WRONG,
    ("T/fix", "repair"): RIGHT,
    ("T/stuck", "draft"): WRONG,
    ("T/stuck", "repair"): "def double(x):\n    return x + x + 1\n",
    ("T/crash", "draft"): CRASH,
    ("T/crash", "repair"): WRONG,
}
TASKS = ["T/pass", "T/fix", "T/stuck", "T/crash"]
LOOP = LoopConfig(rounds=1, chunk_size=1, stage="mine")


class SlowWriter(ScriptedWriter):
    """Takes a while per output, so a test can act while the job is running."""

    def write(self, requests):
        for output in super().write(requests):
            time.sleep(0.15)
            yield output


def mine_job(run_dir, writer, tasks=TASKS):
    """What `mine` does under the TUI: open the store, run the loop, show its events."""

    def job(console):
        with Store.open(run_dir) as store, Pool(workers=2) as pool:
            store.start_run("mine", writer.name, "inline", {"repair": {"rounds": 1}, "side": "train"},
                            {"train": list(tasks), "eval": []})
            console.show(StageStarted("mine", len(tasks)))
            console.follow(run_loop([problem(t) for t in tasks], writer, pool, store, LOOP))

    return job


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("tui") / "run"
    mine_job(run_dir, ScriptedWriter(SCRIPT))(JobConsole())
    return run_dir


def replay_app(run_dir):
    return RepairApp(
        lambda console: console.follow(store_events(run_dir, "mine", until=console.stopping)),
        title=f"mine · {run_dir.name}",
    )


def loaded(app):
    """The replay has drawn every stored attempt (the plan alone already lists the problems)."""
    return sum(map(len, app.state.view.attempts.values())) == 7


async def until(pilot, condition, timeout=20.0):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await pilot.pause(0.05)
    await pilot.pause(0.15)  # one more drain and redraw


def text_of(app, pane_id):
    static = app.query_one(f"#{pane_id}", Pane).query_one("Static")
    console = Console(width=200, record=True, file=open("/dev/null", "w"))
    console.print(static.content)
    return console.export_text()


def shows_code(app, code):
    """Every line of `code`, in order, in the code pane (which numbers the lines)."""
    shown = [line.split(" ", 3)[-1] for line in text_of(app, "code").splitlines()]
    return all(line.strip() in row for line, row in zip(code.splitlines(), shown))


def stored(run_dir):
    with Store.open(run_dir) as store:
        store.select_run("mine")
        return store.attempts()


def test_replay_keys_move_through_problems_and_attempts(finished_run):
    async def scenario():
        app = replay_app(finished_run)
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: loaded(app))
            assert [app.state.view.status(t) for t in TASKS] == ["passed", "repaired", "given up", "given up"]
            assert app.selected_task == "T/pass"
            assert "return 2 * x" in text_of(app, "code")

            await pilot.press("down")
            await pilot.pause(0.1)
            assert app.selected_task == "T/fix"
            attempts = {a.kind: a for a in stored(finished_run) if a.task_id == "T/fix"}
            # The newest attempt, the repair, is shown first: its code and its diff.
            assert app.attempt_index == 1
            assert shows_code(app, attempts["repair"].code)
            diff = text_of(app, "diff")
            assert "-    return 3 * x" in diff and "+    return 2 * x" in diff

            await pilot.press("left")  # back to the broken draft and its failing cases
            await pilot.pause(0.1)
            cases = text_of(app, "cases")
            assert shows_code(app, attempts["draft"].code)
            for case in attempts["draft"].verdict["cases"]:
                mark = f"{case['index']}h" if case["hidden"] else str(case["index"])
                row = next(line for line in cases.splitlines() if line.split()[:2] == ["✗", mark])
                assert row.split()[2:] == [case["input"], case["expected"], case["got"]]
            assert "h: hidden" in cases
            assert not app.query_one("#diff").display  # a draft has no diff: the cases get its room

            await pilot.press("down", "down")  # the crash: its error, not a value, is what it got
            await pilot.press("left")
            await pilot.pause(0.1)
            assert app.selected_task == "T/crash"
            assert "TypeError" in text_of(app, "cases")

    asyncio.run(scenario())


def test_filter_and_history(finished_run):
    async def scenario():
        app = replay_app(finished_run)
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: loaded(app))
            app.action_filter("given up")
            await pilot.pause(0.1)
            assert [o.id for o in app.query_one("#problems").options] == ["T/stuck", "T/crash"]
            assert app.selected_task == "T/stuck"
            await pilot.press("f", "f")  # cycles on: all, then pending (none here)
            await pilot.pause(0.1)
            assert app.status_filter == "pending" and app.query_one("#problems").option_count == 0
            app.action_filter(None)
            await pilot.pause(0.1)
            await pilot.press("h")
            await pilot.pause(0.1)
            assert type(app.screen).__name__ == "HistoryScreen"
            await pilot.press("escape")
            assert type(app.screen).__name__ == "Screen"

    asyncio.run(scenario())


def test_pause_holds_the_job_and_resume_finishes_it(tmp_path):
    async def scenario():
        app = RepairApp(mine_job(tmp_path, SlowWriter(SCRIPT)), "mine", Plan(tuple(TASKS), rounds=1))
        async with app.run_test(size=SIZE) as pilot:
            assert app.state.view.status("T/crash") == "pending"  # known from the plan, not reached yet
            await until(pilot, lambda: any(app.state.view.attempts.values()))
            await pilot.press("p")
            await until(pilot, app.job_console.waiting.is_set)
            held = len(stored(tmp_path))
            shown = sum(map(len, app.state.view.attempts.values()))
            await pilot.pause(1.0)
            assert len(stored(tmp_path)) == held and sum(map(len, app.state.view.attempts.values())) == shown
            assert "PAUSED" in str(app.query_one("#counters").content)
            await pilot.press("p", "h")  # the history screen stays open while events arrive
            await pilot.pause(0.3)
            await pilot.press("escape")
            await until(pilot, lambda: app.state.finished)
            assert len(stored(tmp_path)) == 7 > held
            assert [app.state.view.status(t) for t in TASKS] == ["passed", "repaired", "given up", "given up"]

    asyncio.run(scenario())


def test_quitting_mid_run_leaves_a_store_that_resumes_without_duplicates(tmp_path):
    first = SlowWriter(SCRIPT)

    async def scenario():
        app = RepairApp(mine_job(tmp_path, first), "mine")
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: len(app.state.view.order) >= 2)
            await pilot.press("q")
        assert app.job_console.done.is_set() and not app.state.finished

    asyncio.run(scenario())
    before = stored(tmp_path)
    assert 0 < len(before) < 7
    assert len(first.calls) == len(before)  # nothing the model wrote was thrown away
    second = ScriptedWriter(SCRIPT)
    with Store.open(tmp_path) as store, Pool(workers=2) as pool:
        store.select_run("mine")
        list(run_loop([problem(t) for t in TASKS], second, pool, store, LOOP))
    after = stored(tmp_path)
    assert len(after) == 7 and len({a.key for a in after}) == 7
    assert [a.id for a in after[: len(before)]] == [a.id for a in before]
    assert not {a.key for a in before} & {(t, k, s, r) for t, k, s, r in second.calls}


def test_the_mine_command_runs_under_the_app_with_a_tiny_model(tiny_model_dir, tmp_path):
    """`mine --tui`'s job, unchanged: model loading, the real writer, sandbox and store."""
    from mlx_repair.pipeline.mine import mine
    from mlx_repair.config import Config

    config = Config()
    config.run.model, config.run.limit, config.run.out_dir = str(tiny_model_dir), 2, str(tmp_path)
    config.sampling.max_tokens = 12
    config.mine.samples, config.mine.temperature = 1, 0.0  # one greedy draft, as evaluation does
    run_dir = tmp_path / "mine"

    async def scenario():
        app = RepairApp(lambda console: mine(config, run_dir, console), "mine")
        listener, written = app.job_console.writing, {}
        on_text = listener.on_text
        listener.on_text = lambda partial: (written.setdefault(partial.key, []).append(partial), on_text(partial))
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: app.state.finished, timeout=120)
            attempts = stored(run_dir)
            assert attempts and sorted(app.state.view.order) == sorted({a.task_id for a in attempts})
            # The real writer told the app's listener each output's text as it grew.
            for a in attempts:
                grown = written.get(a.key, [])
                assert [p.num_tokens for p in grown] == list(range(1, a.num_tokens + 1))
                assert not grown or grown[-1].text.startswith(a.completion)
            assert written and set(written) <= {a.key for a in attempts} and not app.state.view.writing
            await pilot.press("home")
            await pilot.pause(0.1)
            latest = [a for a in attempts if a.task_id == app.selected_task][-1]
            if latest.code.strip():
                assert shows_code(app, latest.code)
            else:  # a random model may write no code at all
                assert "no code could be extracted" in text_of(app, "code")
            assert "pairs in" in "\n".join(app.log_pane.lines)  # mine's own summary line

    asyncio.run(scenario())


def test_a_failing_job_is_reported_not_raised(tmp_path):
    def job(console):
        raise RuntimeError("model file is missing")

    async def scenario():
        app = RepairApp(job, "mine")
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, app.job_console.done.is_set)
            assert isinstance(app.job_error, RuntimeError)
            assert "job failed: model file is missing" in "\n".join(app.query_one("#log").lines)

    asyncio.run(scenario())


def test_a_fast_job_is_drawn_in_batches_not_per_event():
    def flood(console):
        for done in range(1, 20001):
            console.show(Progress("mine", done, 20000))

    async def scenario():
        app = RepairApp(flood, "mine")
        redraws = []
        async with app.run_test(size=SIZE) as pilot:
            original = app._refresh_status
            app._refresh_status = lambda: (redraws.append(1), original())
            await until(
                pilot,
                # progress is None until the first throttled redraw has applied an event
                lambda: app.job_console.done.is_set() and getattr(app.state.progress, "done", 0) == 20000,
            )
        assert len(redraws) < 200

    asyncio.run(scenario())


def test_opening_a_directory_without_a_store_is_a_one_line_error(tmp_path):
    with pytest.raises(UserError, match="no store.sqlite here"):
        open_run(tmp_path)


def attempt(kind, passed, sample=0, round=0, task_id="T/x", code="", id=None):
    status = "passed" if passed else "failed"
    return Attempt(task_id, kind, sample, round, "", code, code, "m", passed, status, "", id=id)


@pytest.mark.parametrize(
    "attempts, drafting, rounds, finished, status",
    [
        ([], False, 1, False, "pending"),
        ([], True, 1, False, "drafting"),
        ([attempt("draft", True)], False, 1, False, "passed"),
        ([attempt("draft", False)], False, 1, False, "failed"),  # its repair is still to come
        ([attempt("draft", False)], False, 0, False, "given up"),  # no repair rounds at all
        ([attempt("draft", False)], False, None, True, "given up"),  # the job ended
        ([attempt("draft", False), attempt("repair", True, round=1)], False, 2, False, "repaired"),
        ([attempt("draft", False), attempt("repair", False, round=1)], False, 2, False, "failed"),
        ([attempt("draft", False), attempt("repair", False, round=1), attempt("repair", False, round=2)],
         False, 2, False, "given up"),
        # Two draft chains: one still has a repair round to go.
        ([attempt("draft", False), attempt("draft", False, sample=1), attempt("repair", False, round=1)],
         False, 1, False, "failed"),
        # A passing resample is the baseline, not a repair.
        ([attempt("draft", False), attempt("resample", True, round=1)], False, None, True, "given up"),
    ],
)
def test_problem_status(attempts, drafting, rounds, finished, status):
    assert problem_status(attempts, drafting, rounds, finished) == status


def test_each_stage_has_its_own_problems_attempts_and_counters():
    """What `train` sends: evaluate the base, mine, evaluate the adapter on the same problems
    (whose store numbers its attempts from 1 again)."""
    state = RunState()
    for event in [
        StageStarted("eval", 2),
        Generating("draft", ("E/a", "E/b"), 2),
        AttemptFinished(attempt("draft", False, task_id="E/a", id=1)),
        AttemptFinished(attempt("draft", True, task_id="E/b", id=2)),
        StageFinished("eval", 1.0),
        StageStarted("mine", 1),
        AttemptFinished(attempt("draft", True, task_id="M/a", id=1)),
        PairSaved(None, {"solve": 1, "keep": 1}),
        StageStarted("eval", 2),
        AttemptFinished(attempt("draft", True, task_id="E/a", id=1)),
    ]:
        state.apply(event)
    base, mine, adapter = state.stages
    assert [state.label(i) for i in range(3)] == ["eval", "mine", "eval #2"]
    assert state.view is adapter and state.view_title() == "stage 3/3 · eval #2"
    assert base.order == ["E/a", "E/b"] and mine.order == ["M/a"] and adapter.order == ["E/a"]
    assert [a.passed for a in base.attempts["E/a"]] == [False]
    assert [a.passed for a in adapter.attempts["E/a"]] == [True]
    assert (base.counters().cold, base.counters().drafted) == (1, 2)
    assert (adapter.counters().cold, adapter.counters().drafted) == (1, 1)
    assert mine.counters().pairs["solve"] == 1 and base.counters().pairs["solve"] == 0
    # A finished stage waits for nothing: its failing draft has given up.
    assert base.status("E/a") == "given up" and not adapter.done


def test_the_view_follows_the_job_unless_the_user_went_back():
    state = RunState(Plan(("T/a", "T/b"), rounds=1))
    state.apply(StageStarted("mine", 2))  # names the stage its plan opened
    assert len(state.stages) == 1 and state.view.order == ["T/a", "T/b"] and state.view_title() == "mine"
    state.apply(Plan(("E/a",), rounds=1))  # a plan sent before its stage starts (as replay does)
    state.apply(StageStarted("eval", 1))
    assert len(state.stages) == 2 and state.viewed == 1 and state.view.order == ["E/a"]
    state.viewed = 0
    state.apply(StageStarted("eval", 1))
    assert state.viewed == 0 and state.view_title() == "stage 1/3 · mine"


def test_text_being_written_lasts_until_its_attempt_is_stored():
    state = RunState()
    state.apply(StageStarted("mine", 1))
    first, second = (PartialText("draft", "T/a", k, 0, "def f", 2) for k in (1, 0))
    assert state.apply(first) == "T/a" and state.apply(second) == "T/a"
    assert state.view.partial("T/a") == second  # the first chain's, of the two
    state.apply(AttemptFinished(attempt("draft", True, task_id="T/a", id=1)))
    assert state.view.partial("T/a") == first
    state.apply(StageFinished("mine", 1.0))  # a stopped job leaves no text being written
    assert state.view.partial("T/a") is None


def test_the_job_console_queues_only_the_newest_text_of_each_output():
    console = JobConsole()
    console.show(Generating("draft", ("T/a", "T/b"), 2))
    for n in range(1, 501):
        for task_id in ("T/a", "T/b"):
            console.writing.on_text(PartialText("draft", task_id, 0, 0, "x" * n, n))
    done = AttemptFinished(attempt("draft", True, task_id="T/a", id=1))
    console.show(done)
    events = console.drain()
    assert [type(e).__name__ for e in events] == ["Generating", "PartialText", "PartialText", "AttemptFinished"]
    assert [(e.task_id, e.num_tokens) for e in events[1:3]] == [("T/a", 500), ("T/b", 500)]
    console.writing.on_text(PartialText("draft", "T/b", 0, 0, "y", 501))
    assert console.drain() == [PartialText("draft", "T/b", 0, 0, "y", 501)]


def training_job(console):
    console.show(StageStarted("train", 40))
    console.show(TrainStep(0, math.nan, 0.0, 1.2, 2.6))  # the trainer's report before step 1
    for i in range(1, 41):
        validation = 2.5 - i * 0.03 if i % 10 == 0 else None
        console.show(TrainStep(i, 3.0 - i * 0.05 + (i % 3) * 0.1, 55.0 + i % 5, 1.7, validation))


# Snapshots of the main screens (pytest --snapshot-update rewrites them after a deliberate change).
def test_snapshot_main_screen(finished_run, snap_compare):
    async def ready(pilot):
        await until(pilot, lambda: loaded(pilot.app))
        await pilot.press("down")
        await pilot.pause(0.2)

    assert snap_compare(replay_app(finished_run), terminal_size=SIZE, run_before=ready)


def test_snapshot_small_terminal(finished_run, snap_compare):
    async def ready(pilot):
        await until(pilot, lambda: loaded(pilot.app))
        await pilot.press("down", "down", "left")
        await pilot.pause(0.2)

    assert snap_compare(replay_app(finished_run), terminal_size=(80, 24), run_before=ready)


def test_snapshot_history(finished_run, snap_compare):
    async def ready(pilot):
        await until(pilot, lambda: loaded(pilot.app))
        await pilot.press("down", "h")
        await pilot.pause(0.2)

    assert snap_compare(replay_app(finished_run), terminal_size=SIZE, run_before=ready)


def test_snapshot_training(snap_compare):
    async def ready(pilot):
        await until(pilot, lambda: len(pilot.app.state.train) == 41)

    assert snap_compare(RepairApp(training_job, "train"), terminal_size=SIZE, run_before=ready)


def test_training_pane_draws_each_early_report_without_crashing():
    """The trainer's first report has only a validation loss; then one step at a time
    (a slow CPU run redraws after every report). A real `train --tui` crashed here."""
    import threading

    go = threading.Event()

    def slow_training(console):
        console.show(StageStarted("train", 3))
        console.show(TrainStep(0, math.nan, 0.0, 1.2, 2.6))
        go.wait(10)
        for i in (1, 2):
            console.show(TrainStep(i, 2.0 - i * 0.1, 50.0, 1.3))
            go.wait(0.3)

    async def scenario():
        app = RepairApp(slow_training, "train")
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: len(app.state.train) == 1)
            await pilot.pause(0.3)
            go.set()
            await until(pilot, lambda: app.job_console.done.is_set() and len(app.state.train) == 3)
            await pilot.pause(0.3)
            assert app.is_running

    asyncio.run(scenario())


def test_each_stage_gets_a_fresh_list_and_s_shows_the_earlier_one():
    go = threading.Event()
    eval_code, mine_code = RIGHT, "def double(x):\n    return x + x\n"

    def two_stages(console):
        console.show(StageStarted("eval", 2))
        console.show(AttemptFinished(attempt("draft", True, task_id="E/one", code=eval_code, id=1)))
        console.show(AttemptFinished(attempt("draft", False, task_id="E/two", code=WRONG, id=2)))
        console.show(StageFinished("eval", 1.0))
        go.wait(10)
        console.show(StageStarted("mine", 1))
        console.show(AttemptFinished(attempt("draft", True, task_id="M/one", code=mine_code, id=1)))

    def listed(app):
        return [o.id for o in app.query_one("#problems").options]

    async def scenario():
        app = RepairApp(two_stages, "train")
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: listed(app) == ["E/one", "E/two"] and app.selected_task == "E/one")
            assert app.counters.border_title == "eval" and shows_code(app, eval_code)
            go.set()
            await until(pilot, lambda: listed(app) == ["M/one"] and app.selected_task == "M/one")
            assert app.counters.border_title == "stage 2/2 · mine"
            assert shows_code(app, mine_code)

            await pilot.press("s")  # back to the evaluation: its problems, attempts and counters
            await until(pilot, lambda: listed(app) == ["E/one", "E/two"] and app.selected_task == "E/one")
            assert app.counters.border_title == "stage 1/2 · eval"
            assert shows_code(app, eval_code)
            assert "cold          1/2" in str(app.counters.content)
            await pilot.press("down")
            await pilot.pause(0.1)
            assert shows_code(app, WRONG) and app.state.view.status("E/two") == "given up"

            await pilot.press("s")  # and on to the newest again
            await until(pilot, lambda: listed(app) == ["M/one"] and app.selected_task == "M/one")
            assert app.counters.border_title == "stage 2/2 · mine" and shows_code(app, mine_code)

    asyncio.run(scenario())


def test_the_text_being_written_shows_live_then_gives_way_to_the_attempt():
    finish = threading.Event()
    completion = "```python\n" + RIGHT + "```"

    def writing_job(console):
        console.show(StageStarted("mine", 1))
        console.show(Generating("draft", ("T/a",), 1))
        for n in range(1, len(completion) // 2):  # one character a token, stopped half-way
            console.writing.on_text(PartialText("draft", "T/a", 0, 0, completion[:n], n))
        finish.wait(10)
        console.show(AttemptFinished(attempt("draft", True, task_id="T/a", code=RIGHT, id=1)))

    def code_title(app):
        return app.query_one("#code", Pane).border_title

    async def scenario():
        app = RepairApp(writing_job, "mine")
        async with app.run_test(size=SIZE) as pilot:
            tokens = len(completion) // 2 - 1  # the newest text, however fast it came
            await until(pilot, lambda: code_title(app) == f"code · T/a · writing draft #0 … {tokens} tokens · 1/1")
            assert text_of(app, "code").rstrip() == completion[:tokens].rstrip()
            assert "not run yet" in text_of(app, "cases")
            finish.set()
            await until(pilot, lambda: "writing" not in code_title(app))
            assert code_title(app) == "code · T/a · draft #0 · passed · 1/1"
            assert shows_code(app, RIGHT) and "```" not in text_of(app, "code")

    asyncio.run(scenario())


def status_line(app):
    return str(app.query_one("#counters").content).splitlines()[0]


def test_a_job_says_it_loads_the_model_until_it_has_something_to_show():
    go_on = threading.Event()

    def loading_job(console):
        go_on.wait(10)
        raise RuntimeError("model file is missing")

    async def scenario():
        app = RepairApp(loading_job, "eval")
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: "loading the model" in status_line(app))
            assert app.problems.border_title == "problems · all 0"
            assert text_of(app, "code").startswith("loading the model …")
            go_on.set()
            await until(pilot, app.job_console.done.is_set)
            assert "loading" not in status_line(app) and "loading" not in text_of(app, "code")

    asyncio.run(scenario())


def test_the_app_shows_the_prompts_being_read_before_the_first_draft(tiny_model_dir, tmp_path):
    """`mine`'s real job on a tiny model, held inside its first model call once one prompt
    is read: the status line and the drafting problem's pane say how far the prefill is."""
    from mlx_repair.pipeline.mine import mine
    from mlx_repair.config import Config

    config = Config()
    config.run.model, config.run.limit, config.run.out_dir = str(tiny_model_dir), 3, str(tmp_path)
    config.sampling.max_tokens = 8
    go_on = threading.Event()

    async def scenario():
        app = RepairApp(lambda console: mine(config, tmp_path / "mine", console), "mine")
        listener = app.job_console.writing
        on_prefill = listener.on_prefill

        def held(prefilling):
            on_prefill(prefilling)
            if prefilling.done == 1:
                go_on.wait(60)

        listener.on_prefill = held
        async with app.run_test(size=SIZE) as pilot:
            try:
                await until(pilot, lambda: "prefilling 1/3 prompts" in status_line(app), timeout=120)
                assert not any(app.state.view.attempts.values())
                assert app.state.view.status(app.selected_task) == "drafting"
                code = text_of(app, "code")
                assert "drafts: prefilling 1/3 prompts (" in code and "drafting: no attempt yet" in code
            finally:
                go_on.set()
            await until(pilot, lambda: app.state.finished, timeout=120)
            assert "prefilling" not in status_line(app)

    asyncio.run(scenario())


def test_tui_on_a_store_with_an_unknown_run_names_the_runs_it_holds(finished_run, capsys):
    assert main(["tui", str(finished_run), "--run", "nope"]) == 2
    assert "no run named 'nope' (it holds mine)" in capsys.readouterr().err


@pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux for a real terminal")
def test_tui_draws_a_stored_run_in_a_real_terminal(finished_run, tmp_path):
    session = f"mlx-repair-test-{os.getpid()}"
    command = f"{sys.executable} -m mlx_repair.cli tui {finished_run} --run mine"
    env = {**os.environ, "TERM": "xterm-256color"}
    subprocess.run(["tmux", "new-session", "-d", "-s", session, "-x", "120", "-y", "40", command], check=True, env=env, cwd=Path(__file__).resolve().parents[1])
    try:
        screen = ""
        deadline = time.monotonic() + 60
        while "T/pass" not in screen and time.monotonic() < deadline:
            time.sleep(0.5)
            screen = subprocess.run(["tmux", "capture-pane", "-p", "-t", session], capture_output=True, text=True).stdout
        assert "T/pass" in screen, screen
        assert "mlx-repair — mine" in screen
        subprocess.run(["tmux", "send-keys", "-t", session, "q"], check=True)
        deadline = time.monotonic() + 20
        while subprocess.run(["tmux", "has-session", "-t", session], capture_output=True).returncode == 0:
            assert time.monotonic() < deadline, "q did not end the app"
            time.sleep(0.2)
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True)


@pytest.fixture(scope="module")
def selection_run_dir(tmp_path_factory):
    """An `eval --select` run: four crafted samples of two problems and the picks among them."""
    from test_selection import selection_run

    run_dir = tmp_path_factory.mktemp("select") / "run"
    selection, _, _ = selection_run(run_dir)
    return run_dir, selection


def eval_replay_app(run_dir):
    return RepairApp(lambda console: console.follow(store_events(run_dir, "eval", until=console.stopping)), "eval")


def selection_loaded(app, selection):
    picks = {p.task_id: p.picks for p in selection.problems}
    return app.state.view.picks == picks and sum(map(len, app.state.view.attempts.values())) == 8


def test_a_problems_candidates_are_listed_with_the_strategies_picks(selection_run_dir):
    """An `eval --select` run replayed: beside a draft, the problem's samples with their
    verdicts on the visible and on all cases, and which sample each strategy picked."""
    run_dir, selection = selection_run_dir

    async def scenario():
        app = eval_replay_app(run_dir)
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: selection_loaded(app, selection))
            assert app.selected_task == "T/a" and app.attempt_index == 3  # the newest draft, #3
            assert app.query_one("#candidates").display and not app.query_one("#diff").display
            assert "draft #3 · passed · picked by agreement" in app.code.border_title
            rows = {line.split()[1]: line for line in text_of(app, "candidates").splitlines() if line.split()[:1] == ["▶"]}
            assert list(rows) == ["3"]
            table = {row["sample"]: row for row in selection.problems[0].candidates}
            lines = [line.split() for line in text_of(app, "candidates").splitlines()[1:] if line.strip()]
            assert len(lines) == 4
            for words in lines:
                words = [w for w in words if w != "▶"]
                row = table[int(words[0])]
                assert words[2:4] == [row["visible"], row["all"]]
                assert " ".join(words[4:]) == ", ".join(row["picked_by"])
            await pilot.press("left", "left")  # the overfit draft: passes the visible cases only
            await pilot.pause(0.1)
            assert "draft #1 · failed · picked by visible" in app.code.border_title
            await pilot.press("h")
            await pilot.pause(0.1)
            assert type(app.screen).__name__ == "HistoryScreen"

    asyncio.run(scenario())


def test_snapshot_candidates(selection_run_dir, snap_compare):
    run_dir, selection = selection_run_dir

    async def ready(pilot):
        await until(pilot, lambda: selection_loaded(pilot.app, selection))
        await pilot.press("left", "left")
        await pilot.pause(0.2)

    assert snap_compare(eval_replay_app(run_dir), terminal_size=SIZE, run_before=ready)



@pytest.mark.parametrize(
    "prompt, lexer",
    [
        ("Complete the following Go function.\n\n```go\npackage main\n", "go"),
        ("package main\n\n// Double returns 2x.\nfunc Double(x int) int {\n", "go"),  # a base model's prompt
        ("Complete the following Python function.\n\n```python\ndef f(x):\n", "python"),
        ("def f(x):\n    \"\"\"Doc.\"\"\"\n", "python"),
        ("", "python"),
        (f"What is 1/2 + 1/3?\n\n{math_prompts.ANSWER_FORMAT}", "text"),
    ],
)
def test_the_code_pane_highlights_an_attempt_in_the_language_its_prompt_asked_for(prompt, lexer):
    from mlx_repair.tui import render

    shown = replace(attempt("draft", False, code="x = 1"), prompt=prompt)
    assert render.language_of(shown) == lexer
    assert render.code(shown).lexer.name.lower() == {"text": "text only"}.get(lexer, lexer)
