"""`mlx-repair train` end to end on a tiny real model: evaluate, mine, train, evaluate, report."""

import json

from tiny_repairer import double_problems, write_problems

from mlx_repair.cli import main


def test_train_one_liner_end_to_end(tiny_repairer_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    problems = write_problems(tmp_path / "double.jsonl", double_problems(8))
    out = tmp_path / "adapter"
    args = [
        "train", "--model", str(tiny_repairer_dir), "--problems", str(problems), "--preset", "default",
        "--iters", "3", "--batch-size", "1", "--max-tokens", "40", "--min-pairs", "1", "--out", str(out),
        "--control", "garbage", "--samples", "1", "--rounds", "1",
    ]
    assert main(args) == 0
    printed = capsys.readouterr()
    assert f"adapter: {out}\nreport:  {out / 'report.md'}" in printed.out
    assert "preset default (asked for)" in printed.err
    assert f"loading {tiny_repairer_dir}\n" in printed.err and f"loading {tiny_repairer_dir} with adapter {out}\n" in printed.err
    # The tiny model's repairs always pass, so there is no garbage to train the control on:
    # the run says so and goes on without it.
    assert "no control adapter trained: garbage pairs to train on: 0," in printed.err
    assert not out.with_name(out.name + "-control-garbage").exists()

    base = json.loads((out / "eval-base.json").read_text())
    adapter = json.loads((out / "eval-adapter.json").read_text())
    assert base["n"] == adapter["n"] == len(base["split"]["eval"]) > 0
    # The taught behaviour, measured through the real sandbox: wrong drafts, right repairs.
    assert base["metrics"]["cold_pass@1"] == 0.0 and base["metrics"]["repair_pass@1"] == 1.0
    assert adapter["adapter"] == str(out)
    # Repair prompts start from their drafts' kept prefixes (the system turn and problem).
    repairs = base["prompt_tokens"]["repair"]
    assert repairs["prompts"] >= 1 and repairs["reused"] > 0 and repairs["processed"] > 0
    assert "repair prompts: " in printed.err and "taken from a kept earlier prompt" in printed.err

    manifest = json.loads((out / "manifest.json").read_text())
    train_tasks = set(base["split"]["train"])
    assert not train_tasks & set(base["split"]["eval"])
    assert set(manifest["split"]["train"]) == train_tasks  # mined on the train side only
    for name in ("adapters.safetensors", "adapter_config.json", "report.json", "loss.png", "metrics.png"):
        assert (out / name).is_file(), name

    report = json.loads((out / "report.json").read_text())
    assert report["pair_counts"]["repair"] == {"self-repair": len(train_tasks)}
    assert report["n"] == base["n"]
    assert [s["stage"] for s in report["stages"]] == ["evaluate base", "mine pairs", "train adapter", "evaluate adapter"]
    markdown = (out / "report.md").read_text()
    assert f"n={base['n']}" in markdown and "resampling, same budget" in markdown
    assert "(Python), eval side of the split" in markdown  # the report names the language
    # Every output counted, none ran to the token limit (the tiny model stops on its own).
    written = [sum(total for _, total in result["cut_at_limit"].values()) for result in (base, adapter)]
    assert min(written) >= 2 * base["n"]  # drafts, and a repair and a resample of each failing one
    assert f"| outputs cut at the token limit (a looping model's) | 0 of {written[0]} | 0 of {written[1]} |" in markdown
    # The goal that matters: the adapter's repair turn against the base's resampling.
    cross = report["comparisons"]["adapter"][-1]
    assert cross["metric"] == "resample_pass@2 (A) -> repair_pass@1 (B)" and cross["n"] == base["n"]
    assert "adapter, resample_pass@2 (A) -> repair_pass@1 (B): " in markdown
    # The goal, stated whichever way it falls: the base already repairs every problem, so
    # the adapter's repair turn cannot beat it.
    goal = report["goal"]
    assert [part["met"] for part in goal["parts"]][0] is False and len(goal["parts"]) == 3
    assert "## The goal" in markdown and goal["verdict"] in markdown and goal["verdict"] in printed.err
    assert "1. its repair pass@1 beats the base's (p < 0.05): NOT met (100.0% -> " in printed.err

    # Re-running the same command resumes every stage: nothing new is generated or trained.
    assert main(args) == 0
    resumed = json.loads((out / "eval-adapter.json").read_text())
    assert resumed["generated_tokens"] == 0 and resumed["prompt_tokens"] == {}


def test_train_on_a_given_mining_run_adds_its_repair_rounds(tiny_repairer_dir, tmp_path, monkeypatch):
    """`train --mine-dir` mines in a run `mine` started: its drafts are read back, and with
    --rounds raised only the repairs are written; the tiny model's repairs all pass."""
    import sqlite3

    monkeypatch.chdir(tmp_path)
    problems = write_problems(tmp_path / "double.jsonl", double_problems(8))
    mine_dir, out = tmp_path / "mined", tmp_path / "adapter"
    common = ["--model", str(tiny_repairer_dir), "--problems", str(problems), "--max-tokens", "40", "--samples", "1"]
    assert main(["mine", *common, "--rounds", "0", "--run-dir", str(mine_dir)]) == 0

    def attempts():
        db = sqlite3.connect(mine_dir / "store.sqlite")
        try:
            return db.execute("SELECT id, kind, code FROM attempts ORDER BY id").fetchall()
        finally:
            db.close()

    drafts = attempts()
    assert {kind for _, kind, _ in drafts} == {"draft"}
    args = ["train", *common, "--preset", "default", "--iters", "2", "--batch-size", "1", "--min-pairs", "1",
            "--rounds", "1", "--mine-dir", str(mine_dir), "--out", str(out), "--weights", "last"]
    assert main(args) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["train_config"]["weights"] == "last" and manifest["metrics"]["adapter_step"] == 2
    after = attempts()
    assert after[: len(drafts)] == drafts and {kind for _, kind, _ in after[len(drafts):]} == {"repair"}
    report = json.loads((out / "report.json").read_text())
    assert report["pair_counts"]["repair"] == {"self-repair": len(drafts)}


def test_train_without_any_repair_pair_ends_with_an_honest_report(tiny_model_dir, tmp_path, monkeypatch, capsys):
    """A random model repairs nothing: the run finishes, says why no adapter exists, and
    what to try, instead of training on nothing or crashing."""
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "adapter"
    args = [
        "train", "--model", str(tiny_model_dir), "--problems", "humaneval", "--preset", "default",
        "--limit", "1", "--mine-limit", "2", "--max-tokens", "8", "--out", str(out),
    ]
    assert main(args) == 0
    report = (out / "report.md").read_text()
    assert "No adapter was trained" in report and "repair pairs to train on: 0," in report
    assert "repair 0" in report and "(`--mine-limit N`, `--preset default`; 2 were mined)" in report
    assert "`--samples 8`; this run drew 4" in report and "(`--rounds 1`: this run's drafts are kept" in report
    assert "cold pass@1" in report and "(n=1," in report
    assert not (out / "adapters.safetensors").exists()
    assert json.loads((out / "eval-base.json").read_text())["n"] == 1
    printed = capsys.readouterr().out
    assert "adapter:" not in printed and f"report:  {out / 'report.md'}" in printed  # no adapter to point at


def test_train_refuses_fewer_pairs_than_the_minimum(tiny_repairer_dir, tmp_path, monkeypatch, capsys):
    """Real repairs were mined, but fewer than --min-pairs: no adapter, and the report and
    the console say how many there were and what the minimum is."""
    monkeypatch.chdir(tmp_path)
    problems = write_problems(tmp_path / "double.jsonl", double_problems(8))
    out = tmp_path / "adapter"
    args = [
        "train", "--model", str(tiny_repairer_dir), "--problems", str(problems), "--preset", "default",
        "--max-tokens", "40", "--min-pairs", "50", "--out", str(out), "--samples", "1", "--rounds", "1",
    ]
    assert main(args) == 0
    report = (out / "report.md").read_text()
    mined = json.loads((out / "eval-base.json").read_text())["split"]["train"]
    assert "No adapter was trained" in report and "fewer than the minimum of 50" in report
    assert f"repair {len(mined)}" in report  # the mined counts are still reported
    # What to try comes from this run's settings: every train-side problem was mined, one
    # draft each, with a repair turn already.
    assert f"all {len(mined)} train-side problems were mined" in report and "`--samples 2`; this run drew 1" in report
    assert "--rounds 1" not in report and "`train.pairs_per_problem`, now 2" in report
    assert "| evaluate base |" in report and "| mine pairs |" in report
    assert "no adapter trained:" in capsys.readouterr().err
    assert not (out / "adapters.safetensors").exists()


def test_train_mines_resample_pairs_from_independent_drafts_and_trains_on_them(tiny_sampler_dir, tmp_path, monkeypatch, capsys):
    """The default mining: several drafts per problem at a temperature, no repair turn;
    a failing and a passing draft of one problem become a resample repair pair."""
    monkeypatch.chdir(tmp_path)
    problems = write_problems(tmp_path / "double.jsonl", double_problems(8))
    out = tmp_path / "adapter"
    args = [
        "train", "--model", str(tiny_sampler_dir), "--problems", str(problems), "--preset", "default",
        "--iters", "2", "--batch-size", "1", "--max-tokens", "40", "--min-pairs", "2", "--out", str(out),
        "--rounds", "0", "--samples", "4", "--temperature", "0.8",
    ]
    assert main(args) == 0
    report = json.loads((out / "report.json").read_text())
    repairs = report["pair_counts"]["repair"]
    assert set(repairs) == {"resample"} and repairs["resample"] >= 2
    assert f"repair {repairs['resample']} (resample {repairs['resample']})" in capsys.readouterr().err
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["data"]["counts"]["train"]["repair"]["resample"] >= 1
    records = [json.loads(line) for line in (out / "train.jsonl").read_text().splitlines()]
    resampled = [r for r in records if r["provenance"] == "resample"]
    assert resampled and all("return x * 2" in r["messages"][-1]["content"] for r in resampled)
    for record in resampled:  # the failing draft's test results, in the default (facts) prompt
        shown = record["messages"][1]["content"].split("An earlier attempt failed these tests:")[1]
        assert "Input:" in shown or "Error" in shown
        if not shown.lstrip().startswith("SyntaxError"):  # whose message quotes the line it is on
            assert "return x" not in shown  # no code of either draft
    assert (out / "adapters.safetensors").is_file()
    # the same mining, the preference objective: each record also holds a failing draft
    preferred = tmp_path / "preference"
    assert main([str(preferred) if a == str(out) else a for a in args] + ["--objective", "preference"]) == 0
    assert json.loads((preferred / "manifest.json").read_text())["train_config"]["objective"] == "preference"
    records = [json.loads(line) for line in (preferred / "train.jsonl").read_text().splitlines()]
    assert records and all("return x * 2" not in r["rejected"] for r in records)
    assert {r["kind"] for r in records} <= {"repair", "solve"}
