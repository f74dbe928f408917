"""The repair prompt modes (`code`, `facts`, `explain`) on the same failing drafts, with the
same sampling settings and seed, beside an independent resample of each (the
budget-matched baseline): for each, how many second tries pass every case (hidden ones
included), how many write the failing code again, and the prompt and generated tokens.

The failing drafts come from a stored run (by default a `mine` run: train-side problems,
so choosing the default mode never looks at evaluation problems), at most
`--per-problem` of each problem. Each arm is written to the JSON as soon as it is done;
re-running the command skips the arms already there.

    .venv/bin/python benchmarks/repair_prompt_modes.py --store RUN_DIR --out results.json
"""

import argparse
import json
import time
from pathlib import Path

from mlx_repair.model import blas

print(blas.preload())  # before mlx.core is imported

from mlx_repair.config import DEFAULT_MODEL, REPAIR_MODES, Config  # noqa: E402
from mlx_repair.generation import prompts  # noqa: E402
from mlx_repair.mining.loop import Request  # noqa: E402
from mlx_repair.mining.store import Store  # noqa: E402
from mlx_repair.pipeline.stages import load_writer, sandbox_pool  # noqa: E402
from mlx_repair.problems import load_problems  # noqa: E402

ARMS = (*REPAIR_MODES, "resample")


def failing_drafts(store_dir: str, run: str, per_problem: int, limit: int | None) -> list:
    with Store.open(store_dir) as store:
        store.select_run(run)
        drafts = [a for a in store.attempts() if a.kind == "draft" and not a.passed]
    chosen, taken = [], {}
    for draft in sorted(drafts, key=lambda a: (a.id,)):
        if taken.get(draft.task_id, 0) < per_problem:
            taken[draft.task_id] = taken.get(draft.task_id, 0) + 1
            chosen.append(draft)
    return chosen[:limit]


def run_arm(arm: str, drafts, problems, writer, pool) -> dict:
    """Write and judge one second try per failing draft."""
    kind = "resample" if arm == "resample" else "repair"
    if kind == "repair":
        writer.repair_prompt = arm
    requests = [Request(problems[d.task_id], kind, d.sample_index, 1, broken=d) for d in drafts]
    broken = {id(r): r.broken for r in requests}
    outputs = {}
    started, generated_before = time.perf_counter(), writer.stats.generated_tokens

    def jobs():
        for output in writer.write(requests):
            outputs[id(output.request)] = output
            yield id(output.request), output.request.problem, output.code

    rows = []
    for key, verdict in pool.run(jobs()):
        output = outputs.pop(key)
        draft = broken[key]
        rows.append({
            "task_id": draft.task_id,
            "sample": draft.sample_index,
            "passed": verdict.passed,
            "status": verdict.status,
            "copy": output.code.strip() == draft.code.strip(),
            "prompt_tokens": len(prompts.encode(writer.tokenizer, output.prompt)),
            "generated_tokens": output.num_tokens,
        })
        print(f"{arm:>8} {len(rows):>3}/{len(requests)} {draft.task_id:<16} {verdict.status}", flush=True)
    rows.sort(key=lambda r: (r["task_id"], r["sample"]))
    return {
        "n": len(rows),
        "passed": sum(r["passed"] for r in rows),
        "copies": sum(r["copy"] for r in rows),
        "prompt_tokens": sum(r["prompt_tokens"] for r in rows),
        "generated_tokens": sum(r["generated_tokens"] for r in rows),
        "seconds": round(time.perf_counter() - started, 1),
        "decoded_tokens": writer.stats.generated_tokens - generated_before,
        "sampling": writer.sampling_for(kind),
        "rows": rows,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", required=True, help="run directory holding the failing drafts")
    parser.add_argument("--run", default="mine", help="run name inside the store (mine or eval)")
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--problems", default="humaneval")
    parser.add_argument("--per-problem", type=int, default=1, help="failing drafts per problem, at most")
    parser.add_argument("--limit", type=int, help="failing drafts in all, at most")
    parser.add_argument("--arms", default=",".join(ARMS), help=f"comma-separated, of {', '.join(ARMS)}")
    parser.add_argument("--out", required=True, help="results JSON (arms already in it are skipped)")
    args = parser.parse_args()

    out = Path(args.out)
    results = json.loads(out.read_text()) if out.is_file() else {"arms": {}}
    drafts = failing_drafts(args.store, args.run, args.per_problem, args.limit)
    results.update(store=args.store, model=args.model, drafts=[[d.task_id, d.sample_index] for d in drafts])
    problems = {p.task_id: p for p in load_problems(args.problems)}
    config = Config()
    config.run.model = args.model
    writer = load_writer(config)
    with sandbox_pool(config) as pool:
        for arm in args.arms.split(","):
            if arm in results["arms"]:
                print(f"{arm}: done before, skipped")
                continue
            results["arms"][arm] = run_arm(arm, drafts, problems, writer, pool)
            out.write_text(json.dumps(results, indent=1) + "\n")
            summary = {k: v for k, v in results["arms"][arm].items() if k != "rows"}
            print(f"{arm}: {summary}", flush=True)


if __name__ == "__main__":
    main()
