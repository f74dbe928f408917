"""The Go driver inside the sandbox: write the module, fix the candidate's imports, build
the test binary, run it, and return what happened. Standard library only.

It runs as the program of the sandbox's Python child (`child.py`), exactly as the math
checker does: the child has already set the limits, entered the throwaway work directory
(as a throwaway uid where it can) and holds the run's token; `run_go()` is its
"candidate", whose return value the child reports over the private pipe. `JOB` (a dict
of plain values) is prepended by `go_run.driver_program`.

Steps, each under its own time limit:
1. `goimports` on solution.go; only the import specs of its output are kept, written above
   the candidate's code, which starts with a `//line` directive, so unused or missing
   standard-library imports never fail a build and errors keep the candidate's lines;
2. `go test -c`: a compile error is returned as the build's output; then every source
   file is deleted, so the running candidate cannot read the tests (hidden cases
   included) from disk;
3. the test binary, with the candidate's limits, the harness's test only, a token of its
   own on one pipe and its reports on another; its output is drained and capped here.
Only report lines carrying that token are returned; any other line on the report pipe
means something else wrote there.
"""

import os
import resource
import secrets
import selectors
import signal
import subprocess
import time

OUTPUT_KEPT = 16_000  # characters of build or test output kept for feedback
EXIT_GRACE_S = 0.5  # after the binary exits, how long to wait for pipes its leftovers hold


def run_go():
    cwd = os.getcwd()
    env = {key: value.replace("{workdir}", cwd) for key, value in JOB["env"].items()}
    for sub in ("gopath", "tmp", "home"):
        os.makedirs(os.path.join(cwd, sub), exist_ok=True)
    for path, text in JOB["files"].items():
        os.makedirs(os.path.dirname(os.path.join(cwd, path)) or cwd, exist_ok=True)
        with open(path, "w", encoding="utf-8") as out:
            out.write(text)
    fix_imports(env)
    built = run_tool([JOB["go"], "test", "-c", "-o", "candidate.test", "."], env, JOB["build_timeout_s"])
    if built is not None:
        return {"build": built}
    remove_sources(cwd)
    return run_binary(env)


def run_tool(argv, env, timeout):
    """None if the tool succeeded, else its output (or why it did not finish)."""
    try:
        done = subprocess.run(argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, timeout=timeout)
    except subprocess.TimeoutExpired:
        return f"{os.path.basename(argv[0])} did not finish within {timeout:g} s"
    if done.returncode == 0:
        return None
    return done.stdout.decode("utf-8", "replace")[-OUTPUT_KEPT:] or f"exit status {done.returncode}"


def fix_imports(env):
    """The import specs goimports settles on, above the candidate's own text (from its
    `//line`). Only the specs are taken from its output: it may move comments."""
    target = JOB["imports_fix"]
    if not target:
        return
    with open(target, encoding="utf-8") as source:
        original = source.read()
    marker, block = original.find("\n//line "), original.find("import (")
    try:
        fixed = subprocess.run([JOB["goimports"], target], env=env, stdin=subprocess.DEVNULL,
                               capture_output=True, timeout=JOB["imports_timeout_s"])
    except subprocess.TimeoutExpired:
        return
    if fixed.returncode != 0 or marker < 0 or block < 0:
        return  # e.g. a syntax error: the build reports it, at the candidate's lines
    specs = import_specs(fixed.stdout.decode("utf-8", "replace"))
    with open(target, "w", encoding="utf-8") as out:
        out.write(original[:block] + "import (\n" + "".join(f"\t{spec}\n" for spec in specs) + ")\n" + original[marker:])


def import_specs(text):
    """The specs of gofmt'ed Go's import declarations: `"fmt"`, `m "math"`."""
    specs, inside = [], False
    for line in text.splitlines():
        words = line.split("//")[0].strip()
        if inside and words == ")":
            inside = False
        elif words == "import (":
            inside = True
        elif inside or words.startswith("import "):
            spec = words.removeprefix("import ").strip()
            if spec.endswith('"') and '"' in spec[:-1]:
                specs.append(spec)
    return specs


def remove_sources(root):
    for directory, _, names in os.walk(root):
        for name in names:
            if name.endswith(".go") or name in ("go.mod", "go.sum"):
                os.remove(os.path.join(directory, name))


def run_binary(env):
    token = secrets.token_hex(16)
    token_r, token_w = os.pipe()
    report_r, report_w = os.pipe()
    os.write(token_w, token.encode())
    os.close(token_w)
    run_env = dict(env, MLX_REPAIR_FDS=f"{token_r} {report_w}", GOMAXPROCS="2")
    argv = ["./candidate.test", f"-test.run=^{JOB['test_name']}$", "-test.v", "-test.count=1", "-test.timeout=0"]
    process = subprocess.Popen(argv, env=run_env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, pass_fds=(token_r, report_w),
                               preexec_fn=candidate_limits, start_new_session=True)
    os.close(token_r)
    os.close(report_w)
    result = drain(process, report_r)
    lines = result.pop("report").split(b"\n")
    prefix = token.encode() + b" "
    result["records"] = [line[len(prefix):].decode("utf-8", "replace") for line in lines if line.startswith(prefix)]
    result["forged"] = any(line and not line.startswith(prefix) for line in lines)
    return result


def candidate_limits():
    for name, value in JOB["run_limits"].items():
        which = getattr(resource, name, None)
        if which is not None:
            try:
                resource.setrlimit(which, (value, value + 1 if name == "RLIMIT_CPU" else value))
            except (ValueError, OSError):
                pass


def drain(process, report_r):
    """Read the binary's output and reports until both close, within the time and output
    limits; then make sure nothing of it is left running."""
    selector = selectors.DefaultSelector()
    selector.register(process.stdout, selectors.EVENT_READ, "output")
    selector.register(report_r, selectors.EVENT_READ, "report")
    output, report, size = bytearray(), bytearray(), 0
    deadline = time.monotonic() + JOB["timeout_s"]
    result = {"timeout": False, "over_output": False}
    exited_at = None
    while selector.get_map():
        now = time.monotonic()
        if exited_at is None and process.poll() is not None:
            exited_at = now
        if exited_at is not None and now - exited_at > EXIT_GRACE_S:
            break  # what still holds the pipes outlived the test binary: it is killed below
        if now >= deadline:
            result["timeout"] = True
            break
        for key, _ in selector.select(min(deadline - now, 0.05)):
            chunk = os.read(key.fd if key.data == "report" else process.stdout.fileno(), 1 << 16)
            if not chunk:
                selector.unregister(key.fileobj)
            elif key.data == "report":
                report += chunk
            else:
                size += len(chunk)
                output += chunk[: max(OUTPUT_KEPT - len(output), 0)]
        if size > JOB["output_bytes"]:
            result["over_output"] = True
            break
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except OSError:
        pass
    result["exit"] = process.wait()
    result["output"] = output.decode("utf-8", "replace")
    result["report"] = bytes(report)
    return result
