"""Go problems end to end: the loader, the harness validated on the packaged set, per-case
feedback, goimports, the candidate's own line numbers, extraction and stop checks, `exec`,
and a tiny model that mines Go pairs. Every verdict comes from a real `go test` build and
run in the real sandbox."""

import json

import pytest
from go_support import RIGHT, WRONG, double_problem, double_problems, go_toolchain, write_go_problems  # noqa: F401

from mlx_repair.cli import main
from mlx_repair.errors import UserError
from mlx_repair.generation import prompts
from mlx_repair.generation.extract import extract_code
from mlx_repair.generation.go_prompts import completion_end, fenced_function_end, without_doc_comments
from mlx_repair.problems import ProblemsError, load_problems
from mlx_repair.problems.go_syntax import declarations
from mlx_repair.problems.split import split_problems
from mlx_repair.sandbox import Pool, run_candidate
from mlx_repair.sandbox.go_cases import go_plan

GO_SET = load_problems("go")
BRACKETS = next(p for p in GO_SET if p.entry_point == "ValidBrackets")


def by_entry(name):
    return next(p for p in GO_SET if p.entry_point == name)


def test_every_canonical_solution_passes_and_every_empty_body_fails():
    jobs = [((p.task_id, "canonical"), p, p.canonical_solution) for p in GO_SET]
    jobs += [((p.task_id, "empty"), p, "}\n") for p in GO_SET]
    with Pool(2) as pool:
        verdicts = dict(pool.run(jobs))
    assert len(GO_SET) >= 30
    failing = [task for (task, kind), v in verdicts.items() if kind == "canonical" and not v.passed]
    passing = [task for (task, kind), v in verdicts.items() if kind == "empty" and v.passed]
    assert failing == [] and passing == []
    assert {v.isolation for v in verdicts.values()} == {"bwrap"}


def test_the_go_set_splits_by_the_stable_hash_and_has_both_test_shapes():
    split = split_problems(GO_SET, 0.5)
    assert split.train and split.eval and set(split.train) | set(split.eval) == {p.task_id for p in GO_SET}
    plans = [go_plan(p) for p in GO_SET]
    assert sum(bool(plan.tables) for plan in plans) >= 25 and sum(bool(plan.whole) for plan in plans) >= 3


def test_unused_and_missing_imports_never_fail():
    problem = by_entry("CountDistinct")
    unused = 'package main\n\nimport (\n\t"fmt"\n\t"os"\n)\n\nfunc CountDistinct(nums []int) int {\n' + problem.canonical_solution
    missing = "func CountDistinct(nums []int) int {\n\ts := append([]int(nil), nums...)\n\tsort.Ints(s)\n" \
        "\tn := 0\n\tfor i := range s {\n\t\tif i == 0 || s[i] != s[i-1] {\n\t\t\tn++\n\t\t}\n\t}\n" \
        '\t_ = strings.TrimSpace("")\n\treturn n\n}\n'
    assert run_candidate(problem, unused).passed
    assert run_candidate(problem, missing).passed


def test_wrong_rows_are_fed_back_as_input_expected_got_and_hidden_rows_never_shown():
    problem = by_entry("RomanToInt")
    verdict = run_candidate(problem, "\treturn len(s)\n}\n")
    assert verdict.status == "failed" and not verdict.passed
    shown = [c for c in verdict.cases if not c.hidden and not c.passed]
    assert shown
    for case in verdict.cases:
        assert (f"Input: {case.input}\n" in verdict.feedback) == (not case.hidden and not case.passed)
    first = shown[0]
    assert f"Test: {first.source}\nInput: {first.input}\nExpected: {first.expected}\nGot: {first.got}" in verdict.feedback
    assert first.source.startswith("TestRomanToInt: {")


def test_a_panic_comes_back_with_the_candidates_frames_and_lines():
    problem = by_entry("DigitSum")
    verdict = run_candidate(problem, "\tvar digits []int\n\treturn digits[n]\n}\n")
    assert verdict.status == "failed"
    failed = [c for c in verdict.cases if not c.passed and not c.hidden][0]
    assert failed.error.startswith("panic: runtime error: index out of range")
    assert "DigitSum(...)\n\tsolution.go:7" in failed.traceback  # the line of prompt + body
    assert "report.go" not in failed.traceback and "testing.go" not in failed.traceback


def test_compile_errors_name_the_candidates_own_lines():
    problem = by_entry("DigitSum")
    body = run_candidate(problem, "\tsum := 0\n\treturn sum + undefinedThing\n}\n")
    assert body.status == "syntax_error" and "solution.go:7: undefined: undefinedThing" in body.feedback
    whole = 'package main\n\nimport (\n\t"fmt"\n)\n\n\n\nfunc DigitSum(n int) int {\n\treturn missing(n)\n}\n'
    verdict = run_candidate(problem, whole)
    assert "solution.go:10: undefined: missing" in verdict.feedback  # goimports removed fmt: lines unchanged


def test_a_test_of_another_shape_feeds_back_its_own_errorf_lines():
    problem = by_entry("GCD")
    verdict = run_candidate(problem, "\treturn a + b\n}\n")
    assert not verdict.passed and all(case.row is None for case in go_plan(problem).cases)
    messages = "\n".join(c.error or "" for c in verdict.cases if not c.passed)
    assert "GCD(12, 18) = 30, want 6" in messages or "GCD(" in messages
    assert "TestMlxRepair" not in verdict.feedback


def test_a_float_row_is_judged_within_its_tolerance():
    problem = by_entry("Mean")
    near = "\ts := 0.0\n\tfor _, x := range nums {\n\t\ts += x\n\t}\n\tif len(nums) == 0 {\n\t\treturn 0\n\t}\n" \
        "\treturn s/float64(len(nums)) + 1e-12\n}\n"
    assert run_candidate(problem, near).passed
    assert not run_candidate(problem, "\treturn 0.5\n}\n").passed


def test_go_jsonl_loads_and_bad_records_are_one_line_errors(tmp_path):
    good = write_go_problems(tmp_path / "go.jsonl", [double_problem("GoDouble/0")])
    (problem,) = load_problems(good)
    assert problem.language == "go" and problem.domain == "code" and problem.entry_point == "Double"
    record = json.loads(good.read_text())
    broken = {
        "no prompt": {k: v for k, v in record.items() if k != "prompt"},
        "closed prompt": {**record, "prompt": record["prompt"] + "\treturn 0\n}\n"},
        "no package": {**record, "prompt": record["prompt"].replace("package main\n", "")},
        "other package": {**record, "test": record["test"].replace("package main", "package other")},
        "no test function": {**record, "test": "package main\n\nfunc helper() {}\n"},
    }
    for name, bad in broken.items():
        path = tmp_path / f"{name}.jsonl"
        path.write_text(json.dumps(bad) + "\n")
        with pytest.raises(ProblemsError) as error:
            load_problems(path)
        message = str(error.value)
        assert message.startswith(f"{path}:1: ") and "\n" not in message, name


def test_without_go_a_go_problem_is_one_clear_error_and_python_still_runs(monkeypatch):
    from mlx_repair.sandbox import go_toolchain as toolchain_module

    monkeypatch.setattr(toolchain_module, "find_toolchain", lambda: "no `go` command found")
    with pytest.raises(UserError) as error:
        run_candidate(double_problem("GoDouble/missing"), RIGHT)
    assert "apt-get install golang-go golang-golang-x-tools" in str(error.value) and "\n" not in str(error.value)
    python = load_problems("humaneval")[0]
    assert run_candidate(python, python.canonical_solution).passed


ANSWER = '''Here it is. Braces such as "}" may appear in strings:

```go
package main

import "fmt"

// ValidBrackets checks { and } pairs.
func ValidBrackets(s string) bool {
	closers := map[rune]rune{')': '(', ']': '[', '}': '{'} // a } in a comment
	var stack []rune
	/* an unbalanced { in a block comment */
	for _, r := range s {
		if isOpen(r) {
			stack = append(stack, r)
		} else if open, ok := closers[r]; ok {
			if len(stack) == 0 || stack[len(stack)-1] != open {
				return false
			}
			stack = stack[:len(stack)-1]
		}
	}
	_ = struct{ a, b string }{"}", `{ raw }
}`}
	return len(stack) == 0
}

func main() {
	fmt.Println(ValidBrackets("{[]}"))
}

func TestValidBrackets(t *testing.T) {}
```

And a helper I forgot:

```go
func isOpen(r rune) bool { return r == '(' || r == '[' || r == '{' }
```
'''


def test_extraction_keeps_nested_blocks_literals_and_helpers_whatever_braces_strings_hold():
    code = extract_code(ANSWER, BRACKETS)
    names = [d.name for d in declarations(code) if d.keyword == "func"]
    assert names == ["ValidBrackets", "isOpen"]  # main and the test dropped, the helper from another block
    assert "_ = struct{ a, b string }{\"}\", `{ raw }\n}`}\n\treturn len(stack) == 0\n}" in code
    assert run_candidate(BRACKETS, code).passed


def test_extraction_of_a_body_only_answer_and_of_a_cut_off_one():
    body = "```go\n\treturn len(s)%2 == 0\n}\n```"
    assert extract_code(body, BRACKETS).startswith(BRACKETS.prompt)
    cut = "```go\nfunc ValidBrackets(s string) bool {\n\tfor _, r := range s {\n\t\tif r == '}' {"
    assert extract_code(cut, BRACKETS).startswith("func ValidBrackets")
    assert run_candidate(BRACKETS, extract_code(cut, BRACKETS)).status == "syntax_error"


def test_stop_checks_for_chat_and_base_answers():
    end = fenced_function_end("ValidBrackets", ANSWER)
    assert ANSWER[:end].endswith("```") and "func main" in ANSWER[:end]
    open_fence = ANSWER[: ANSWER.index("func TestValidBrackets")]
    assert fenced_function_end("ValidBrackets", open_fence[: open_fence.index("func main")]) is None
    assert open_fence[: fenced_function_end("ValidBrackets", open_fence)].rstrip().endswith("return len(stack) == 0\n}")
    body = "\tif s == \"}\" {\n\t\treturn helper('{')\n\t}\n\treturn true\n}\n\nfunc helper(r rune) bool {\n\treturn r == '}'\n}\n\nfunc main() {}\n"
    assert body[: completion_end(body)].endswith("return r == '}'\n}\n")
    assert completion_end(body[: body.index("func helper")] + "func hel") is None


def test_go_prompts_ask_for_go_and_show_attempts_without_doc_comments():
    draft = prompts.draft_messages(BRACKETS)
    assert "Go programmer" in draft[0]["content"] and "```go\npackage main" in draft[1]["content"]
    repair = prompts.repair_messages(BRACKETS, extract_code(ANSWER, BRACKETS), "Got: false", "code")[1]["content"]
    assert "with its doc comment left out" in repair and "// ValidBrackets checks" not in repair
    assert "func ValidBrackets" in repair and "in a single ```go code block" in repair
    assert without_doc_comments("// Doc.\nfunc F() {}\n") == "func F() {}\n"
    assert prompts.base_repair_text(BRACKETS, "x", "Got: 1", "facts").startswith("// An earlier attempt failed")


def test_exec_judges_go_samples(tmp_path, capsys):
    problem = by_entry("DigitSum")
    samples = tmp_path / "samples.jsonl"
    lines = [problem.canonical_solution, "func DigitSum(n int) int {\n\treturn n\n}\n", "}\n"]
    samples.write_text("".join(json.dumps({"task_id": problem.task_id, "completion": c}) + "\n" for c in lines))
    assert main(["exec", "go", str(samples), "--workers", "2"]) == 0
    assert capsys.readouterr().out.strip().endswith("1 passed, 2 failed")
    verdicts = [json.loads(line) for line in (tmp_path / "samples.jsonl_verdicts.jsonl").read_text().splitlines()]
    assert [v["status"] for v in verdicts] == ["passed", "failed", "syntax_error"]


def test_a_tiny_model_mines_go_repair_pairs_and_eval_measures_it(tmp_path, monkeypatch, capsys):
    from tiny_repairer import build_tiny_repairer

    problem = double_problem("GoDouble/0")
    model = build_tiny_repairer(
        tmp_path / "model", lambda p, code: run_candidate(p, code).feedback,
        drafts=(WRONG,), problem=problem, repair=(WRONG, RIGHT),
    )
    monkeypatch.chdir(tmp_path)
    problems = double_problems(6)
    common = ["--model", str(model), "--problems", str(write_go_problems(tmp_path / "double.jsonl", problems)),
              "--max-tokens", "60"]
    # Near-greedy: at temperature 0 the repairs would be sampled at 0.8 (writer.SECOND_TRY_TEMPERATURE).
    common += ["--temperature", "0.01"]
    assert main(["mine", *common, "--samples", "1", "--rounds", "1"]) == 0
    assert "train problems (Go)" in capsys.readouterr().err
    (store_path,) = tmp_path.glob("runs/mine-*/store.sqlite")
    from mlx_repair.mining.dataset import MixConfig, answer_message, build_dataset, write_dataset
    from mlx_repair.mining.store import Store

    with Store.open(store_path.parent) as store:
        store.select_run("mine")
        pairs, attempts = store.pairs(), {a.id: a for a in store.attempts()}
        dataset = build_dataset(store, problems, MixConfig(valid_fraction=0))
    repairs = [p for p in pairs if p.kind == "repair"]
    assert len(repairs) == len(split_problems(problems, 0.5).train) > 0
    assert all("return x * 2" in attempts[p.fixed_id].code and "TestDouble: {" in p.feedback for p in repairs)
    assert answer_message(RIGHT, problems[0])["content"].startswith("```go\npackage main")
    # The records and the dataset's summary name the language.
    assert {record["language"] for record in dataset.train} == {"go"}
    assert write_dataset(dataset, tmp_path / "data").info["languages"] == {"go": len(dataset.train)}
    result = tmp_path / "eval.json"
    assert main(["eval", *common, "--split", "all", "--json", str(result)]) == 0
    evaluated = json.loads(result.read_text())
    assert evaluated["metrics"]["cold_pass@1"] == 0.0 and evaluated["metrics"]["repair_pass@1"] == 1.0
    assert evaluated["languages"] == ["go"]


def test_agreement_makes_no_extra_inputs_for_go_problems():
    from mlx_repair.evaluation.probes import make_probe

    assert make_probe(BRACKETS) is None
