"""The model side of the loop: requests in, extracted code out, batched on MLX.

Requests that share a prompt (the n drafts of one problem) are sent as one prompt with
n samples, so the prompt is prefilled once; everything else goes to the model together,
as many sequences per step as the batch holds. The drafts' processed prompts are kept for
the stage's later requests: a resample asks with the same prompt, and a repair prompt
starts with the same system turn and problem, so only the rest of it is processed.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Iterator

from mlx_lm.models.cache import LRUPromptCache

from mlx_repair.config import RepairSection
from mlx_repair.generation import prompts
from mlx_repair.generation.extract import extract_code
from mlx_repair.generation.stops import stop_check
from mlx_repair.events import PartialText, Prefilling, WritingListener
from mlx_repair.mining.loop import Output, Request
from mlx_repair.generation.sampling import Prefixes, SamplingConfig, SamplingStats, sample

# The second model call (a repair or a resample) when drafts are greedy: greedy repair
# mostly writes the broken code back (benchmarks/results/measurement_notes.md), and
# sampling both at one temperature leaves the feedback as the only difference between them.
SECOND_TRY_TEMPERATURE = 0.8
# The drafts' prompt caches kept for repairs and resamples: a chunk of problems' worth
# (one HumanEval prompt is ~6 MB for Qwen 0.5B in float32, ~12 MB for SmolLM2-135M);
# the oldest go first.
KEPT_PROMPTS = 256
KEPT_BYTES = 1 << 30


@dataclass
class WriterSampling:
    draft: SamplingConfig = field(default_factory=SamplingConfig)
    repair: SamplingConfig = field(default_factory=SamplingConfig)
    resample: SamplingConfig | None = None

    @classmethod
    def from_draft(cls, draft: SamplingConfig) -> "WriterSampling":
        """Repairs and resamples decode at the drafts' temperature, or at
        SECOND_TRY_TEMPERATURE when drafts are greedy; each kind has its own seed."""
        temperature = draft.temperature or SECOND_TRY_TEMPERATURE
        return cls(
            draft=draft,
            repair=replace(draft, temperature=temperature, seed=draft.seed + 2),
            resample=replace(draft, temperature=temperature, seed=draft.seed + 1),
        )


class MLXWriter:
    """Writes code with an mlx-lm model; satisfies `loop.Writer`. A `listener` is told
    each output's text as it grows (the TUI shows it live)."""

    def __init__(
        self,
        model,
        tokenizer,
        name: str,
        sampling: WriterSampling,
        chat: bool | None = None,
        listener: WritingListener | None = None,
        repair_prompt: str = RepairSection.prompt,
    ):
        self.model = model
        self.tokenizer = tokenizer
        self.name = name
        self.sampling = sampling
        self.chat = prompts.is_chat_model(tokenizer) if chat is None else chat
        self.listener = listener
        self.repair_prompt = repair_prompt  # the mode of repair prompts (prompts.REPAIR_MODES)
        self.stats = SamplingStats()
        self.kept = LRUPromptCache(max_size=KEPT_PROMPTS, max_bytes=KEPT_BYTES)
        # Per request kind: prompts written, prompt tokens processed, and tokens taken from
        # a draft's kept prefix instead (what prefix reuse saves repairs and resamples).
        self.prompt_tokens: dict[str, dict[str, int]] = {}

    def sampling_for(self, kind: str) -> dict:
        return asdict(self._config(kind))

    def _config(self, kind: str) -> SamplingConfig:
        config = getattr(self.sampling, kind)
        if config is None:
            raise ValueError(f"no sampling settings for {kind!r} requests")
        return config

    def prompt_text(self, request: Request) -> str:
        if request.kind == "repair":
            broken = request.broken
            return prompts.repair_prompt(
                self.tokenizer, request.problem, broken.code, broken.feedback, chat=self.chat, mode=self.repair_prompt
            )
        return prompts.draft_prompt(self.tokenizer, request.problem, chat=self.chat)

    def write(self, requests: list[Request]) -> Iterator[Output]:
        """Outputs in the order they finish. All requests must be of one kind."""
        kinds = {r.kind for r in requests}
        if len(kinds) != 1:
            raise ValueError(f"one kind of request per call, got {sorted(kinds)}")
        kind = kinds.pop()
        groups = _group_by_prompt([(self.prompt_text(r), r) for r in requests])
        # Samples per prompt are uniform except after a resumed crash; then go one by one.
        sizes = {len(members) for _, members in groups}
        if len(sizes) > 1:
            groups = [(text, [member]) for text, members in groups for member in members]
        n = len(groups[0][1])
        stops = [stop_check(members[0].problem, self.chat) for _, members in groups]
        samples = sample(
            self.model,
            self.tokenizer,
            [prompts.encode(self.tokenizer, text) for text, _ in groups],
            n=n,
            config=self._config(kind),
            stops=stops,
            stats=self.stats,
            on_text=self._on_text(groups),
            on_prefill=self._on_prefill(kind, len(groups)),
            prefixes=Prefixes(self.kept, keep=kind == "draft"),  # later prompts start like a draft's
        )
        before = self.stats.prompt_tokens, self.stats.reused_tokens
        try:
            for result in samples:
                text, members = groups[result.prompt_index]
                request = members[result.sample_index]
                yield Output(
                    request=request,
                    prompt=text,
                    completion=result.text,
                    code=extract_code(result.text, request.problem),
                    num_tokens=result.num_tokens,
                    logprob=result.mean_logprob,
                )
        finally:
            tally = self.prompt_tokens.setdefault(kind, {"prompts": 0, "processed": 0, "reused": 0})
            tally["prompts"] += len(groups)
            tally["processed"] += self.stats.prompt_tokens - before[0]
            tally["reused"] += self.stats.reused_tokens - before[1]

    def _on_text(self, groups: list[tuple[str, list[Request]]]):
        """`sample`'s per-token callback, telling the listener which request the text is
        for; None without a listener, so that sampling does no extra work."""
        if self.listener is None:
            return None
        listener = self.listener

        def on_text(prompt_index: int, sample_index: int, text: str, num_tokens: int) -> None:
            request = groups[prompt_index][1][sample_index]
            listener.on_text(PartialText(
                request.kind, request.problem.task_id, request.sample_index, request.round, text, num_tokens
            ))

        return on_text

    def _on_prefill(self, kind: str, total: int):
        """`sample`'s per-prompt callback, as `Prefilling` for the listener (None without one)."""
        if self.listener is None:
            return None
        listener = self.listener
        return lambda done, tokens: listener.on_prefill(Prefilling(kind, done, total, tokens))


def _group_by_prompt(items: list[tuple[str, Request]]) -> list[tuple[str, list[Request]]]:
    groups: dict[str, list[Request]] = {}
    for text, request in items:
        groups.setdefault(text, []).append(request)
    return list(groups.items())
