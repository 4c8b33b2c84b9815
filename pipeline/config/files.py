"""Reading the configuration's YAML files safely and replacing ``${VAR}`` / ``${VAR:-default}`` in
their string values.

Safely means: a repeated key is an error, a syntax error names its line, and a hostile file is
refused with one line before it can cost much time or memory. A file is at most
:data:`MAX_FILE_BYTES` (no more is read), UTF-8 text without NUL bytes; while it is parsed (before
any value is built) aliases (``*name``, how "billion laughs" documents expand), tags that build
Python objects (``!!python/...``), nesting deeper than :data:`MAX_DEPTH` and more than
:data:`MAX_VALUES` values are refused, and a value YAML cannot read (a date such as 2026-13-45, a
number of thousands of digits) is a problem naming its line rather than a crash.
"""

from __future__ import annotations

import re
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from pipeline.config.messages import Loc, key_path
from pipeline.config.shown import shown
from pipeline.errors import ConfigError

MAX_FILE_BYTES = 1024 * 1024
"""A configuration file is a few kilobytes; a larger one is refused before more is read."""
MAX_DEPTH = 64
"""Mappings and lists nested deeper than this are refused (the shipped files nest 4 deep)."""
MAX_VALUES = 10_000
"""A file holding more values than this is refused (the shipped files hold fewer than 100)."""

_PYTHON_TAG = "tag:yaml.org,2002:python/"
_KINDS = {
    "tag:yaml.org,2002:int": "not a whole number YAML can read (at most 4300 digits)",
    "tag:yaml.org,2002:float": "not a number YAML can read",
    "tag:yaml.org,2002:timestamp": "not a valid date or time (quote it to keep it as text)",
}


class _NotAllowed(yaml.YAMLError):
    """Something a configuration file may not hold, found while parsing (``mark``: where)."""

    def __init__(self, message: str, mark: Any) -> None:
        super().__init__(message)
        self.message = message
        self.mark = mark


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses a key repeated in one mapping (PyYAML would keep the last silently),
    and, while composing (before any value is built), aliases, Python tags, nesting deeper than
    :data:`MAX_DEPTH` and more than :data:`MAX_VALUES` values."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0
        self._values = 0

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent):
            raise _NotAllowed(
                "aliases (*name) are not allowed: write the value out in full "
                "(a configuration has no need of anchors and aliases)",
                event.start_mark,
            )
        tag = getattr(event, "tag", None)
        if isinstance(tag, str) and tag.startswith(_PYTHON_TAG):
            raise _NotAllowed(
                "tags that build Python objects (!!python/...) are not allowed: write plain values",
                event.start_mark,
            )
        self._values += 1
        if self._values > MAX_VALUES:
            raise _NotAllowed(
                f"holds more than {MAX_VALUES} values: a configuration holds a few hundred at most",
                event.start_mark,
            )
        nests = isinstance(event, yaml.MappingStartEvent | yaml.SequenceStartEvent)
        if nests:
            self._depth += 1
            if self._depth > MAX_DEPTH:
                raise _NotAllowed(
                    f"nested deeper than {MAX_DEPTH} levels: a configuration needs a few", event.start_mark
                )
        try:
            return super().compose_node(parent, index)
        finally:
            if nests:
                self._depth -= 1

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep=deep)
        except yaml.YAMLError:
            raise
        except Exception:  # a constructor choking on a value: a 13th month, a 5000-digit number
            what = _KINDS.get(node.tag, "a value YAML cannot read as its tag says")
            raise yaml.constructor.ConstructorError(None, None, what, node.start_mark) from None

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if isinstance(key, list | dict):
                continue  # unhashable: the base class reports it
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {shown(repr(key))}", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _read_text(path: Path) -> tuple[str | None, str | None]:
    """(the file's text, None), or (None, the problem); never reads more than MAX_FILE_BYTES + 1.
    Line ends are read as Python's text mode reads them. FileNotFoundError when it is missing."""
    try:
        if not stat.S_ISREG(path.stat().st_mode):
            return None, "cannot read: not a regular file"
        with path.open("rb") as file:
            raw = file.read(MAX_FILE_BYTES + 1)
    except FileNotFoundError:
        raise
    except OSError as exc:
        return None, f"cannot read: {exc.strerror or type(exc).__name__}"
    if len(raw) > MAX_FILE_BYTES:
        return None, "larger than 1 MiB: a configuration file is a few kilobytes; is this the right file?"
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return None, "cannot read: not UTF-8 text"
    if "\0" in text:
        return None, f"cannot read: binary content (a NUL byte{_at(text, text.index(chr(0)))}), not YAML text"
    return text.replace("\r\n", "\n").replace("\r", "\n"), None


def _at(text: str, position: int) -> str:
    """`` at line L, column C`` of ``position`` in ``text``."""
    line = text.count("\n", 0, position) + 1
    return f" at line {line}, column {position - (text.rfind(chr(10), 0, position) + 1) + 1}"


def read_yaml(
    path: Path, display: str, problems: list[ConfigError], *, missing: str
) -> dict[str, Any] | None:
    """The file's top-level mapping (an empty file is an empty one), or None after adding a problem."""
    try:
        text, unreadable = _read_text(path)
    except FileNotFoundError:
        problems.append(ConfigError(display, "", missing))
        return None
    if text is None:
        problems.append(ConfigError(display, "", unreadable or "cannot read"))
        return None
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)
    except _NotAllowed as exc:
        where = f"line {exc.mark.line + 1}, column {exc.mark.column + 1}: " if exc.mark is not None else ""
        problems.append(ConfigError(display, "", f"{where}{exc.message}"))
        return None
    except yaml.reader.ReaderError as exc:
        problems.append(
            ConfigError(
                display,
                "",
                f"cannot read: not YAML text (control character #x{exc.character:04x}"
                f"{_at(text, exc.position)})",
            )
        )
        return None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        context = ""
        if exc.context and exc.context_mark is not None and exc.problem:
            context = f" ({exc.context} at line {exc.context_mark.line + 1})"
        problems.append(
            ConfigError(display, "", f"invalid YAML{where}: {exc.problem or exc.context}{context}")
        )
        return None
    except yaml.YAMLError as exc:
        problems.append(ConfigError(display, "", f"invalid YAML: {type(exc).__name__}"))
        return None
    if data is None:
        return {}
    if not isinstance(data, dict):
        problems.append(ConfigError(display, "", "expected a mapping of keys at the top level"))
        return None
    return data


_REFERENCE = re.compile(r"\$\$\{|\$\{(?P<body>[^{}]*)\}")
_VARIABLE = re.compile(r"(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::-(?P<default>.*))?", re.DOTALL)


def interpolate(
    data: dict[str, Any], env: Mapping[str, str], display: str, problems: list[ConfigError]
) -> tuple[dict[str, Any], set[Loc]]:
    """``data`` with ``${VAR}``/``${VAR:-default}`` replaced in every string value (keys become
    strings), and the key paths that could not be resolved (each already reported)."""
    unresolved: set[Loc] = set()

    def walk(value: Any, loc: Loc) -> Any:
        if isinstance(value, dict):
            return {str(k): walk(v, (*loc, str(k))) for k, v in value.items()}
        if isinstance(value, list):
            return [walk(v, (*loc, i)) for i, v in enumerate(value)]
        if isinstance(value, str) and "$" in value:
            result, problem = _substitute(value, env)
            if problem is None:
                return result
            problems.append(ConfigError(display, key_path(loc), problem))
            unresolved.add(loc)
        return value

    return walk(data, ()), unresolved


def _substitute(text: str, env: Mapping[str, str]) -> tuple[str, str | None]:
    """(text with references replaced, None) or (text, the problem). Never quotes a value."""
    out: list[str] = []
    position = 0
    for match in _REFERENCE.finditer(text):
        gap = text[position : match.start()]
        if "${" in gap:
            break
        out.append(gap)
        position = match.end()
        if match.group(0) == "$${":
            out.append("${")
            continue
        variable = _VARIABLE.fullmatch(match.group("body"))
        if variable is None:
            return text, "bad variable reference: write ${NAME} or ${NAME:-default}"
        name, default = variable.group("name"), variable.group("default")
        value = env.get(name)
        if default is not None and not value:
            value = default
        if value is None:
            name = shown(name)
            return (
                text,
                f"${{{name}}} is not set in the environment: set {name}, or write ${{{name}:-default}}",
            )
        out.append(value)
    if "${" in text[position:]:
        return text, "unclosed variable reference: write ${NAME} or ${NAME:-default} ($${ for a literal ${)"
    out.append(text[position:])
    return "".join(out), None
