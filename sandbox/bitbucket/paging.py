"""Bitbucket's pages: ``{pagelen, size, page, next, values}`` with ``next`` an absolute URL.

``pagelen`` defaults to 10 and is bounded per endpoint (100 for most, 50 for pull requests);
outside the bounds, or not a number, Bitbucket answers 400. ``page`` starts at 1.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from werkzeug.datastructures import MultiDict

from sandbox.bitbucket.errors import ApiError

DEFAULT_PAGELEN = 10
MAX_PAGELEN = 100
PULLREQUEST_MAX_PAGELEN = 50


@dataclass(frozen=True)
class PageRequest:
    """Which slice a request asks for."""

    page: int
    pagelen: int

    @property
    def start(self) -> int:
        return (self.page - 1) * self.pagelen


def page_request(
    args: MultiDict[str, str], *, default: int = DEFAULT_PAGELEN, maximum: int = MAX_PAGELEN
) -> PageRequest:
    """Read and validate ``page`` and ``pagelen``; raises a 400 ApiError naming the parameter."""
    raw_len = args.get("pagelen")
    pagelen = default
    if raw_len is not None:
        if not raw_len.strip().isdigit() or not 1 <= int(raw_len) <= maximum:
            raise ApiError(
                400,
                "Invalid pagelen",
                f"pagelen must be a whole number between 1 and {maximum}, not {raw_len!r}.",
            )
        pagelen = int(raw_len)
    raw_page = args.get("page")
    page = 1
    if raw_page is not None:
        if not raw_page.strip().isdigit() or int(raw_page) < 1:
            raise ApiError(400, "Invalid page", f"page must be a whole number from 1 on, not {raw_page!r}.")
        page = int(raw_page)
    return PageRequest(page, pagelen)


def next_url(base: str, args: MultiDict[str, str], page: int) -> str:
    """The absolute URL of page ``page`` of the same listing (same query, other page)."""
    items = [(k, v) for k, v in args.items(multi=True) if k != "page"]
    items.append(("page", str(page)))
    return f"{base}?{urlencode(items)}"


def page_of(
    items: Sequence[Any],
    req: PageRequest,
    *,
    base: str,
    args: MultiDict[str, str],
    with_size: bool = True,
) -> dict[str, Any]:
    """One page of an already filtered and rendered list."""
    values = list(items[req.start : req.start + req.pagelen])
    body: dict[str, Any] = {"pagelen": req.pagelen, "values": values, "page": req.page}
    if with_size:
        body["size"] = len(items)
    if req.start + req.pagelen < len(items):
        body["next"] = next_url(base, args, req.page + 1)
    if req.page > 1:
        body["previous"] = next_url(base, args, req.page - 1)
    return body
