"""The critic: AUROC (pure), the critic strategy's pick, and critics trained on a tiny model
with a planted signal (tiny_critic.py) through the real store, MLX and the CLI."""

import io
import json
import math

import pytest

from mlx_repair.cli import main
from mlx_repair.config import Config
from mlx_repair.console import Console
from mlx_repair.evaluation.selection import Candidate, choose, critic_line, select_samples, selection_markdown
from mlx_repair.evaluation.stats import auroc, within_group_auroc
from mlx_repair.mining.store import Store
from mlx_repair.pipeline.critic import train_critic_job
from mlx_repair.pipeline.stages import problems_for
from mlx_repair.training.critic import CRITIC_FILE, CriticConfig, constant_loss, last_states, load_critic
from mlx_repair.training.manifest import MANIFEST_FILE
from tiny_critic import planted_problem_file, planted_store
from tiny_repairer import double_problems, write_problems

PROBLEMS = 60  # 26 on the train side, 34 on the eval side
SAMPLES = 6


def test_auroc_is_the_chance_a_passing_sample_outranks_a_failing_one():
    assert auroc([0.1, 0.4, 0.35, 0.8], [False, False, True, True]) == 0.75
    assert auroc([0.9, 0.8, 0.1], [True, True, False]) == 1.0
    assert auroc([0.1, 0.8, 0.9], [True, False, False]) == 0.0
    assert auroc([0.5, 0.5, 0.5, 0.5], [True, False, True, False]) == 0.5  # ties count half
    assert auroc([0.2, 0.7, 0.7], [False, True, False]) == 0.75
    assert auroc([0.3, 0.9], [True, True]) is None  # one label: nothing to rank
    with pytest.raises(ValueError):
        auroc([0.1], [True, False])


def test_a_score_that_knows_only_which_problems_are_hard_ranks_at_chance_within_a_problem():
    # The easy problem's samples all score 0.9, the hard one's 0.1: nothing about which
    # sample of a problem passes, which is all that choosing among them needs.
    easy = ([0.9, 0.9, 0.9, 0.9], [True, True, True, False])
    hard = ([0.1, 0.1, 0.1, 0.1], [True, False, False, False])
    assert auroc(easy[0] + hard[0], easy[1] + hard[1]) == 0.75  # over all samples it looks like a critic
    assert within_group_auroc([easy, hard]) == (0.5, 2)


def test_within_group_auroc_averages_the_problems_that_hold_both_labels():
    on_top = ([0.2, 0.8, 0.5], [False, True, False])  # 1.0
    at_the_bottom = ([0.9, 0.1], [False, True])  # 0.0
    one_label = ([0.3, 0.4], [True, True])  # nothing to rank: left out
    assert within_group_auroc([on_top, at_the_bottom, one_label]) == (0.5, 2)
    assert within_group_auroc([one_label]) == (None, 0)


def test_the_critic_line_says_how_it_ranks_within_a_problem_when_that_was_measured():
    measured = {"auroc": 0.75, "samples": 8, "passed": 4, "within_problem_auroc": 0.5, "problems_with_both": 2}
    assert critic_line(measured) == (
        "critic AUROC 0.750 on 8 samples (4 passing, 4 failing); within a problem 0.500 "
        "(mean over the 2 problems with both labels: what selection uses)"
    )
    assert "no problem has both labels" in critic_line(measured | {"within_problem_auroc": None, "problems_with_both": 0})
    older = {"auroc": 0.75, "samples": 8, "passed": 4}  # a result written before it was measured
    assert critic_line(older) == "critic AUROC 0.750 on 8 samples (4 passing, 4 failing)"


def test_the_critic_strategy_picks_the_highest_score_whatever_the_visible_cases_say():
    candidates = [
        Candidate(0, -0.1, True, score=0.2),
        Candidate(1, -0.9, False, score=0.9),
        Candidate(2, -0.5, True, score=0.9),  # ties with 1: the more likely wins
        Candidate(3, -0.01, True, score=None),
    ]
    assert choose(candidates, ("first", "visible", "critic")) == {"first": 0, "visible": 3, "critic": 2}


@pytest.mark.parametrize("arch", ["qwen2", "qwen3_5"])
def test_samples_of_one_problem_read_their_common_start_once_with_the_same_result(arch, tiny_model_dir, tiny_qwen35_dir):
    import mlx.core as mx
    from mlx_lm import load

    model, tokenizer = load(str(tiny_model_dir if arch == "qwen2" else tiny_qwen35_dir))
    start = tokenizer.encode("def shift(x):\n    return x")
    prompts = [start + tokenizer.encode(end) for end in (" + 1\n", " - 1  # no\n", " + 1\n")]
    backbone = getattr(model, "language_model", model).model
    for logits, forward in ((False, backbone), (True, model)):
        alone = [forward(mx.array([ids]))[0, -1] for ids in prompts]
        for shared, whole in zip(last_states(model, prompts, logits=logits), alone):
            assert mx.allclose(shared, whole, atol=1e-4).item()
    one = prompts[:1]  # alone, a prompt's start is all but its last token
    assert mx.allclose(last_states(model, one)[0], backbone(mx.array(one))[0, -1], atol=1e-4).item()


@pytest.fixture(scope="module")
def planted(tmp_path_factory, tiny_model_dir):
    """A config on the planted problems with the tiny model, a store of samples of every
    problem (train and eval side: the critic must read the train side's only) and one of
    the eval side's samples."""
    root = tmp_path_factory.mktemp("planted")
    config = Config()
    config.run.model, config.run.problems = str(tiny_model_dir), str(planted_problem_file(root / "planted.jsonl", PROBLEMS))
    train, _ = problems_for(config, "train")
    evals, _ = problems_for(config, "eval")
    everything = planted_store(root / "train", train + evals, SAMPLES, seed=1)
    return config, everything, planted_store(root / "eval", evals, SAMPLES, seed=2), evals


def critic_on_eval(critic_dir, eval_dir, problems):
    """The critic's selection among the eval side's samples (no sandbox: no agreement)."""
    with Store.open(eval_dir) as store:
        store.select_run("eval")
        return select_samples(problems, store, None, ("first", "critic"), load_critic(critic_dir).scores)


@pytest.mark.parametrize("kind", ["head", "lora"])
def test_a_critic_learns_a_planted_signal_and_ranks_the_eval_side_by_it(planted, kind, tmp_path):
    config, train_dir, eval_dir, evals = planted
    out = tmp_path / kind
    printed = io.StringIO()
    train_critic_job(config, [str(train_dir)], CriticConfig(kind=kind, iters=None if kind == "head" else 300), out, Console(printed))
    manifest = json.loads((out / MANIFEST_FILE).read_text())
    assert json.loads((out / CRITIC_FILE).read_text())["kind"] == kind
    assert manifest["critic"]["valid_auroc"] > 0.9 and "validation AUROC" in printed.getvalue()
    # The planted signal is in each sample, so it ranks one problem's samples too.
    assert manifest["critic"]["valid_within_problem_auroc"] > 0.9 and manifest["critic"]["valid_problems_with_both"] > 0
    assert "; within a problem " in printed.getvalue()
    assert f"{len(evals) * SAMPLES} samples of problems not on the train side" in printed.getvalue()
    assert not set(manifest["critic"]["split"]["train"]) & {p.task_id for p in evals}  # eval side never trains it
    selection = critic_on_eval(out, eval_dir, evals)
    assert selection.critic["auroc"] > 0.9 and selection.critic["samples"] == len(evals) * SAMPLES
    assert selection.critic["within_problem_auroc"] > 0.9
    results = {r.strategy: r for r in selection.results}
    assert results["critic"].passed > results["first"].passed and results["critic"].broken == []
    assert any(line.startswith("critic AUROC ") for line in selection_markdown(selection.to_dict(), kind))  # the report
    if kind == "head":  # a planted signal beats always guessing the pass rate
        assert manifest["metrics"]["best_val_loss"] < manifest["metrics"]["constant_val_loss"]
        assert "always guessing the training side's pass rate scores" in printed.getvalue()


def test_the_constant_guess_loss_is_the_cross_entropy_of_the_training_pass_rate():
    assert constant_loss([True, False], [True, True, False]) == pytest.approx(math.log(2))
    # guessing 3/4 on a side that passes 1 in 4: -(1/4 log 3/4 + 3/4 log 1/4)
    assert constant_loss([True, True, True, False], [True, False, False, False]) == pytest.approx(
        -(0.25 * math.log(0.75) + 0.75 * math.log(0.25)))
    assert math.isfinite(constant_loss([True], [False]))  # a one-label training side stays finite


def test_a_head_critic_reads_each_sample_once_and_resumes_from_its_cache(planted, tmp_path):
    config, train_dir, _, _ = planted
    printed = []
    for _ in range(2):
        stream = io.StringIO()
        train_critic_job(config, [str(train_dir)], CriticConfig(iters=50), tmp_path / "head", Console(stream))
        printed.append(stream.getvalue())
    assert "critic: read " in printed[0] and "read before" not in printed[0]
    assert "samples read before, 0 to read" in printed[1] and "critic: read " not in printed[1]


def test_a_store_with_one_label_fails_in_one_line(planted, tmp_path, capsys):
    config, _, _, _ = planted
    train, _ = problems_for(config, "train")
    failing = planted_store(tmp_path / "failing", train, 2, passed=lambda problem, k: False)
    args = ["train-critic", str(failing), "--model", config.run.model, "--problems", config.run.problems, "--out", str(tmp_path / "c")]
    assert main(args) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("mlx-repair train-critic: error: all ") and "samples failed" in error and "\n" not in error
    evals, _ = problems_for(config, "eval")
    eval_only = planted_store(tmp_path / "eval-only", evals, 2)
    assert main([*args[:1], str(eval_only), *args[2:]]) == 2
    assert "no judged sample of a train-side problem" in capsys.readouterr().err


def test_eval_select_critic_without_a_critic_fails_in_one_line(capsys):
    assert main(["eval", "--samples", "2", "--temperature", "0.8", "--select", "critic"]) == 2
    assert capsys.readouterr().err.strip() == (
        "mlx-repair eval: error: selection by critic needs a critic: give --critic DIR "
        "(a folder `mlx-repair train-critic` wrote)"
    )


def test_eval_selects_by_a_critic_end_to_end(tiny_sampler_dir, tmp_path, monkeypatch, capsys):
    """Drafts of a tiny model that writes `double` right or wrong: the train side's label a
    critic (`train-critic`), which `eval --select all --critic` then uses on the eval side."""
    monkeypatch.chdir(tmp_path)
    problems = str(write_problems(tmp_path / "double.jsonl", double_problems(12)))
    model = ["--model", str(tiny_sampler_dir), "--problems", problems]
    sampling = [*model, "--no-repair", "--samples", "4", "--temperature", "1.0", "--max-tokens", "40"]
    assert main(["eval", *sampling, "--split", "train", "--run-dir", "train-run"]) == 0
    assert main(["train-critic", "train-run", *model, "--out", "critic"]) == 0
    assert main(["eval", *sampling, "--select", "all", "--critic", "critic", "--run-dir", "eval-run", "--json", "result.json"]) == 0
    result = json.loads((tmp_path / "result.json").read_text())
    selection, metrics = result["selection"], result["metrics"]
    assert [r["strategy"] for r in selection["results"]] == ["first", "visible", "agreement", "critic", "oracle"]
    # The plumbing: every candidate scored, the critic's pick among them, its AUROC reported.
    # (How well a critic ranks is the planted-signal test's: here the train side holds 3
    # distinct samples, and which way their standardised features tip the eval side's
    # ranking changed with float rounding from one machine or batch layout to the next.)
    critic = selection["critic"]
    assert critic["samples"] == 4 * len(selection["problems"]) and 0 <= critic["within_problem_auroc"] <= 1
    for problem in selection["problems"]:
        scores = [row["critic"] for row in problem["candidates"]]
        assert scores[problem["picks"]["critic"]] == max(scores)
    assert metrics["critic_pass@1"] <= metrics["pass@4"]
    assert all(row["critic"] is not None for p in selection["problems"] for row in p["candidates"])
    printed = capsys.readouterr()
    assert "critic AUROC" in printed.err and "critic: critic\n" in printed.out  # train-critic's folder, on stdout
    assert f"critic: read the samples of {len(selection['problems'])}/{len(selection['problems'])} problems" in printed.err


def test_the_critic_asks_about_a_go_sample_in_go_words():
    from mlx_repair.generation.go_prompts import SYSTEM as GO_SYSTEM
    from mlx_repair.problems import Problem
    from mlx_repair.training.critic import critic_messages

    problem = Problem("Go/0", "package main\n\nfunc Double(x int) int {\n", "Double", "", language="go")
    system, user = critic_messages(problem, "func Double(x int) int { return 2 * x }")
    assert system["content"] == GO_SYSTEM
    assert "A Go function" in user["content"] and user["content"].count("```go\n") == 2
    assert "python" not in user["content"].lower()
