"""Go source read without a Go toolchain: tokens, matching brackets, top-level declarations.

The loader, the sandbox's program assembly and test splitting, and the extraction of a
model's Go answer all need to know where a function ends. Counting braces in raw text
is the classic mistake (a `}` in a string, a rune or a comment ends the function early),
so every reader here works on tokens: strings ("...", `raw`), runes and comments are
single tokens, and brackets are matched over the rest. A cut-off answer (an unterminated
string or comment, unclosed braces) still tokenizes; its last declaration is marked open.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

DECL_KEYWORDS = ("package", "import", "func", "type", "var", "const")
OPENERS = {"(": ")", "[": "]", "{": "}"}
CLOSERS = {")", "]", "}"}
TOKEN = re.compile(
    r"""(?P<newline>\n)
    |(?P<space>[ \t\r\f\v]+)
    |(?P<comment>//[^\n]*|/\*(?:.|\n)*?(?:\*/|\Z))
    |(?P<string>"(?:\\.|[^"\\\n])*(?:"|(?=\n)|\Z)|`[^`]*(?:`|\Z))
    |(?P<rune>'(?:\\.|[^'\\\n])*(?:'|(?=\n)|\Z))
    |(?P<number>\.?\d(?:[eEpP][+-]|[\w.])*)
    |(?P<ident>[^\W\d]\w*)
    |(?P<op><<=|>>=|&\^=|\.\.\.|&&|\|\||<-|\+\+|--|==|!=|<=|>=|:=|[-+*/%&|^<>]=|<<|>>|&\^|.)
    """,
    re.X,
)


@dataclass(frozen=True)
class Token:
    kind: str  # ident, number, string, rune, comment, op
    text: str
    start: int  # offsets into the source
    end: int
    line: int  # 1-based


@dataclass(frozen=True)
class Decl:
    """A top-level declaration: its keyword, the name it declares (a method's is
    `Type.Name`), and where it is, doc comment included."""

    keyword: str
    name: str
    start: int
    end: int
    first_line: int
    closed: bool  # its brackets are balanced (a cut-off answer's last one may not be)

    def text(self, source: str) -> str:
        return source[self.start : self.end]


def tokenize(source: str) -> list[Token]:
    """Every token but spaces and newlines, comments included."""
    tokens, line = [], 1
    for match in TOKEN.finditer(source):
        kind, text = match.lastgroup, match.group()
        if kind not in ("newline", "space"):
            tokens.append(Token(kind, text, match.start(), match.end(), line))
        line += text.count("\n")
    return tokens


def code_tokens(source: str) -> list[Token]:
    """The tokens that are code: comments left out."""
    return [token for token in tokenize(source) if token.kind != "comment"]


def closing(tokens: list[Token], index: int) -> int | None:
    """The index of the bracket that closes `tokens[index]`, or None if it never does."""
    depth = 0
    for position in range(index, len(tokens)):
        text = tokens[position].text if tokens[position].kind == "op" else ""
        if text in OPENERS:
            depth += 1
        elif text in CLOSERS:
            depth -= 1
            if depth == 0:
                return position
    return None


def declarations(source: str) -> list[Decl]:
    """The top-level declarations of a Go file, in order. A declaration starts at a
    keyword at bracket depth 0 that begins a line (or follows a `;`), so `var f = func()
    {...}` is one declaration; it runs to the next one, doc comments going with the next."""
    tokens = tokenize(source)
    starts, depth, previous = [], 0, None
    for index, token in enumerate(tokens):
        if token.kind == "op" and token.text in OPENERS:
            depth += 1
        elif token.kind == "op" and token.text in CLOSERS:
            depth = max(depth - 1, 0)
        elif depth == 0 and token.kind == "ident" and token.text in DECL_KEYWORDS:
            if previous is None or previous.line < token.line or previous.text == ";":
                starts.append(index)
        if token.kind != "comment":
            previous = token
    decls = []
    for number, index in enumerate(starts):
        begin = _doc_start(tokens, index, starts[number - 1] if number else -1)
        stop = _doc_start(tokens, starts[number + 1], index) if number + 1 < len(starts) else len(tokens)
        decls.append(_decl(source, tokens, begin, index, stop))
    return decls


def _doc_start(tokens: list[Token], index: int, floor: int) -> int:
    """Where the doc comment right above `tokens[index]` starts (comment lines with no gap)."""
    while index - 1 > floor and tokens[index - 1].kind == "comment" and _touches(tokens[index - 1], tokens[index]):
        index -= 1
    return index


def _touches(comment: Token, following: Token) -> bool:
    return following.line - (comment.line + comment.text.count("\n")) <= 1


def _decl(source: str, tokens: list[Token], begin: int, index: int, stop: int) -> Decl:
    own = [t for t in tokens[index:stop] if t.kind != "comment"]
    keyword = own[0].text
    end = tokens[stop - 1].end if stop > index else tokens[index].end
    balanced = sum((t.text in OPENERS) - (t.text in CLOSERS) for t in own if t.kind == "op") == 0
    first = tokens[begin]
    return Decl(keyword, _declared_name(own), first.start, end, first.line, balanced)


def _declared_name(own: list[Token]) -> str:
    """func Name, func (r T) Name -> T.Name, type Name, var/const Name; "" for groups."""
    if len(own) < 2:
        return ""
    if own[0].text == "func" and own[1].text == "(":
        receiver_end = closing(own, 1)
        receiver = [t.text for t in own[2:receiver_end] if t.kind == "ident"] if receiver_end else []
        name = own[receiver_end + 1].text if receiver_end and receiver_end + 1 < len(own) else ""
        return f"{receiver[-1]}.{name}" if receiver else name
    if own[0].text == "package":
        return own[1].text
    return own[1].text if own[1].kind == "ident" else ""


def function(source: str, name: str) -> Decl | None:
    """The last top-level `func name` of the source (not a method), if any."""
    found = [d for d in declarations(source) if d.keyword == "func" and d.name == name]
    return found[-1] if found else None


def package_name(source: str) -> str | None:
    return next((d.name for d in declarations(source) if d.keyword == "package"), None)


def split_top_level(tokens: list[Token], separator: str = ",") -> list[list[Token]]:
    """`tokens` (the inside of a bracket) split at separators outside nested brackets."""
    parts, current, depth = [], [], 0
    for token in tokens:
        if token.kind == "op" and token.text in OPENERS:
            depth += 1
        elif token.kind == "op" and token.text in CLOSERS:
            depth -= 1
        if depth == 0 and token.kind == "op" and token.text == separator:
            parts.append(current)
            current = []
        else:
            current.append(token)
    if current:
        parts.append(current)
    return parts


def span(source: str, tokens: list[Token]) -> str:
    """The source text from the first to the last of `tokens`."""
    return source[tokens[0].start : tokens[-1].end] if tokens else ""
