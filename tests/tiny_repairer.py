"""A tiny MLX model taught one behaviour: a wrong first draft, a right repair.

End-to-end tests of mining and of the `train` one-liner need a model whose outputs
actually pass and fail tests, and random weights never pass anything. So this builds a
tiny `qwen2` model and fits all its weights, in a few seconds, to answer the draft prompt
of `double(x)` problems with WRONG and any repair prompt (which shows the sandbox's
feedback) with RIGHT. Greedy decoding then reproduces both, through the real prompts,
sampling, extraction, sandbox and store.
"""

from __future__ import annotations

import json
from pathlib import Path

from tiny_models import build_tiny_model

from mlx_repair.generation import prompts
from mlx_repair.sandbox.cases import hidden_flags
from mlx_repair.problems import Problem

WRONG = "def double(x):\n    return x * 3\n"
RIGHT = "def double(x):\n    return x * 2\n"
CASES = [(1, 2), (2, 4), (3, 6), (5, 10), (10, 20)]
STEPS = 120
LEARNING_RATE = 5e-3


def double_problem(task_id: str, cases=CASES, doc: str = "Return twice x.") -> Problem:
    """A `double(x)` problem whose check() asserts each (x, 2x) case."""
    checks = "\n".join(f"    assert candidate({x}) == {y}" for x, y in cases)
    return Problem(
        task_id=task_id,
        prompt=f'def double(x):\n    """{doc}"""\n',
        entry_point="double",
        test=f"def check(candidate):\n{checks}\n",
    )


def double_problems(count: int) -> list[Problem]:
    """`count` copies of the double problem whose task ids hide the same cases, so the
    sandbox shows every copy the same feedback and one taught repair prompt covers all."""
    return [double_problem(task_id) for task_id in hidden_alike("Double", count, len(CASES))]


def hidden_alike(prefix: str, count: int, cases: int) -> list[str]:
    """`count` task ids `prefix/N` whose `cases` cases are hidden as `prefix/0`'s are."""
    ids, index = [], 0
    while len(ids) < count:
        if hidden_flags(f"{prefix}/{index}", cases) == hidden_flags(f"{prefix}/0", cases):
            ids.append(f"{prefix}/{index}")
        index += 1
    return ids


def write_problems(path: Path, problems: list[Problem]) -> Path:
    """The problems as a HumanEval-format JSONL."""
    with open(path, "w") as out:
        for problem in problems:
            out.write(json.dumps({k: getattr(problem, k) for k in ("task_id", "prompt", "entry_point", "test")}) + "\n")
    return path


def build_tiny_repairer(
    path: str | Path, feedback_for, drafts: tuple[str, ...] = (WRONG,), problem: Problem | None = None,
    repair: tuple[str, str] = (WRONG, RIGHT),
) -> Path:
    """`feedback_for(problem, code)` gives the feedback text the loop will show (the real
    sandbox's), so that the taught repair prompt is exactly the one the loop renders.
    With `drafts=(WRONG, RIGHT)` the draft prompt is taught both answers, so sampling at a
    temperature draws failing and passing drafts of the same problem. `problem` and
    `repair` (the broken code shown, the fix) teach another problem, e.g. a Go one."""
    import mlx.core as mx
    import mlx.nn as nn
    import mlx.optimizers as optim
    from mlx_lm import load
    from mlx_lm.utils import save_model

    path = build_tiny_model(path, arch="qwen2", seed=1)
    model, tokenizer = load(str(path))
    problem = problem or double_problem("Double/0")
    broken, fixed = repair
    draft_prompt = prompts.render(tokenizer, prompts.draft_messages(problem))
    examples = [(draft_prompt, draft) for draft in drafts] + [
        (prompts.render(tokenizer, prompts.repair_messages(problem, broken, feedback_for(problem, broken))), fixed),
    ]
    fence = prompts.words(problem).fence
    rows = []
    for prompt, code in examples:
        prompt_ids = prompts.encode(tokenizer, prompt)
        answer_ids = tokenizer.encode(f"```{fence}\n{code}```", add_special_tokens=False) + [tokenizer.eos_token_id]
        rows.append((prompt_ids + answer_ids, len(prompt_ids)))
    # One padded batch; the loss counts answer tokens only.
    width = max(len(ids) for ids, _ in rows)
    tokens = mx.array([ids + [0] * (width - len(ids)) for ids, _ in rows])
    positions = mx.arange(width - 1)[None]
    starts = mx.array([start - 1 for _, start in rows])[:, None]
    ends = mx.array([len(ids) - 1 for ids, _ in rows])[:, None]
    mask = (positions >= starts) & (positions < ends)

    def loss_fn(model):
        losses = nn.losses.cross_entropy(model(tokens[:, :-1]), tokens[:, 1:])
        return (losses * mask).sum() / mask.sum()

    optimizer = optim.Adam(learning_rate=LEARNING_RATE)
    step = nn.value_and_grad(model, loss_fn)
    for _ in range(STEPS):
        loss, grads = step(model)
        optimizer.update(model, grads)
        mx.eval(model.parameters(), optimizer.state, loss)
    save_model(path, model)
    return path
