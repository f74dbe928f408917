"""The child side of the sandbox: runs one candidate's test cases inside a fresh interpreter.

The parent starts `python -I -S -B -c <this file's source> JOB_FD REPORT_FD` (or a warm
fork server, `--serve CONTROL_FD`, that forks one such child per job), writes one
marshalled job to JOB_FD and reads reports from REPORT_FD. This file is stdlib only and
never imports mlx_repair (the child cannot see the package) — the parent imports it too,
for `decode`, so both sides share one wire format.

What the child sends is *values*, not verdicts: for each case the result of the
candidate-side expressions, serialised by `encode` into plain JSON, prefixed by a per-run
token that reaches the child only through the job pipe (never argv, environment or
files). The parent decodes them into fresh builtin objects and compares them itself, so
an always-equal `__eq__`, replaced builtins, `sys.exit(0)`, `python -O` or printed text
cannot turn a failure into a pass. Everything the encoder relies on is captured below
before any candidate code runs. (Code that searched this interpreter's memory for the
token could forge reports; the isolation still bounds what such code can do.)
"""

import builtins
import marshal
import os
import resource
import sys
from _json import encode_basestring_ascii

# Trusted primitives, bound before the candidate can replace builtins or patch modules.
_type = type
_len = len
_int_repr = int.__repr__
_float_repr = float.__repr__
_bytes_hex = bytes.hex
_json_str = encode_basestring_ascii
_write = os.write
_exit = os._exit
_BaseException = BaseException
_NoneType = _type(None)
_bool, _int, _float, _str, _bytes, _complex = bool, int, float, str, bytes, complex
_list, _tuple, _set, _frozenset, _dict = list, tuple, set, frozenset, dict
_repr, _dict_items = repr, dict.items
_CONTAINERS = ((_list, "l"), (_tuple, "t"), (_set, "s"), (_frozenset, "z"))

MAX_DEPTH = 64
MAX_NODES = 1 << 18  # size of one encoded value
MAX_TEXT = 400  # characters of an error message or an opaque repr
_SOURCES = {}  # file name -> source, for tracebacks
# What a warm fork server imports once, so each forked child starts with them loaded.
PRELOAD = (
    "typing", "re", "math", "collections", "itertools", "functools", "string", "random",
    "heapq", "bisect", "copy", "hashlib", "json", "operator", "fractions", "decimal",
    "statistics", "datetime", "linecache", "traceback", "shutil", "socket",
)
SOLUTION_FILE = "solution.py"
TEST_FILE = "test.py"


class _TooBig(Exception):
    pass


# --- wire format: plain values only ------------------------------------------------------


def encode(value) -> str:
    """JSON text for a value built only of builtin plain types (see `tree`)."""
    return _dump(tree(value))


def tree(value):
    """A tagged tree of fresh objects for a value built only of builtin plain types,
    checked by exact type. Anything else (subclasses included) becomes an opaque
    ["o", type, repr] that the parent never considers equal to anything."""
    try:
        return _tree(value, [0], 0)
    except (_TooBig, RecursionError, ValueError):
        return ["o", _type_name(value), "<too large to compare>"]


def _tree(x, size, depth):
    size[0] += 1
    if depth > MAX_DEPTH or size[0] > MAX_NODES:
        raise _TooBig
    t = _type(x)
    if t is _NoneType or t is _bool or t is _int:
        return x
    if t is _str:
        size[0] += _len(x) >> 4
        return x
    if t is _float:
        return ["f", _float_repr(x)]
    if t is _bytes:
        return ["b", _bytes_hex(x)]
    if t is _complex:
        return ["c", [_float_repr(x.real), _float_repr(x.imag)]]
    if t is _dict:
        return ["d", [[_tree(k, size, depth + 1), _tree(v, size, depth + 1)] for k, v in _dict_items(x)]]
    for container, tag in _CONTAINERS:
        if t is container:
            return [tag, [_tree(item, size, depth + 1) for item in container.__iter__(x)]]
    return ["o", _type_name(x), _safe_repr(x)]


def _dump(node) -> str:
    """JSON text of a tree (only None, bool, int, str and lists of those)."""
    t = _type(node)
    if t is _list:
        return "[" + ",".join([_dump(item) for item in node]) + "]"
    if t is _str:
        return _json_str(node)
    if node is None:
        return "null"
    if t is _bool:
        return "true" if node else "false"
    return _int_repr(node)


def _type_name(x) -> str:
    try:
        name = _type(x).__name__
        return name if _type(name) is _str else "object"
    except _BaseException:
        return "object"


def _safe_repr(x) -> str:
    try:
        text = _repr(x)
        return text[:MAX_TEXT] if _type(text) is _str else "<unprintable>"
    except _BaseException:
        return "<unprintable>"


class Opaque:
    """A value the child could not express in plain types: equal to nothing, false."""

    def __init__(self, type_name: str, text: str):
        self.type_name, self.text = type_name, text

    def __eq__(self, other):
        return False

    def __ne__(self, other):
        return True

    __hash__ = object.__hash__

    def __bool__(self):
        return False

    def __repr__(self):
        return f"{self.text} (of type {self.type_name}, not a plain value)"


def decode(node):
    """Rebuild fresh builtin objects from `encode`'s JSON (already parsed)."""
    if _type(node) is not _list:
        return node
    tag, body = node[0], node[1]
    if tag == "f":
        return _float(body)
    if tag == "l":
        return [decode(v) for v in body]
    if tag == "t":
        return _tuple(decode(v) for v in body)
    if tag == "s":
        return {decode(v) for v in body}
    if tag == "z":
        return _frozenset(decode(v) for v in body)
    if tag == "d":
        return {decode(k): decode(v) for k, v in body}
    if tag == "b":
        return _bytes.fromhex(body)
    if tag == "c":
        return _complex(_float(body[0]), _float(body[1]))
    return Opaque(body, node[2])


def plain(value):
    """The value as the parent would see it (used by the in-child fallback asserts)."""
    return decode(tree(value))


# --- fallback asserts: test code of unrecognised shape -----------------------------------


def assert_equal(left, right, site):
    """Replaces `assert left == right` in loops and other unsplittable test code."""
    got, expected = plain(left), plain(right)
    if not (got == expected):
        raise AssertionError(
            f"{site}\nExpected: {_show(expected)}\nGot: {_show(got)}"
        )


def assert_true(value, site):
    """Replaces any other `assert` there; it cannot be stripped by `python -O`."""
    if not plain(value):
        raise AssertionError(site)


def _show(value) -> str:
    text = _repr(value)
    return text if _len(text) <= MAX_TEXT else text[:MAX_TEXT] + "..."


# --- running a job -----------------------------------------------------------------------


class Reporter:
    """Writes token-prefixed JSON lines to the private report pipe."""

    def __init__(self, fd: int, token: str):
        self.fd, self.prefix = fd, token + " "

    def send(self, fields: str) -> None:
        data = (self.prefix + "{" + fields + "}\n").encode()
        while data:
            data = data[_write(self.fd, data) :]


def describe(error) -> str:
    """`Type: message`, capped, robust to exceptions whose __str__ misbehaves."""
    name = _type_name(error)
    try:
        message = _str(error)
        message = message if _type(message) is _str else ""
    except _BaseException:
        message = "<unprintable message>"
    text = f"{name}: {message}" if message else name
    return text if _len(text) <= MAX_TEXT else text[:MAX_TEXT] + "..."


def trimmed_traceback(error) -> str:
    """The traceback limited to the candidate's own frames (or the test's, if none)."""
    try:
        import linecache
        import traceback

        for filename, source in _SOURCES.items():  # let tracebacks show the lines
            linecache.cache[filename] = (_len(source), None, source.splitlines(True), filename)
        frames = traceback.extract_tb(error.__traceback__)
        own = [f for f in frames if f.filename == SOLUTION_FILE]
        own = own or [f for f in frames if f.filename == TEST_FILE]
        lines = traceback.format_list(own[-8:])
        return ("Traceback (most recent call last):\n" + "".join(lines) + describe(error))[-1500:]
    except _BaseException:
        return describe(error)


def _error_fields(error) -> str:
    return '"e":' + _json_str(describe(error)) + ',"tb":' + _json_str(trimmed_traceback(error))


def apply_limits(limits: dict) -> None:
    """Hard rlimits on this process, set before any candidate code runs."""
    for name, value in limits.items():
        which = getattr(resource, name, None)
        if which is None:
            continue
        soft, hard = (value, value + 1) if name == "RLIMIT_CPU" else (value, value)
        try:
            resource.setrlimit(which, (soft, hard))
        except (ValueError, OSError):
            pass  # e.g. RLIMIT_AS on macOS: the parent watches memory there instead


def enter_workdir(workdir: str, uid) -> None:
    """Create HOME and TMPDIR inside the throwaway dir, then (as root) become `uid`.

    A per-run unprivileged uid is what makes RLIMIT_NPROC bind (root is exempt) and lets
    the parent find and kill every process of the run afterwards.
    """
    for sub in ("home", "tmp"):
        os.makedirs(os.path.join(workdir, sub), exist_ok=True)
    os.environ["HOME"] = os.path.join(workdir, "home")
    os.environ["TMPDIR"] = os.path.join(workdir, "tmp")
    if uid is not None:
        for path in (workdir, os.path.join(workdir, "home"), os.path.join(workdir, "tmp")):
            os.chown(path, uid, uid)
        os.setgroups([])
        os.setresgid(uid, uid, uid)
        os.setresuid(uid, uid, uid)
    os.chdir(workdir)


def run_job(job: dict, reporter: Reporter) -> None:
    _SOURCES.update({SOLUTION_FILE: job["program_source"], TEST_FILE: job["test_source"]})
    module = {"__name__": "__candidate__", "__builtins__": builtins}
    module["__mlx_assert_equal__"] = assert_equal
    module["__mlx_assert_true__"] = assert_true
    try:
        exec(job["program"], module)
        exec(job["test"], module)
        if job["entry_point"] not in module:
            raise NameError(f"name '{job['entry_point']}' is not defined")
        candidate = module[job["entry_point"]]
    except _BaseException as error:
        reporter.send('"load":1,' + _error_fields(error))
        return
    scope = dict(module)
    scope[job["candidate_name"]] = candidate
    for kind, case, code in job["steps"]:
        run_step(kind, case, code, scope, reporter)
    reporter.send('"done":1')


def run_step(kind: str, case, code, scope: dict, reporter: Reporter) -> None:
    """One step: setup code, a statement case, or the candidate-side values of a case."""
    try:
        if kind == "values":
            values = [encode(eval(expression, scope)) for expression in code]
            reporter.send('"i":' + _int_repr(case) + ',"v":[' + ",".join(values) + "]")
            return
        exec(code, scope)
        if kind == "statement":
            reporter.send('"i":' + _int_repr(case) + ',"ok":1')
    except _BaseException as error:
        where = '"i":' + _int_repr(case) if case is not None else '"setup":1'
        reporter.send(where + "," + _error_fields(error))


def _read_all(fd: int) -> bytes:
    chunks = []
    while True:
        chunk = os.read(fd, 1 << 16)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


def main(argv) -> None:
    """Run one job: `JOB_FD REPORT_FD`, or serve forks: `--serve CONTROL_FD`."""
    if argv[1] == "--serve":
        serve(int(argv[2]))
        return
    job_fd, report_fd = int(argv[1]), int(argv[2])
    try:
        job = marshal.loads(_read_all(job_fd))
        os.close(job_fd)
        apply_limits(job["limits"])
        enter_workdir(job["workdir"], job["uid"])
        reporter = Reporter(report_fd, job.pop("token"))
        sys.stdin = None
        run_job(job, reporter)
    finally:
        _exit(0)


# --- the warm fork server --------------------------------------------------------------


def serve(control_fd: int) -> None:
    """Fork one child per job; never run candidate code here.

    The parent sends "UID WORKDIR" with four fds (job, report, stdout, stderr) over a unix
    socket. The child runs the job exactly as a fresh `main` would; afterwards every
    process of UID is killed and the work dir removed, and only then is the wait status
    sent back, so a finished run has left nothing behind.
    """
    import shutil
    import socket

    for name in PRELOAD:
        try:
            __import__(name)
        except ImportError:
            pass
    control = socket.socket(fileno=control_fd)
    while True:
        message, fds, _, _ = socket.recv_fds(control, 1024, 4)
        if not message or len(fds) != 4:
            return
        uid, workdir = message.decode().split(" ", 1)
        pid = os.fork()
        if pid == 0:
            _become_child(control, fds)
        for fd in fds:
            os.close(fd)
        _, status = os.waitpid(pid, 0)
        kill_uid(int(uid))
        shutil.rmtree(workdir, ignore_errors=True)
        control.sendall(b"%d\n" % status)


def _become_child(control, fds) -> None:
    try:
        control.close()
        os.setsid()
        job_fd, report_fd, out_fd, err_fd = fds
        os.dup2(out_fd, 1)
        os.dup2(err_fd, 2)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        for fd in (out_fd, err_fd, null):
            os.close(fd)
        main(["", job_fd, report_fd])
    finally:
        _exit(1)


def kill_uid(uid: int, patience_s: float = 5.0) -> None:
    """SIGKILL every process of `uid` until none is left. The server runs in its own pid
    namespace, so /proc here lists only the server and what its children left behind."""
    import time

    deadline = time.monotonic() + patience_s
    while time.monotonic() < deadline:
        left = [pid for pid in _pids() if _uid_of(pid) == uid]
        if not left:
            return
        for pid in left:
            try:
                os.kill(pid, 9)
            except OSError:
                pass
        time.sleep(0.001)


def _pids():
    return [int(name) for name in os.listdir("/proc") if name.isdigit()]


def _uid_of(pid: int):
    """The real uid of a live (not zombie) process, or None."""
    try:
        with open(f"/proc/{pid}/status") as status:
            fields = dict(line.split(":", 1) for line in status if ":" in line)
    except OSError:
        return None
    if fields.get("State", "").strip().startswith("Z"):
        return None
    return int(fields["Uid"].split()[0])


if __name__ == "__main__":
    main(sys.argv)
