"""Regular expressions the configuration holds (``rollback.migration_pattern``) that could take
exponential (or high polynomial) time on some text: found before anything runs them.

Python's ``re`` backtracks, and cannot be given a time limit; the pattern runs over a release
phase's output, which the controller does not write. So a pattern is refused when it has one of the
shapes that make backtracking blow up, read from the parse tree ``re`` itself builds:

- **nested quantifiers**: a repeat inside a repeated group, such as ``(a+)+`` or ``(\\w*\\s?)*``;
- **alternatives that can start alike inside a repeat**, such as ``(a|ab)+`` or ``(\\w|\\d)*``;
- **two unbounded repeats in a row over the same characters**, such as ``\\s*\\s*`` or ``.*.*``.

Possessive repeats (``a++``) and atomic groups (``(?>...)``) never give back what they matched, so
what is inside them is not counted. The rule is a guard, not a proof: it refuses some harmless
patterns (they have a possessive or atomic spelling that passes) and knows the common culprits only.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable
from typing import Any

# The parser ``re.compile`` uses (``sre_parse`` before Python 3.11): the pattern is read exactly as
# it will run.
_parser: Any = importlib.import_module("re._parser")

NESTED = (
    "nested quantifiers (a repeat inside a repeated group, such as (a+)+) can take exponential time on "
    "some output: write it without nesting, or make the inner repeat possessive (a++) or atomic ((?>...))"
)
ALTERNATIVES = (
    "a repeated group whose alternatives can start alike (such as (a|ab)+) can take exponential time "
    "on some output: make each alternative start differently, or make the group atomic ((?>...))"
)
ADJACENT = (
    "two repeats in a row over the same characters (such as \\s*\\s* or .*.*) can take polynomial time "
    "on long output: merge them, or make the first possessive (\\s*+)"
)

_UNBOUNDED = _parser.MAXREPEAT
_REPEATS = ("MAX_REPEAT", "MIN_REPEAT")
# The characters the sets are compared on: every Latin-1 character and a few beyond (digits, spaces
# and letters of other scripts), plus each character the pattern names.
_SAMPLE = "".join(chr(c) for c in range(256)) + "\u0660\u2028\u3000\u017f\u212a\u0391\u03b1\u0430"


def backtracking_problem(pattern: str) -> str | None:
    """What makes ``pattern`` (a valid regular expression) liable to catastrophic backtracking, or
    None when it has none of the shapes above."""
    tree = _parser.parse(pattern)
    flags = tree.state.flags | _local_flags(tree)
    sample = _SAMPLE + "".join(sorted({chr(v) for v in _literals(tree)}))
    return _Judge(sample, bool(flags & _parser.SRE_FLAG_IGNORECASE)).sequence(list(tree))


def _literals(items: Iterable[Any]) -> Iterable[int]:
    """Every character the pattern names (literals, the ends of ranges)."""
    for op, av in items:
        if op.name in ("LITERAL", "NOT_LITERAL"):
            yield av
        elif op.name == "RANGE":
            yield from av
        for child in _children(op.name, av):
            yield from _literals(child)


def _local_flags(items: Iterable[Any]) -> int:
    """The flags groups switch on for themselves (``(?i:...)``), together."""
    flags = 0
    for op, av in items:
        if op.name == "SUBPATTERN":
            flags |= av[1]
        for child in _children(op.name, av):
            flags |= _local_flags(child)
    return flags


def _children(name: str, av: Any) -> list[list[Any]]:
    """The sub-sequences of one item of the tree."""
    if name == "SUBPATTERN":
        return [list(av[3])]
    if name in (*_REPEATS, "POSSESSIVE_REPEAT"):
        return [list(av[2])]
    if name == "BRANCH":
        return [list(alternative) for alternative in av[1]]
    if name in ("ASSERT", "ASSERT_NOT"):
        return [list(av[1])]
    if name == "ATOMIC_GROUP":
        return [list(av)]
    if name == "GROUPREF_EXISTS":
        return [list(branch) for branch in av[1:] if branch is not None]
    if name == "IN":
        return [list(av)]
    return []


class _Judge:
    def __init__(self, sample: str, ignore_case: bool) -> None:
        self.sample = sample
        self.ignore_case = ignore_case
        self.everything = frozenset(sample)

    def sequence(self, items: list[Any]) -> str | None:
        """The first problem in a sequence of items, looking inside each."""
        previous: frozenset[str] | None = None  # the characters of an unbounded repeat just before
        for op, av in items:
            name = op.name
            if name in _REPEATS:
                low, high, body = av
                if high == _UNBOUNDED or high > 1:
                    if any(self._varies(item) for item in body):
                        return NESTED
                    if self._ambiguous(list(body)):
                        return ALTERNATIVES
                if high == _UNBOUNDED and low != high:
                    chars, _ = self.first(list(body))
                    if previous is not None and previous & chars:
                        return ADJACENT
                    previous = chars
                    problem = self.sequence(list(body))
                    if problem:
                        return problem
                    continue
            if name not in ("AT", "ASSERT", "ASSERT_NOT"):  # zero-width items keep two repeats in a row
                previous = None
            if name == "IN":
                continue  # one character
            for child in _children(name, av):
                problem = self.sequence(child)
                if problem:
                    return problem
        return None

    def _varies(self, item: Any) -> bool:
        """Whether ``item`` holds a repeat that can match more or less (outside atomic groups and
        possessive repeats)."""
        op, av = item
        if op.name in _REPEATS and av[0] != av[1]:
            return True
        if op.name in ("ATOMIC_GROUP", "POSSESSIVE_REPEAT", "IN"):
            return False
        return any(self._varies(child) for sub in _children(op.name, av) for child in sub)

    def _ambiguous(self, items: list[Any]) -> bool:
        """Whether ``items`` hold alternatives (outside atomic groups) two of which can start with the
        same character, or one of which can match nothing."""
        for op, av in items:
            name = op.name
            if name == "BRANCH":
                seen: frozenset[str] = frozenset()
                for alternative in av[1]:
                    chars, empty = self.first(list(alternative))
                    if empty or seen & chars:
                        return True
                    seen |= chars
            if name in ("ATOMIC_GROUP", "POSSESSIVE_REPEAT", "IN"):
                continue
            if any(self._ambiguous(child) for child in _children(name, av)):
                return True
        return False

    def first(self, items: list[Any]) -> tuple[frozenset[str], bool]:
        """The characters a match of ``items`` can start with, and whether it can be empty."""
        chars: frozenset[str] = frozenset()
        for op, av in items:
            name = op.name
            if name in ("AT", "ASSERT", "ASSERT_NOT"):
                continue
            if name in ("LITERAL", "NOT_LITERAL", "ANY", "IN", "CATEGORY"):
                return chars | self._set(name, av), False
            if name == "SUBPATTERN":
                start, empty = self.first(list(av[3]))
            elif name in (*_REPEATS, "POSSESSIVE_REPEAT"):
                start, empty = self.first(list(av[2]))
                empty = empty or av[0] == 0
            elif name == "ATOMIC_GROUP":
                start, empty = self.first(list(av))
            elif name == "BRANCH":
                results = [self.first(list(alternative)) for alternative in av[1]]
                start = frozenset().union(*(r[0] for r in results))
                empty = any(r[1] for r in results)
            else:  # a back reference, a conditional: anything
                start, empty = self.everything, True
            chars |= start
            if not empty:
                return chars, False
        return chars, True

    def _set(self, name: str, av: Any) -> frozenset[str]:
        """The sample characters one single-character item matches."""
        if name == "IN":
            negate = any(op.name == "NEGATE" for op, _ in av)
            found = frozenset().union(*(self._set(op.name, value) for op, value in av if op.name != "NEGATE"))
            return self.everything - found if negate else found
        if name == "ANY":
            return self.everything
        if name == "CATEGORY":
            return frozenset(c for c in self.sample if _in_category(av.name, c))
        if name in ("RANGE", "RANGE_UNI_IGNORE"):
            low, high = av
            return frozenset(c for c in self.sample if self._same(c, low, high))
        if name in ("LITERAL", "NOT_LITERAL"):
            matched = frozenset(c for c in self.sample if self._same(c, av, av))
            return self.everything - matched if name == "NOT_LITERAL" else matched
        return self.everything

    def _same(self, char: str, low: int, high: int) -> bool:
        if low <= ord(char) <= high:
            return True
        if not self.ignore_case:
            return False
        return any(
            low <= ord(c) <= high for c in (char.lower(), char.upper(), char.casefold()) if len(c) == 1
        )


def _in_category(category: str, char: str) -> bool:
    """Whether ``char`` is in the category (``CATEGORY_DIGIT``, ``CATEGORY_NOT_SPACE``...)."""
    negated = "_NOT_" in category
    kind = category.removeprefix("CATEGORY_").replace("NOT_", "").removeprefix("UNI_").removeprefix("LOC_")
    if kind == "DIGIT":
        found = char.isdecimal()
    elif kind == "SPACE":
        found = char.isspace()
    elif kind == "WORD":
        found = char.isalnum() or char == "_"
    elif kind == "LINEBREAK":
        found = char in "\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"
    else:
        return True
    return found != negated
