"""`eval` counts the outputs that ran to the token limit, the sign of a looping model."""

import json

from tiny_repairer import double_problems, write_problems

from mlx_repair.cli import main


def test_eval_counts_the_outputs_cut_at_the_token_limit(tiny_sampler_dir, tmp_path, monkeypatch, capsys):
    """The tiny model finishes its `double` well inside 40 tokens: that limit cuts none, 4 cuts all."""
    monkeypatch.chdir(tmp_path)
    problems = str(write_problems(tmp_path / "double.jsonl", double_problems(6)))
    common = ["eval", "--model", str(tiny_sampler_dir), "--problems", problems, "--split", "all", "--no-repair"]
    cut = {}
    for limit in (40, 4):
        assert main([*common, "--max-tokens", str(limit), "--json", f"{limit}.json"]) == 0
        cut[limit] = json.loads((tmp_path / f"{limit}.json").read_text())["cut_at_limit"]
        printed = capsys.readouterr().err
        assert ("outputs cut at the 4-token limit: draft 6 of 6" in printed) == (limit == 4)
    assert cut == {40: {"draft": [0, 6]}, 4: {"draft": [6, 6]}}
