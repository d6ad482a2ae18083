"""The explorer: a small filter language over endpoint attributes, and the built-in query templates.

Language (case-insensitive keywords; strings in double or single quotes with backslash escapes)::

    expr       := term ("or" term)*
    term       := factor ("and" factor)*
    factor     := "not" factor | "(" expr ")" | comparison | BOOL_FIELD
    comparison := FIELD ("=" | "!=" | "<" | "<=" | ">" | ">=") value
                | FIELD ["not"] "in" "(" value ("," value)* ")"
                | FIELD "contains" STRING
    value      := STRING | NUMBER | "true" | "false"

Example: ``external and authentication = "unauthenticated" and data_type in ("credit_card", "iban")``.
Fields and their kinds are in ``collector.fields.FIELDS``. ``data_type`` is a set: ``=``/``in`` mean
"has one of", ``!=``/``not in`` mean "has none of". ``sensitivity`` compares in order
(none < low < medium < high).

The tokenizer and the recursive-descent parser are hand-written, and the parse produces SQLAlchemy
expressions with bound parameters: user text is only ever a bound value, never SQL. Errors carry the
0-based character position they point at.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa

from collector import fields as F
from collector.inventory import SENSITIVITY_LEVELS
from collector.store import schema as t

MAX_QUERY_CHARS = 4096
MAX_DEPTH = 32
MAX_IN_VALUES = 100
_KEYWORDS = {"and", "or", "not", "in", "contains", "true", "false"}
_OPS = ("!=", "<=", ">=", "=", "<", ">")


class QueryError(ValueError):
    def __init__(self, message: str, position: int) -> None:
        super().__init__(f"{message} (at position {position})")
        self.message = message
        self.position = position


@dataclass(frozen=True, slots=True)
class Token:
    kind: str  # "ident" | "keyword" | "string" | "number" | "op" | "(" | ")" | "," | "end"
    value: str | float
    pos: int


def tokenize(text: str) -> list[Token]:
    if len(text) > MAX_QUERY_CHARS:
        raise QueryError(f"the query is longer than {MAX_QUERY_CHARS} characters", MAX_QUERY_CHARS)
    out: list[Token] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c.isspace():
            i += 1
        elif c in "(),":
            out.append(Token(c, c, i))
            i += 1
        elif c in "\"'":
            start, i, chars = i, i + 1, []
            while True:
                if i >= n:
                    raise QueryError("unterminated string", start)
                ch = text[i]
                if ch == "\\" and i + 1 < n:
                    chars.append(text[i + 1])
                    i += 2
                elif ch == c:
                    i += 1
                    break
                else:
                    chars.append(ch)
                    i += 1
            out.append(Token("string", "".join(chars), start))
        elif c.isdigit() or (c == "-" and i + 1 < n and text[i + 1].isdigit()):
            start = i
            i += 1
            while i < n and (text[i].isdigit() or text[i] == "."):
                i += 1
            try:
                out.append(Token("number", float(text[start:i]), start))
            except ValueError:
                raise QueryError(f"bad number {text[start:i]!r}", start) from None
        elif c.isalpha() or c == "_":
            start = i
            while i < n and (text[i].isalnum() or text[i] == "_"):
                i += 1
            word = text[start:i]
            kind = "keyword" if word.lower() in _KEYWORDS else "ident"
            out.append(Token(kind, word.lower() if kind == "keyword" else word, start))
        else:
            for op in _OPS:
                if text.startswith(op, i):
                    out.append(Token("op", op, i))
                    i += len(op)
                    break
            else:
                raise QueryError(f"unexpected character {c!r}", i)
    out.append(Token("end", "", n))
    return out


Value = str | float | bool


class _Parser:
    def __init__(self, text: str, now: datetime) -> None:
        self.tokens = tokenize(text)
        self.i = 0
        self.now = now
        self.depth = 0

    @property
    def tok(self) -> Token:
        return self.tokens[self.i]

    def take(self) -> Token:
        token = self.tokens[self.i]
        self.i += 1
        return token

    def is_kw(self, word: str) -> bool:
        return self.tok.kind == "keyword" and self.tok.value == word

    def expect(self, kind: str, what: str) -> Token:
        if self.tok.kind != kind:
            raise QueryError(f"expected {what}, found {_describe(self.tok)}", self.tok.pos)
        return self.take()

    def parse(self) -> sa.ColumnElement[bool]:
        if self.tok.kind == "end":
            raise QueryError("the query is empty", 0)
        expr = self.expr()
        if self.tok.kind != "end":
            raise QueryError(f"expected 'and', 'or' or the end, found {_describe(self.tok)}", self.tok.pos)
        return expr

    def expr(self) -> sa.ColumnElement[bool]:
        parts = [self.term()]
        while self.is_kw("or"):
            self.take()
            parts.append(self.term())
        return parts[0] if len(parts) == 1 else sa.or_(*parts)

    def term(self) -> sa.ColumnElement[bool]:
        parts = [self.factor()]
        while self.is_kw("and"):
            self.take()
            parts.append(self.factor())
        return parts[0] if len(parts) == 1 else sa.and_(*parts)

    def factor(self) -> sa.ColumnElement[bool]:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise QueryError(f"the query nests deeper than {MAX_DEPTH} levels", self.tok.pos)
        try:
            if self.is_kw("not"):
                self.take()
                return sa.not_(self.factor())
            if self.tok.kind == "(":
                self.take()
                inner = self.expr()
                self.expect(")", "')'")
                return inner
            return self.comparison()
        finally:
            self.depth -= 1

    def comparison(self) -> sa.ColumnElement[bool]:
        tok = self.expect("ident", "a field name, 'not' or '('")
        name = str(tok.value).lower()
        field = F.FIELDS.get(name)
        if field is None:
            raise QueryError(f"unknown field {tok.value!r} (fields: {', '.join(F.FIELDS)})", tok.pos)
        if self.tok.kind == "op":
            op = self.take()
            value = self.value(field, name)
            return self.compare(name, field, str(op.value), [value], op.pos)
        negate = False
        if self.is_kw("not"):
            self.take()
            negate = True
            if not self.is_kw("in"):
                raise QueryError(f"expected 'in' after 'not', found {_describe(self.tok)}", self.tok.pos)
        if self.is_kw("in"):
            at = self.take().pos
            self.expect("(", "'(' after 'in'")
            values = [self.value(field, name)]
            while self.tok.kind == ",":
                self.take()
                values.append(self.value(field, name))
                if len(values) > MAX_IN_VALUES:
                    raise QueryError(f"more than {MAX_IN_VALUES} values in a list", self.tok.pos)
            self.expect(")", "',' or ')'")
            cond = self.compare(name, field, "=", values, at)
            return sa.not_(cond) if negate else cond
        if self.is_kw("contains"):
            at = self.take().pos
            if field.kind not in ("str", "set"):
                raise QueryError(f"'contains' needs a text field; {name} is {field.kind}", at)
            text = self.expect("string", "a string after 'contains'")
            pattern = str(text.value).lower()
            if name == "data_type":
                dt = t.endpoint_data_types.c
                return F.data_types_exist(self.now, sa.func.lower(dt.type).contains(pattern, autoescape=True))
            return sa.func.lower(F.column(name, self.now)).contains(pattern, autoescape=True)
        if field.kind == "bool":
            return F.column(name, self.now) == sa.true()  # a bare boolean field
        raise QueryError(f"expected an operator after {name}, found {_describe(self.tok)}", self.tok.pos)

    def value(self, field: F.Field, name: str) -> Value:
        tok = self.tok
        if tok.kind == "string":
            self.take()
            text = str(tok.value)
            if field.kind == "enum" and text not in field.choices:
                raise QueryError(f"{name} must be one of {', '.join(field.choices)}, not {text!r}", tok.pos)
            if field.kind in ("number", "bool"):
                raise QueryError(f"{name} needs a {field.kind}, not a string", tok.pos)
            return text
        if tok.kind == "number":
            self.take()
            if field.kind != "number":
                raise QueryError(f"{name} needs a {'string' if field.kind != 'bool' else 'true/false'}", tok.pos)
            return float(tok.value)
        if tok.kind == "keyword" and tok.value in ("true", "false"):
            self.take()
            if field.kind != "bool":
                raise QueryError(f"{name} is not a true/false field", tok.pos)
            return tok.value == "true"
        raise QueryError(f"expected a value, found {_describe(tok)}", tok.pos)

    def compare(self, name: str, field: F.Field, op: str, values: list[Value], pos: int) -> sa.ColumnElement[bool]:
        if field.kind == "set":
            if op not in ("=", "!="):
                raise QueryError(f"{name} supports =, !=, in, not in and contains", pos)
            dt = t.endpoint_data_types.c
            has = F.data_types_exist(self.now, dt.type.in_([str(v) for v in values]))
            return has if op == "=" else sa.not_(has)
        if field.kind in ("str", "bool") and op not in ("=", "!="):
            raise QueryError(f"{name} supports = and != (and in / not in), not {op}", pos)
        col = F.column(name, self.now)
        if name == "sensitivity":
            values = [float(SENSITIVITY_LEVELS.index(str(v))) for v in values]
        if name == "method":
            values = [str(v).upper() for v in values]
        if len(values) > 1:
            return col.in_(values)
        value = values[0]
        ops: dict[str, Callable[[sa.ColumnElement[object], Value], sa.ColumnElement[bool]]] = {
            "=": lambda c, v: c == v,
            "!=": lambda c, v: c != v,
            "<": lambda c, v: c < v,
            "<=": lambda c, v: c <= v,
            ">": lambda c, v: c > v,
            ">=": lambda c, v: c >= v,
        }
        if field.kind == "bool":
            return col == (sa.true() if value == (op == "=") else sa.false())
        return ops[op](col, value)


def _describe(tok: Token) -> str:
    if tok.kind == "end":
        return "the end of the query"
    if tok.kind == "string":
        return f"string {tok.value!r}"
    return repr(tok.value)


def parse_filter(text: str, now: datetime) -> sa.ColumnElement[bool]:
    """The SQL condition for a filter (``QueryError`` with a position when it is not valid)."""
    return _Parser(text, now).parse()


@dataclass(frozen=True, slots=True)
class Template:
    id: str
    title: str
    description: str
    filter: str


TEMPLATES: list[Template] = [
    Template(
        "internet-exposed-sensitive-data",
        "Internet exposed API endpoints with sensitive data",
        "Endpoints called from the internet in the last 30 days that carry sensitive data.",
        'external and sensitivity != "none"',
    ),
    Template(
        "unencrypted-apis-unauthenticated-endpoints",
        "APIs communicating over unencrypted protocols with unauthenticated API endpoints",
        "Unauthenticated endpoints of APIs that saw plaintext HTTP in the last 30 days.",
        'api_plaintext and authentication = "unauthenticated"',
    ),
    Template(
        "internet-exposed-unauthenticated-sensitive",
        "Internet exposed APIs that are unauthenticated carry sensitive data",
        "The attack path: reachable from the internet, no credential needed, sensitive data inside.",
        'external and authentication = "unauthenticated" and sensitivity != "none"',
    ),
    Template(
        "shadow-endpoints-external",
        "Shadow endpoints with external traffic",
        "Endpoints not in the API's spec that internet clients call.",
        "shadow and external",
    ),
    Template(
        "endpoints-with-high-alerts",
        "Endpoints with active high-severity alerts",
        "Endpoints with at least one active alert of high severity.",
        "high_alerts > 0",
    ),
]
TEMPLATES_BY_ID = {tpl.id: tpl for tpl in TEMPLATES}


def resolve(template_or_filter: str) -> tuple[str, Template | None]:
    """A template id (or exact title) gives its filter; anything else is a filter."""
    tpl = TEMPLATES_BY_ID.get(template_or_filter) or next(
        (x for x in TEMPLATES if x.title.lower() == template_or_filter.strip().lower()), None
    )
    return (tpl.filter, tpl) if tpl else (template_or_filter, None)


__all__ = ["TEMPLATES", "F", "QueryError", "Template", "parse_filter", "resolve", "tokenize"]
