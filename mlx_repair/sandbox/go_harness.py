"""The Go side of the sandbox's harness: a report package and a test function, generated
per run, compiled with the candidate and the problem's test file.

Why a candidate cannot fake a pass (the Go counterpart of child.py's design):
- The verdict is decided in the parent from values the harness reports, never from `go
  test`'s exit status or its PASS/ok lines, which the candidate can print itself.
- Reports go to a private pipe as lines prefixed by a per-run token. The token reaches
  the test binary only through another pipe, read by the report package's
  `init`: Go initialises an imported package before the package that imports it, so this
  runs before any of the candidate's initialisers or `init` functions, which find the
  pipe already drained and closed. The token is never in a file or the environment.
- The report package's import path is random per run, so a candidate cannot import it
  and call its functions; the harness's test function has a random name too.
- The harness copies each table into a fresh local before calling the candidate, so an
  `init()` that rewrites a package-level table changes nothing it uses; and the expected
  values the parent compares with come from a run with no candidate in it at all.
- A candidate's `TestMain` in solution.go is an ordinary function (`go test` looks for
  it in test files only); `os.Exit`, `runtime.Goexit` and crashes leave cases unreported
  and the run without its final `done` report, which fails them.
- Values are encoded by reflection into plain text with their type, never through a
  `String`/`GoString`/`Error` method a candidate type might define.
(Code that read the token out of the process's own memory could forge reports; the
isolation bounds what such code can do, as for Python.)
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from mlx_repair.sandbox.go_cases import GoPlan
from mlx_repair.sandbox.go_toolchain import MODULE

FDS_ENV = "MLX_REPAIR_FDS"  # "TOKEN_FD REPORT_FD": the pipes' numbers (no secret)
EXPECT, RUN = "expect", "run"

REPORT_PACKAGE = r"""package {name}

import (
	"fmt"
	"io"
	"math"
	"os"
	"reflect"
	"runtime/debug"
	"sort"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"
)

var token string
var report *os.File

func init() {
	var tokenFd, reportFd uintptr
	fmt.Sscan(os.Getenv("{fds_env}"), &tokenFd, &reportFd)
	in := os.NewFile(tokenFd, "token")
	data, _ := io.ReadAll(in)
	in.Close()
	token = string(data)
	report = os.NewFile(reportFd, "report")
}

func send(fields string) {
	report.Write([]byte(token + " {" + fields + "}\n"))
}

const maxDepth = 64
const maxText = 1 << 16

type encoder struct {
	b      strings.Builder
	opaque bool
	nan    bool
}

// Encode: the value's type and a plain text of it, built by reflection only.
func encode(x interface{}) string {
	e := &encoder{}
	v := reflect.ValueOf(x)
	kind := "nil"
	if v.IsValid() {
		kind = v.Type().String()
	}
	e.value(v, 0)
	return `{"t":` + quote(kind) + `,"v":` + quote(e.b.String()) + `,"o":` + strconv.FormatBool(e.opaque) + `,"n":` + strconv.FormatBool(e.nan) + `}`
}

func (e *encoder) value(v reflect.Value, depth int) {
	if depth > maxDepth || e.b.Len() > maxText {
		e.opaque = true
		e.b.WriteString("...")
		return
	}
	switch v.Kind() {
	case reflect.Invalid:
		e.b.WriteString("nil")
	case reflect.Bool:
		e.b.WriteString(strconv.FormatBool(v.Bool()))
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		e.b.WriteString(strconv.FormatInt(v.Int(), 10))
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		e.b.WriteString(strconv.FormatUint(v.Uint(), 10))
	case reflect.Float32, reflect.Float64:
		e.float(v.Float(), v.Type().Bits())
	case reflect.Complex64, reflect.Complex128:
		c := v.Complex()
		e.b.WriteString("(")
		e.float(real(c), v.Type().Bits()/2)
		e.b.WriteString(", ")
		e.float(imag(c), v.Type().Bits()/2)
		e.b.WriteString("i)")
	case reflect.String:
		e.b.WriteString(strconv.Quote(v.String()))
	case reflect.Slice:
		if v.IsNil() {
			e.b.WriteString("nil")
			return
		}
		e.items(v, depth)
	case reflect.Array:
		e.items(v, depth)
	case reflect.Map:
		e.mapping(v, depth)
	case reflect.Struct:
		e.b.WriteString("{")
		for i := 0; i < v.NumField(); i++ {
			if i > 0 {
				e.b.WriteString(", ")
			}
			e.b.WriteString(v.Type().Field(i).Name + ": ")
			e.value(v.Field(i), depth+1)
		}
		e.b.WriteString("}")
	case reflect.Ptr:
		if v.IsNil() {
			e.b.WriteString("nil")
			return
		}
		e.b.WriteString("&")
		e.value(v.Elem(), depth+1)
	case reflect.Interface:
		if v.IsNil() {
			e.b.WriteString("nil")
			return
		}
		e.b.WriteString(v.Elem().Type().String() + "(")
		e.value(v.Elem(), depth+1)
		e.b.WriteString(")")
	default:
		e.opaque = true
		e.b.WriteString("<" + v.Type().String() + ">")
	}
}

func (e *encoder) float(f float64, bits int) {
	if math.IsNaN(f) {
		e.nan = true
	}
	e.b.WriteString(strconv.FormatFloat(f, 'g', -1, bits))
}

func (e *encoder) items(v reflect.Value, depth int) {
	e.b.WriteString("[")
	for i := 0; i < v.Len() && e.b.Len() <= maxText; i++ {
		if i > 0 {
			e.b.WriteString(", ")
		}
		e.value(v.Index(i), depth+1)
	}
	e.b.WriteString("]")
}

func (e *encoder) mapping(v reflect.Value, depth int) {
	if v.IsNil() {
		e.b.WriteString("nil")
		return
	}
	entries := make([]string, 0, v.Len())
	for _, key := range v.MapKeys() {
		k, item := &encoder{}, &encoder{}
		k.value(key, depth+1)
		item.value(v.MapIndex(key), depth+1)
		e.opaque = e.opaque || k.opaque || item.opaque
		e.nan = e.nan || k.nan || item.nan
		entries = append(entries, k.b.String()+": "+item.b.String())
	}
	sort.Strings(entries)
	e.b.WriteString("map[" + strings.Join(entries, ", ") + "]")
}

// A JSON string: valid UTF-8, control characters escaped.
func quote(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		switch {
		case r == '"' || r == '\\':
			b.WriteByte('\\')
			b.WriteRune(r)
		case r < 0x20:
			b.WriteString(`\u00`)
			b.WriteString(strconv.FormatInt(int64(r)>>4, 16) + strconv.FormatInt(int64(r)&15, 16))
		case r == utf8.RuneError:
			b.WriteString(`\ufffd`)
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
	return b.String()
}

func describe(p interface{}) (text string) {
	defer func() {
		if recover() != nil {
			text = "a value whose Error or String method panicked"
		}
	}()
	switch x := p.(type) {
	case error:
		return x.Error()
	case string:
		return x
	}
	e := &encoder{}
	e.value(reflect.ValueOf(p), 0)
	return e.b.String()
}

func failure(i int, p interface{}, stack []byte) {
	send(`"i":` + strconv.Itoa(i) + `,"e":` + quote("panic: "+describe(p)) + `,"tb":` + quote(string(stack)))
}

// Case reports what the candidate returned on row i, or how it panicked.
func Case(i int, call func() interface{}) {
	returned := false
	defer func() {
		if returned {
			return
		}
		if p := recover(); p != nil {
			failure(i, p, debug.Stack())
		}
	}()
	got := call()
	returned = true
	send(`"i":` + strconv.Itoa(i) + `,"v":` + encode(got))
}

// Want reports row i's expected value, tolerance and inputs (a run with no candidate).
func Want(i int, want interface{}, tolerance interface{}, inputs ...interface{}) {
	shown := make([]string, len(inputs))
	for k, input := range inputs {
		shown[k] = encode(input)
	}
	send(`"i":` + strconv.Itoa(i) + `,"w":` + encode(want) + `,"tol":` + encode(tolerance) + `,"in":[` + strings.Join(shown, ",") + `]`)
}

// Test runs a test function whole; it passes only if it failed nothing and returned.
func Test(i int, t *testing.T, name string, test func(*testing.T)) {
	var panicked interface{}
	var stack []byte
	completed := false
	passed := t.Run(name, func(t *testing.T) {
		defer func() {
			if completed {
				return
			}
			if p := recover(); p != nil {
				panicked, stack = p, debug.Stack()
				t.Fail()
			}
		}()
		test(t)
		completed = true
	})
	if panicked != nil {
		failure(i, panicked, stack)
		return
	}
	ok := "0"
	if passed && completed {
		ok = "1"
	}
	send(`"i":` + strconv.Itoa(i) + `,"ok":` + ok)
}

func Done() {
	send(`"done":1`)
}
"""


@dataclass(frozen=True)
class Harness:
    """The generated files of one run (paths relative to the module) and the test to run."""

    files: dict
    test_name: str


def harness(plan: GoPlan, package: str, mode: str) -> Harness:
    """The report package and the harness test file for `plan`, with fresh random names.
    In `EXPECT` mode the rows' expected values are reported and no test runs whole."""
    suffix = secrets.token_hex(6)
    name = f"r{suffix}"
    test_name = f"TestMlxRepair{suffix}"
    alias = f"mlxReport{suffix}"
    body = [_table_block(plan, table, alias, mode) for table in plan.tables]
    if mode == RUN:
        body += [f'\t{alias}.Test({plan.whole_index(test)}, t, "{test}", {test})' for test in plan.whole]
    body.append(f"\t{alias}.Done()")
    source = (
        f'package {package}\n\nimport (\n\t"testing"\n\n\t{alias} "{MODULE}/{name}"\n)\n\n'
        f"func {test_name}(t *testing.T) {{\n" + "\n".join(body) + "\n}\n"
    )
    report = REPORT_PACKAGE.replace("{name}", name).replace("{fds_env}", FDS_ENV)
    return Harness({f"{name}/report.go": report, f"zz_mlx_repair_{suffix}_test.go": source}, test_name)


def _table_block(plan: GoPlan, table, alias: str, mode: str) -> str:
    if mode == EXPECT:
        tolerance = table.tolerance or "nil"
        inputs = "".join(f", {argument.removesuffix('...')}" for argument in table.arguments)
        call = f"{alias}.Want(mlxBase+mlxIndex, {table.want}, {tolerance}{inputs})"
    else:
        call = f"{alias}.Case(mlxBase+mlxIndex, func() interface{{}} {{ return {table.call} }})"
    return (
        f"\t{{\n\t\tmlxBase := {plan.base(table)}\n\t\tmlxTable := {table.table}\n"
        f"\t\tfor mlxIndex, {table.loop_var} := range mlxTable {{\n"
        f"\t\t\t{table.loop_var} := {table.loop_var}\n\t\t\t{call}\n\t\t}}\n\t}}"
    )
