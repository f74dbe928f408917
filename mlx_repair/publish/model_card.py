"""The model card (README.md) of an exported adapter, from its manifest and report.

A card is where an adapter's claims travel without the run that made them, so it carries
the same honesty as the report: every rate with its n, the problems fixed and broken
with an exact McNemar p (the sign test with several samples per problem), the budget-matched resampling baseline, the garbage control (or
that it was not run), and how the training pairs were mined and checked. Numbers are
copied from report.json and manifest.json (shipped beside the card), never recomputed.
"""

from __future__ import annotations

from mlx_repair.evaluation.goal import GoalPart
from mlx_repair.evaluation.metrics import format_rate, metric_label
from mlx_repair.mining.pairing import format_kind_count
from mlx_repair.problems import subjects_named

WHERE = "path/to/this/folder"  # what the usage snippets call the export when no repo id is known
KIND_DESCRIPTIONS = {
    "repair": "failing draft + the failure shown to the model -> code that passes every test, hidden ones included",
    "keep": "passing code shown as passing -> the same code (so correct answers stay correct)",
    "solve": "problem -> passing code",
    "garbage": "control only: same-shape pairs whose \"fix\" fails",
}


def render_card(
    manifest: dict,
    report: dict | None,
    adapter_config: dict,
    fmt: str,
    base_id: str | None,
    location: str | None = None,
) -> str:
    """The card's markdown. base_id: the base model's hub id, if known; location: where
    the export will live (a hub repo id), for the usage snippets."""
    base = base_id or manifest.get("base_model", {}).get("spec") or adapter_config.get("model") or "the base model"
    kind = "DoRA" if adapter_config.get("fine_tune_type") == "dora" else "LoRA"
    sections = [
        _front_matter(fmt, base_id, kind, sorted(manifest.get("data", {}).get("languages", {}))),
        f"# {kind} adapter for {base}, trained by mlx-repair\n\n"
        f"{'Fused into the base weights: ' if fmt == 'fused' else ''}"
        f"A {kind} adapter trained with mlx-repair on {base}'s own failed solutions, each paired "
        "with code of the same problem by the same model (another draft, or its repair) that passed "
        "all of the problem's unit tests, including tests that were never shown to the model.",
        _base_section(manifest, base_id),
        _mining_section(manifest),
        _pairs_section(manifest, report),
        _evaluation_section(report),
        _training_section(manifest, adapter_config),
        _usage_section(fmt, base_id or base, location),
    ]
    return "\n\n".join(section for section in sections if section) + "\n"


def _front_matter(fmt: str, base_id: str | None, kind: str, languages: list[str]) -> str:
    """The hub's YAML metadata block, written by huggingface-hub's own ModelCardData; the
    training records' languages go in the tags (the hub's `language` is a spoken one)."""
    from huggingface_hub import ModelCardData

    data = ModelCardData(
        base_model=base_id,
        library_name="peft" if fmt == "peft" else "mlx",
        pipeline_tag="text-generation",
        tags=["mlx", "mlx-repair", kind.lower(), "code", "self-repair", *languages],
    )
    return f"---\n{data.to_yaml()}\n---"


def _base_section(manifest: dict, base_id: str | None) -> str:
    recorded = manifest.get("base_model", {})
    lines = ["## Base model", ""]
    if base_id:
        lines.append(f"- Hub id: `{base_id}`")
    if recorded.get("spec"):
        lines.append(f"- Trained on: `{recorded['spec']}` ({recorded.get('source', 'unknown source')})")
    for name, digest in recorded.get("weights_sha256", {}).items():
        lines.append(f"- `{name}` sha256: `{digest}`")
    if recorded.get("source") in ("packaged", "gguf"):
        lines.append(
            "- The base weights were dequantised from a GGUF file to float32; on the original "
            "hub weights the adapter's effect may differ slightly."
        )
    return "\n".join(lines) if len(lines) > 2 else ""


def _mining_section(manifest: dict) -> str:
    data = manifest.get("data", {})
    lines = [
        "## How the training pairs were mined",
        "",
        "The base model drafted solutions to problems on the *train* side of a split by task id, "
        "and each draft ran in a sandbox against the problem's tests. A repair record shows a failing "
        "draft's failure as the repair turn does (input, expected, got or the traceback) and answers "
        "with code of the same problem that passed all of the tests, including hidden ones the "
        "feedback never showed: another independent draft (provenance `resample`) or the model's own "
        "repair of that draft (`self-repair`). The evaluation problems were never mined or trained on.",
        "",
        "Kinds of training records:",
        "",
        *(f"- `{kind}`: {text}" for kind, text in KIND_DESCRIPTIONS.items()),
    ]
    split = manifest.get("split")
    if split:
        lines += [
            "",
            f"Problems: {manifest.get('problems', 'unknown set')}; {len(split['train'])} on the train side, "
            f"{len(split['eval'])} held out for evaluation (task ids hashed with seed {split['seed']!r}, "
            f"eval fraction {split['eval_fraction']}; the lists are in manifest.json).",
        ]
    languages = data.get("languages")
    if languages:
        by_language = ", ".join(f"{subjects_named([name])} {count}" for name, count in sorted(languages.items()))
        lines += ["", f"Training and validation records by language: {by_language}."]
    mix = data.get("mix") or {}
    if mix:
        settings = ", ".join(f"{key}={value}" for key, value in mix.items())
        lines += ["", f"Mixing settings: {settings}."]
    if data.get("sha256"):
        lines += ["", f"Training data sha256 (train.jsonl + valid.jsonl): `{data['sha256']}`."]
    return "\n".join(lines)


def _pairs_section(manifest: dict, report: dict | None) -> str:
    data = manifest.get("data", {})
    mined = (report or {}).get("pair_counts") or data.get("available") or {}
    counts = data.get("counts", {})
    kinds = sorted(set(mined) | set(counts.get("train", {})) | set(counts.get("valid", {})))
    if not kinds:
        return ""
    lines = ["## Pair counts", "", "| kind | mined | training records | validation records |", "| --- " * 4 + "|"]
    for kind in kinds:
        cells = [_count(side.get(kind)) for side in (mined, counts.get("train", {}), counts.get("valid", {}))]
        lines.append(f"| {kind} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _count(by_source: dict[str, int] | None) -> str:
    return "-" if by_source is None else format_kind_count(by_source)


def _evaluation_section(report: dict | None) -> str:
    if report is None:
        return (
            "## Evaluation\n\nThis adapter has not been evaluated (no report.json came with it). "
            "Measure it before trusting it: `mlx-repair eval --adapter PATH` on problems it was not trained on."
        )
    n = report["n"]
    systems = [("base", report["base"]), ("base + adapter", report["adapter"])]
    if report.get("control"):
        systems.append(("garbage control", report["control"]))
    lines = [
        "## Evaluation",
        "",
        f"On n={n} evaluation problems that were never mined or trained on.",
        "",
        "| metric | " + " | ".join(name for name, _ in systems) + " |",
        "| --- | " + " | ".join("---" for _ in systems) + " |",
    ]
    for key in report["base"]:
        cells = [format_rate(metrics.get(key), n) for _, metrics in systems]
        lines.append(f"| {metric_label(key)} | " + " | ".join(cells) + " |")
    lines += ["", *_comparison_table(report), "", _baseline_note(report), "", _control_note(report)]
    goal = _goal_lines(report)
    lines += ["", *goal] if goal else []
    return "\n".join(lines)


def _comparison_table(report: dict) -> list[str]:
    comparisons = report.get("comparisons", {})
    if any(c.get("fractional") for rows in comparisons.values() for c in rows):
        test = "exact sign test: with several samples per problem, a problem moved when its share of passing samples did"
    else:
        test = "exact McNemar test on the discordant problems"
    lines = [
        f"Problems that moved, against the base model ({test}):",
        "",
        "| system | metric | base -> system | fixed | broken | p |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for system, rows in comparisons.items():
        for c in rows:
            lines.append(
                f"| {system} | {_metric_label(c)} | "
                f"{100 * c['a']:.1f}% -> {100 * c['b']:.1f}% | {len(c['fixed'])} | {len(c['broken'])} | "
                f"{c['p_value']:.3g} |"
            )
    return lines


def _metric_label(comparison: dict) -> str:
    """A compared metric in words; a cross row sets the base's resampling against this
    system's repair turn."""
    a, b = comparison["metric_a"], comparison["metric_b"]
    return metric_label(a) if a == b else f"base's {metric_label(a)} -> this system's {metric_label(b)}"


def _goal_lines(report: dict) -> list[str]:
    """The goal's parts and verdict as the train report stated them."""
    goal = report.get("goal")
    if not goal:
        return []
    lines = ["The goal of training, as the run's report states it:", ""]
    lines += [f"- {GoalPart(**part).line()}" for part in goal["parts"]]
    return lines + ["", f"**{goal['verdict']}**"]


def _baseline_note(report: dict) -> str:
    adapter = report["adapter"]
    repair, resample = adapter.get("repair_pass@1"), adapter.get("resample_pass@2")
    if repair is None or resample is None:
        return "The budget-matched baseline (resampling with the same number of model calls) was not measured."
    verdict = "beats" if repair > resample else "does not beat"
    return (
        f"Budget-matched baseline: with the adapter, one repair turn reaches {100 * repair:.1f}% and "
        f"plain resampling with the same number of model calls (pass@2) reaches {100 * resample:.1f}%; "
        f"repair {verdict} resampling here."
    )


def _control_note(report: dict) -> str:
    if not report.get("control"):
        return "Garbage control: not run (no same-shape garbage-trained adapter was evaluated)."
    return (
        "Garbage control: the same training on same-shape pairs whose fixes fail; a lift that the "
        "control also shows comes from the training format, not from the repairs."
    )


def _training_section(manifest: dict, adapter_config: dict) -> str:
    params = adapter_config.get("lora_parameters", {})
    train = manifest.get("train_config", {})
    metrics = manifest.get("metrics", {})
    rank, scale = params.get("rank"), params.get("scale")
    lines = [
        "## Training",
        "",
        f"- {adapter_config.get('fine_tune_type', 'lora')} on the last {adapter_config.get('num_layers')} blocks, "
        f"rank {rank}, mlx-lm scale {scale} (PEFT lora_alpha {rank * scale if rank and scale else '-'}), "
        f"dropout {params.get('dropout')}",
    ]
    if train:
        lines.append(
            f"- {metrics.get('iterations', train.get('iters'))} steps, batch {train.get('batch_size')}, "
            f"learning rate {train.get('learning_rate')}, seed {train.get('seed')}"
        )
    if metrics.get("final_val_loss") is not None:
        lines.append(f"- validation loss {metrics.get('initial_val_loss'):.3f} -> {metrics['final_val_loss']:.3f}")
    if metrics.get("train_seconds") is not None:
        lines.append(
            f"- {metrics['train_seconds'] / 60:.1f} min of training, "
            f"peak memory {metrics.get('peak_memory_gb', 0):.1f} GB"
        )
    versions = manifest.get("versions")
    if versions:
        lines.append("- " + ", ".join(f"{name} {version}" for name, version in versions.items()))
    return "\n".join(lines)


def _usage_section(fmt: str, base: str, repo: str | None) -> str:
    """How to run the export (from `repo` on the hub, else from its folder), and how to
    get and run the other adapter format."""
    where = repo or WHERE
    if fmt == "fused":
        return (
            "## How to use it\n\nThe adapter is merged into the weights: load this folder as a plain model.\n\n"
            f"```sh\nmlx_lm.generate --model {where} --prompt \"{PROMPT}\"\n```\n\n"
            "```python\nfrom transformers import AutoModelForCausalLM, AutoTokenizer\n\n"
            f'model = AutoModelForCausalLM.from_pretrained("{where}")\n'
            f'tokenizer = AutoTokenizer.from_pretrained("{where}")\n```'
        )
    if fmt == "mlx":
        here, other, there = _mlx_usage(base, WHERE, repo), "peft", _peft_usage(base, "PEFT_DIR")
    else:
        here, other, there = _peft_usage(base, where), "mlx", _mlx_usage(base, "MLX_DIR")
    return (
        f"## How to use it\n\nThis folder is the adapter in {_FORMAT_NAMES[fmt]} format.\n\n{here}\n\n"
        f"In {_FORMAT_NAMES[other]} format: from the adapter folder `mlx-repair train` wrote, "
        f"`mlx-repair export ADAPTER_DIR --format {other} --out {other.upper()}_DIR`, then\n\n{there}"
    )


_FORMAT_NAMES = {"mlx": "mlx-lm's", "peft": "PEFT's"}
PROMPT = "Write a function that reverses a string."


def _mlx_usage(base: str, folder: str, repo: str | None = None) -> str:
    # mlx-lm reads adapters from a local folder only: a hub repo is downloaded first.
    download = f"hf download {repo} --local-dir adapter\n" if repo else ""
    return (
        f"```sh\n{download}mlx_lm.generate --model {base} --adapter-path {'adapter' if repo else folder} "
        f"--prompt \"{PROMPT}\"\n```"
    )


def _peft_usage(base: str, where: str) -> str:
    return (
        "```python\nfrom peft import PeftModel\nfrom transformers import AutoModelForCausalLM, AutoTokenizer\n\n"
        f'base = AutoModelForCausalLM.from_pretrained("{base}")\n'
        f'model = PeftModel.from_pretrained(base, "{where}")\n'
        f'tokenizer = AutoTokenizer.from_pretrained("{base}")\n```'
    )
