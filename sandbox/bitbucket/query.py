"""Bitbucket's filter language (BBQL) for ``q=`` and the ``sort=`` parameter, over plain dicts.

Supported: ``field op value`` with op one of ``= != ~ !~ > >= < <=``; values as double-quoted
strings, numbers, ``true``, ``false`` or ``null``; terms joined by ``AND`` / ``OR`` (AND binds
tighter) and grouped with parentheses. ``~`` is a case-insensitive "contains". Fields are the
dotted names the endpoint lists (``source.branch.name``); anything else is a 400 that says what
could not be understood.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from sandbox.bitbucket.errors import ApiError

Getter = Callable[[Any], Any]
Predicate = Callable[[Any], bool]

_TOKEN = re.compile(
    r"""\s*(?:
        (?P<lpar>\() | (?P<rpar>\)) |
        (?P<op>!=|!~|>=|<=|=|~|>|<) |
        (?P<str>"(?:[^"\\]|\\.)*") |
        (?P<num>-?\d+(?:\.\d+)?(?![\w.:-])) |
        (?P<word>[A-Za-z_][A-Za-z0-9_.]*) |
        (?P<bad>\S+)
    )""",
    re.VERBOSE,
)


def _invalid(q: str, why: str) -> ApiError:
    return ApiError(400, "Invalid query", f"{why} in q={q!r}", fields={"q": [why]})


def _tokens(q: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    pos = 0
    while pos < len(q):
        m = _TOKEN.match(q, pos)
        if m is None or m.end() == pos:
            break
        pos = m.end()
        kind = m.lastgroup
        assert kind is not None
        if kind == "bad":
            raise _invalid(q, f"unexpected {m.group(kind)!r}")
        out.append((kind, m.group(kind)))
    return out


def _compare(op: str, actual: Any, expected: Any) -> bool:
    if op == "=":
        return bool(actual == expected)
    if op == "!=":
        return bool(actual != expected)
    if op in ("~", "!~"):
        found = isinstance(actual, str) and isinstance(expected, str) and expected.lower() in actual.lower()
        return found if op == "~" else not found
    numbers = isinstance(actual, int | float) and isinstance(expected, int | float)
    if not numbers and (actual is None or expected is None or type(actual) is not type(expected)):
        return False
    if op == ">":
        return bool(actual > expected)
    if op == ">=":
        return bool(actual >= expected)
    if op == "<":
        return bool(actual < expected)
    return bool(actual <= expected)


def parse(q: str, fields: Mapping[str, Getter]) -> Predicate:
    """Compile ``q`` into a predicate over items; raises a 400 ApiError on what it cannot parse."""
    toks = _tokens(q)
    pos = 0

    def peek() -> tuple[str, str] | None:
        return toks[pos] if pos < len(toks) else None

    def take() -> tuple[str, str]:
        nonlocal pos
        if pos >= len(toks):
            raise _invalid(q, "unexpected end of query")
        pos += 1
        return toks[pos - 1]

    def value() -> Any:
        kind, text = take()
        if kind == "str":
            return re.sub(r"\\(.)", r"\1", text[1:-1])
        if kind == "num":
            return float(text) if "." in text else int(text)
        if kind == "word" and text in ("true", "false", "null"):
            return {"true": True, "false": False, "null": None}[text]
        raise _invalid(q, f"expected a value (a quoted string, a number, true, false or null), got {text!r}")

    def term() -> Predicate:
        kind, text = take()
        if kind == "lpar":
            inner = disjunction()
            if take()[0] != "rpar":
                raise _invalid(q, "expected ')'")
            return inner
        if kind != "word" or text in ("AND", "OR"):
            raise _invalid(q, f"expected a field name, got {text!r}")
        getter = _field(fields, text, "q", "Invalid field name", "can filter on")
        op_kind, op = take()
        if op_kind != "op":
            raise _invalid(q, f"expected an operator after {text}, got {op!r}")
        expected = value()
        return lambda item: _compare(op, getter(item), expected)

    def conjunction() -> Predicate:
        parts = [term()]
        while peek() == ("word", "AND"):
            take()
            parts.append(term())
        return lambda item: all(p(item) for p in parts)

    def disjunction() -> Predicate:
        parts = [conjunction()]
        while peek() == ("word", "OR"):
            take()
            parts.append(conjunction())
        return lambda item: any(p(item) for p in parts)

    if not toks:
        raise _invalid(q, "empty query")
    predicate = disjunction()
    if pos != len(toks):
        raise _invalid(q, f"unexpected {toks[pos][1]!r}")
    return predicate


def _field(fields: Mapping[str, Getter], name: str, param: str, message: str, verb: str) -> Getter:
    """The getter of a field a query parameter names; a 400 listing the known ones otherwise."""
    if name not in fields:
        raise ApiError(
            400,
            f"{message}: {name}",
            f"{param} {verb}: {', '.join(sorted(fields))}",
            fields={param: [f"unknown field {name!r}"]},
        )
    return fields[name]


def mentions(q: str, field: str) -> bool:
    """Whether the query filters on ``field`` (e.g. whether it names ``state``)."""
    return any(kind == "word" and text == field for kind, text in _tokens(q))


def sort(items: Sequence[Any], spec: str, fields: Mapping[str, Getter]) -> list[Any]:
    """Sort by ``spec`` (``field`` or ``-field``); a 400 names an unknown field."""
    descending = spec.startswith("-")
    name = spec[1:] if descending else spec
    getter = _field(fields, name, "sort", "Invalid sort field", "can use")
    present = [i for i in items if getter(i) is not None]
    missing = [i for i in items if getter(i) is None]
    return sorted(present, key=getter, reverse=descending) + missing
