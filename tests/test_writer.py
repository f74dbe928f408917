"""The writer on real tiny models: repairs and resamples start from their drafts' kept
prompt caches, process fewer prompt tokens, and write what they would have written
without them."""

import mlx_lm
import pytest

from mlx_repair.generation.sampling import SamplingConfig
from mlx_repair.generation.writer import MLXWriter, WriterSampling
from mlx_repair.mining.loop import Request
from mlx_repair.mining.store import Attempt
from mlx_repair.problems import load_problems

FEEDBACK = "Input: candidate([1, 2])\nExpected: 3\nGot: 2"


def greedy_writer(folder) -> MLXWriter:
    model, tokenizer = mlx_lm.load(str(folder))
    greedy = SamplingConfig(max_tokens=8)
    return MLXWriter(model, tokenizer, "tiny", WriterSampling(greedy, greedy, greedy))


def failed(output) -> Attempt:
    request = output.request
    return Attempt(
        request.problem.task_id, "draft", 0, 0, output.prompt, output.completion, output.code,
        "tiny", False, "failed", FEEDBACK,
    )


def written(writer: MLXWriter, requests: list[Request]) -> tuple[dict, int, int]:
    """Each request's completion by task, and the prompt tokens processed and reused."""
    processed, reused = writer.stats.prompt_tokens, writer.stats.reused_tokens
    completions = {o.request.problem.task_id: o.completion for o in writer.write(requests)}
    return completions, writer.stats.prompt_tokens - processed, writer.stats.reused_tokens - reused


@pytest.mark.parametrize("arch", ["qwen2", "qwen3_5"])
def test_repairs_and_resamples_reuse_their_drafts_prompts_and_write_the_same(arch, request):
    folder = request.getfixturevalue("tiny_model_dir" if arch == "qwen2" else "tiny_qwen35_dir")
    problems = load_problems("humaneval")[:3]
    writer = greedy_writer(folder)
    drafts = list(writer.write([Request(problem, "draft", 0, 0) for problem in problems]))
    repairs = [Request(o.request.problem, "repair", 0, 1, broken=failed(o)) for o in drafts]
    resamples = [Request(problem, "resample", 0, 1) for problem in problems]
    fresh = greedy_writer(folder)  # has written no draft, so keeps no prompt

    alone, alone_processed, alone_reused = written(fresh, resamples)
    again, processed, reused = written(writer, resamples)
    assert again == alone and alone_reused == 0
    # A resample's prompt is its draft's: only the last token is fed, by the first decoding step.
    assert processed == len(problems) and processed + reused == alone_processed

    alone, alone_processed, _ = written(fresh, repairs)
    repaired, processed, reused = written(writer, repairs)
    assert repaired == alone and processed + reused == alone_processed
    if arch == "qwen2":  # a plain KV cache is cut back to the system turn and problem they share
        assert reused > processed
    else:  # recurrent state cannot be cut back: a repair reuses nothing
        assert reused == 0
    # The writer tallies the same per kind of request (eval's result reports it).
    assert writer.prompt_tokens["repair"] == {"prompts": len(problems), "processed": processed, "reused": reused}
    assert set(writer.prompt_tokens) == {"draft", "resample", "repair"}
    assert set(fresh.prompt_tokens) == {"resample", "repair"}
    assert fresh.prompt_tokens["repair"]["processed"] == processed + reused
