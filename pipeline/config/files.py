"""Reading the configuration's YAML files safely (a repeated key is an error, a syntax error
names its line) and replacing ``${VAR}`` / ``${VAR:-default}`` in their string values.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from pipeline.config.messages import Loc, key_path
from pipeline.errors import ConfigError


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses a key repeated in one mapping (PyYAML would keep the last silently)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if isinstance(key, list | dict):
                continue  # unhashable: the base class reports it
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def read_yaml(
    path: Path, display: str, problems: list[ConfigError], *, missing: str
) -> dict[str, Any] | None:
    """The file's top-level mapping (an empty file is an empty one), or None after adding a problem."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        problems.append(ConfigError(display, "", missing))
        return None
    except UnicodeDecodeError:
        problems.append(ConfigError(display, "", "cannot read: not UTF-8 text"))
        return None
    except OSError as exc:
        problems.append(ConfigError(display, "", f"cannot read: {exc.strerror or type(exc).__name__}"))
        return None
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)
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
            return (
                text,
                f"${{{name}}} is not set in the environment: set {name}, or write ${{{name}:-default}}",
            )
        out.append(value)
    if "${" in text[position:]:
        return text, "unclosed variable reference: write ${NAME} or ${NAME:-default} ($${ for a literal ${)"
    out.append(text[position:])
    return "".join(out), None
