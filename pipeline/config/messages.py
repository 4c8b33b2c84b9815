"""Pydantic's validation errors turned into ours: one :class:`~pipeline.errors.ConfigError` per
problem, ``<file>: <key.path>: <what is expected / what to do>``, never repeating a configured value
(an unknown key that looks like a secret says which environment variable to set instead).
"""

from __future__ import annotations

import difflib
import types
from typing import Annotated, Any, TypeVar, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails, PydanticCustomError

from pipeline.config.environment import WEBHOOK_SECRET
from pipeline.config.shown import shown
from pipeline.errors import ConfigError

_SECRET_WORDS = ("token", "password", "passwd", "api_key", "apikey", "secret")


Loc = tuple[int | str, ...]
_M = TypeVar("_M", bound=BaseModel)

BROKEN_RULE = "broken_rule"
"""The type of the error :func:`broken_rule` makes."""


def broken_rule(*problems: tuple[Loc, str]) -> PydanticCustomError:
    """What a model's validator raises when a rule across its keys does not hold: each problem is a key
    path under the model (``("approvers", 2)``) and the whole message. :func:`validate` reports each
    word for word, after the problems of the keys taken one by one."""
    return PydanticCustomError(
        BROKEN_RULE,
        "{messages}",
        {"messages": "; ".join(message for _, message in problems), "problems": problems},
    )


# --- Turning pydantic's errors into ours ------------------------------------------------------


def validate(
    model: type[_M],
    data: dict[str, Any],
    display: str,
    problems: list[ConfigError],
    *,
    skip: set[Loc],
    prefix: Loc = (),
    rule_problems: list[ConfigError] | None = None,
) -> _M | None:
    """``data`` validated as ``model``, or None after adding a problem per error to ``problems`` (none
    under a key of ``skip``, whose ``${VAR}`` is already reported). ``prefix`` is where ``data`` sits in
    its file (a check's options: ``("checks", 0, "http")``). The problems of rules across keys
    (:func:`broken_rule`) follow the keys' own, or go to ``rule_problems`` when given."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        own = [e for e in errors if e["type"] != BROKEN_RULE]
        # Every list that holds a bad item (at any depth): its "too short" only repeats that.
        item_errors = {
            tuple(e["loc"][:i]) for e in own for i, part in enumerate(e["loc"]) if isinstance(part, int)
        }
        for error in own:
            loc = (*prefix, *error["loc"])
            if any(loc[: len(bad)] == bad for bad in skip):
                continue  # its ${VAR} is already reported
            if error["type"] == "too_short" and tuple(error["loc"]) in item_errors:
                continue  # a list whose bad items were dropped: the items' problems say it all
            problems.append(ConfigError(display, key_path(loc), _message(error, model, prefix)))
        # A rule is checked on the values as written, an unresolved ${VAR} too: none is skipped.
        for error in errors:
            if error["type"] == BROKEN_RULE:
                for where, message in (error.get("ctx") or {})["problems"]:
                    loc = (*prefix, *error["loc"], *where)
                    target = problems if rule_problems is None else rule_problems
                    target.append(ConfigError(display, key_path(loc), message))
        return None


def key_path(loc: Loc) -> str:
    """("checks", 0, "http", "retries") -> "checks[0].http.retries". Each key is :func:`shown`."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{shown(part)}" if out else shown(part))
    return out


_EXPECTED = {
    "string_type": "expected text",
    "string_too_short": "must not be empty",
    "int_type": "expected a whole number",
    "int_parsing": "expected a whole number",
    "int_from_float": "expected a whole number",
    "float_type": "expected a number",
    "float_parsing": "expected a number",
    "bool_type": "expected true or false",
    "bool_parsing": "expected true or false",
    "list_type": "expected a list",
    "tuple_type": "expected a list",
    "dict_type": "expected a mapping",
    "model_type": "expected a mapping",
    "model_attributes_type": "expected a mapping",
}


def _message(error: ErrorDetails, root: type[BaseModel], prefix: Loc) -> str:
    kind, ctx, loc = error["type"], error.get("ctx") or {}, tuple(error["loc"])
    if kind == "extra_forbidden":
        return _unknown_key(root, loc, (*prefix, *loc))
    if kind == "missing":
        description = _field(root, loc)
        return "required key is missing" + (f": {description}" if description else "")
    if kind in ("value_error", "assertion_error"):
        return str(ctx.get("error", error["msg"]))
    if kind == "literal_error":
        return f"expected {ctx.get('expected')}"
    if kind == "string_type" and isinstance(error["input"], dict) and "approvers" in loc:
        return 'expected a username, account id or "{uuid}": quote a {uuid}, or YAML reads it as a mapping'
    if kind in _EXPECTED:
        return f"{_EXPECTED[kind]}, got {_kind_of(error['input'])}"
    bounds = {
        "greater_than_equal": ("at least", "ge"),
        "greater_than": ("greater than", "gt"),
        "less_than_equal": ("at most", "le"),
        "less_than": ("less than", "lt"),
    }
    if kind in bounds:
        words, name = bounds[kind]
        return f"must be {words} {ctx.get(name)}"
    if kind == "too_short":
        return f"expected at least {ctx.get('min_length')} item(s)"
    if kind == "too_long":
        return f"expected at most {ctx.get('max_length')} item(s)"
    return error["msg"]


def _kind_of(value: object) -> str:
    """What the YAML held, in YAML's words, without the value itself."""
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "text"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return type(value).__name__


def _unknown_key(root: type[BaseModel], loc: Loc, full_loc: Loc) -> str:
    key = str(loc[-1])
    message = "unknown key"
    model = _model_at(root, loc[:-1])
    if model is not None:
        known = list(model.model_fields)
        close = difflib.get_close_matches(key, known, n=1)
        message += (f"; did you mean {close[0]}?" if close else "") + f" (known keys: {', '.join(known)})"
    if any(word in key.lower() for word in _SECRET_WORDS):
        message += f"; secrets come from the environment: set {_secret_variable(full_loc)}"
    return message


def _secret_variable(loc: Loc) -> str:
    key = str(loc[-1]).lower()
    if loc[0] == "webhooks":
        return WEBHOOK_SECRET
    if "bitbucket" in key or loc[0] == "source":
        return "BITBUCKET_TOKEN"
    if "heroku" in key or loc[0] == "heroku":
        return "HEROKU_API_KEY"
    if "database" in key or "db" in key.split("_"):
        return "PIPELINE_DATABASE_URL"
    return "BITBUCKET_TOKEN or HEROKU_API_KEY"


def _unwrap(annotation: Any) -> Any:
    """Strip Annotated[...] and Optional[...] down to the type underneath."""
    while True:
        origin = get_origin(annotation)
        if origin is Annotated:
            annotation = get_args(annotation)[0]
        elif origin in (Union, types.UnionType):
            rest = [arg for arg in get_args(annotation) if arg is not type(None)]
            if len(rest) != 1:
                return annotation
            annotation = rest[0]
        else:
            return annotation


def _model_at(root: type[BaseModel], loc: Loc) -> type[BaseModel] | None:
    """The model class found by following ``loc`` (field names, list indexes) from ``root``."""
    current: Any = root
    for part in loc:
        current = _unwrap(current)
        if isinstance(part, str):
            if (
                not (isinstance(current, type) and issubclass(current, BaseModel))
                or part not in current.model_fields
            ):
                return None
            current = current.model_fields[part].annotation
        elif get_origin(current) in (list, tuple):
            current = get_args(current)[0]
        else:
            return None
    current = _unwrap(current)
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def _field(root: type[BaseModel], loc: Loc) -> str | None:
    model = _model_at(root, loc[:-1])
    if model is None or str(loc[-1]) not in model.model_fields:
        return None
    return model.model_fields[str(loc[-1])].description
