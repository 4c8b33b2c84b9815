"""The repository's Markdown renders as its authors meant, and its links lead somewhere.

Every tracked ``*.md`` file is parsed with a CommonMark parser (markdown-it-py, tables on as on
GitHub) and must have: no fence left open (a closing fence followed by text does not close it, so
everything below renders as code); every line written as a heading rendering as one; every relative
link naming a file that exists; every ``#anchor`` matching a heading of its target by GitHub's slug
rules; no mention of the directory beside the repository that a user's clone does not have.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import unicodedata
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
from markdown_it import MarkdownIt
from markdown_it.token import Token

ROOT = Path(__file__).resolve().parents[2]
OUTSIDE_DIRECTORY = "../" + "shared"  # spelt in two so this file does not mention it whole
FENCE_LINE = re.compile(r"^[ \t>]*(`{3,}|~{3,})(.*)$")
HEADING_LINE = re.compile(r"^ {0,3}#{1,6}(?:[ \t]+\S.*)?$")


def tracked_markdown() -> list[str] | str:
    """The tracked ``*.md`` files, relative to the repository root, or why they cannot be listed."""
    if shutil.which("git") is None:
        return "git is not installed: the tracked Markdown files cannot be listed"
    try:
        result = subprocess.run(
            ["git", "ls-files", "-z", "*.md"], cwd=ROOT, capture_output=True, text=True, check=False
        )
    except OSError as exc:
        return f"git could not run: {exc}"
    if result.returncode != 0:
        return f"not a git work tree, so no tracked Markdown files: {result.stderr.strip()}"
    return sorted(name for name in result.stdout.split("\0") if name)


def parser() -> MarkdownIt:
    """CommonMark, plus the tables GitHub renders."""
    return MarkdownIt("commonmark").enable("table")


@dataclass(frozen=True)
class Page:
    """One Markdown file: its source lines and the tokens CommonMark makes of it."""

    path: Path
    lines: list[str]
    tokens: list[Token]


@cache
def page(path: Path) -> Page:
    text = path.read_text(encoding="utf-8")
    return Page(path, text.splitlines(), parser().parse(text))


def slug(text: str) -> str:
    """GitHub's anchor for a heading: lower-case, punctuation dropped, each space a ``-``."""
    kept = "".join(
        char
        for char in text.lower()
        if char in " -" or unicodedata.category(char)[0] in "LMN" or unicodedata.category(char) == "Pc"
    )
    return kept.replace(" ", "-")


def heading_text(inline: Token) -> str:
    """What a heading shows: its text and code, without the Markdown around them."""
    return "".join(child.content for child in inline.children or [] if child.type in ("text", "code_inline"))


@cache
def anchors(path: Path) -> frozenset[str]:
    """Every anchor GitHub makes for the headings of ``path`` (repeats get ``-1``, ``-2``...)."""
    seen: dict[str, int] = {}
    made: set[str] = set()
    tokens = page(path).tokens
    for index, token in enumerate(tokens):
        if token.type != "heading_open":
            continue
        base = slug(heading_text(tokens[index + 1]))
        count = seen.get(base, 0)
        seen[base] = count + 1
        made.add(base if count == 0 else f"{base}-{count}")
    return frozenset(made)


def fence_problems(doc: Page, name: str) -> list[str]:
    """Fences that never close, and lines that look like a closing fence but carry text."""
    problems = []
    for token in doc.tokens:
        if token.type != "fence" or token.map is None:
            continue
        start, end = token.map
        opening = FENCE_LINE.match(doc.lines[start])
        assert opening is not None, f"{name}:{start + 1}: a fence token on a line that is no fence"
        marker = opening.group(1)
        for number in range(start + 1, end):
            inner = FENCE_LINE.match(doc.lines[number])
            if (
                inner
                and inner.group(1)[0] == marker[0]
                and len(inner.group(1)) >= len(marker)
                and inner.group(2).strip()
            ):
                problems.append(
                    f"{name}:{number + 1}: this closing fence is followed by text, so it does not close "
                    f"the fence opened on line {start + 1}: what follows renders as code"
                )
        last = doc.lines[end - 1] if end - 1 > start else ""
        closing = FENCE_LINE.match(last)
        closed = (
            end - 1 > start
            and closing is not None
            and closing.group(1)[0] == marker[0]
            and len(closing.group(1)) >= len(marker)
            and not closing.group(2).strip()
        )
        if not closed:
            problems.append(
                f"{name}:{start + 1}: this fence is never closed: the rest of the file renders as code"
            )
    return problems


def intended_headings(lines: list[str]) -> list[int]:
    """The 0-based numbers of the lines written as headings, outside fences as their author paired them.

    A fence line toggles in and out of code here whatever follows its marker, as a reader of the
    source pairs them; where CommonMark pairs them differently, a heading is lost to a code block.
    """
    found = []
    open_marker: str | None = None
    for number, line in enumerate(lines):
        fence = FENCE_LINE.match(line)
        if open_marker is None:
            if fence:
                open_marker = fence.group(1)
            elif HEADING_LINE.match(line):
                found.append(number)
        elif fence and fence.group(1)[0] == open_marker[0] and len(fence.group(1)) >= len(open_marker):
            open_marker = None
    return found


def heading_problems(doc: Page, name: str) -> list[str]:
    rendered = {token.map[0] for token in doc.tokens if token.type == "heading_open" and token.map}
    return [
        f"{name}:{number + 1}: written as a heading but does not render as one: {doc.lines[number].strip()!r}"
        for number in intended_headings(doc.lines)
        if number not in rendered
    ]


def link_line(doc: Page, block: Token, href: str) -> int:
    """The 1-based line of ``href`` within the block holding it (the block's first line when unsure)."""
    start, end = block.map or (0, 1)
    for number in range(start, end):
        if href in doc.lines[number]:
            return number + 1
    return start + 1


def shown(path: Path) -> str:
    """``path`` as the repository names it (or whole, outside the repository)."""
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def link_problems(doc: Page, name: str) -> list[str]:
    problems = []
    block: Token | None = None
    for token in doc.tokens:
        if token.map is not None:
            block = token
        if token.type != "inline" or block is None:
            continue
        for child in token.children or []:
            target = child.attrGet("href") if child.type == "link_open" else None
            if child.type == "image":
                target = child.attrGet("src")
            if not isinstance(target, str) or not target:
                continue
            parts = urlsplit(target)
            if parts.scheme or parts.netloc:
                continue
            line = link_line(doc, block, target)
            relative = unquote(parts.path)
            if relative.startswith("/"):
                destination = ROOT / relative.lstrip("/")
            elif relative:
                destination = (doc.path.parent / relative).resolve()
            else:
                destination = doc.path
            if not destination.exists():
                problems.append(f"{name}:{line}: link to {target}: {relative} does not exist")
                continue
            if parts.fragment:
                if destination.suffix != ".md" or not destination.is_file():
                    problems.append(
                        f"{name}:{line}: link to {target}: an anchor into a file that is not Markdown"
                    )
                elif unquote(parts.fragment) not in anchors(destination):
                    problems.append(
                        f"{name}:{line}: link to {target}: no heading of "
                        f"{shown(destination)} has the anchor #{parts.fragment}"
                    )
    return problems


def outside_problems(doc: Page, name: str) -> list[str]:
    return [
        f"{name}:{number + 1}: mentions {OUTSIDE_DIRECTORY}, which a clone of the repository does not have"
        for number, line in enumerate(doc.lines)
        if OUTSIDE_DIRECTORY in line
    ]


FILES = tracked_markdown()


@pytest.mark.parametrize("name", FILES if isinstance(FILES, list) else [pytest.param("", id="no-git")])
def test_markdown_renders_and_its_links_resolve(name: str) -> None:
    if isinstance(FILES, str):
        pytest.skip(FILES)
    doc = page(ROOT / name)
    problems = [
        *fence_problems(doc, name),
        *heading_problems(doc, name),
        *link_problems(doc, name),
        *outside_problems(doc, name),
    ]
    assert not problems, "\n".join(problems)


def test_the_readme_is_tracked() -> None:
    if isinstance(FILES, str):
        pytest.skip(FILES)
    assert "README.md" in FILES


def test_the_checks_catch_what_they_are_for(tmp_path: Path) -> None:
    """A closing fence followed by text, a missing file, a wrong anchor, the outside directory."""
    target = tmp_path / "other.md"
    target.write_text("# Other page\n\n## The `pipeline.yml` keys, again\n", encoding="utf-8")
    broken = tmp_path / "broken.md"
    broken.write_text(
        "# Title\n\n```sh\nmake run\n``` Then look\n\n## Lost heading\n\n"
        "[gone](missing.md) [ok](other.md#the-pipelineyml-keys-again) [bad](other.md#nope) [here](#title)\n\n"
        f"See {OUTSIDE_DIRECTORY}/docs.\n",
        encoding="utf-8",
    )
    doc = page(broken)
    fences = fence_problems(doc, "broken.md")
    assert any(
        problem.startswith("broken.md:5: this closing fence is followed by text") for problem in fences
    )
    assert any("never closed" in problem for problem in fences)
    assert heading_problems(doc, "broken.md") == [
        "broken.md:7: written as a heading but does not render as one: '## Lost heading'"
    ]
    fixed = tmp_path / "fixed.md"
    fixed.write_text(
        broken.read_text(encoding="utf-8").replace("``` Then look", "```\nThen look"), encoding="utf-8"
    )
    fixed_doc = page(fixed)
    assert fence_problems(fixed_doc, "fixed.md") == []
    assert heading_problems(fixed_doc, "fixed.md") == []
    links = link_problems(fixed_doc, "fixed.md")
    assert [problem.split(": link to ")[1].split(":")[0] for problem in links] == [
        "missing.md",
        "other.md#nope",
    ]
    assert outside_problems(fixed_doc, "fixed.md") == [
        f"fixed.md:12: mentions {OUTSIDE_DIRECTORY}, which a clone of the repository does not have"
    ]


def test_slugs_follow_github() -> None:
    assert slug("How a release travels") == "how-a-release-travels"
    assert slug("environments/<stage>.yml") == "environmentsstageyml"
    assert slug("The demo app, and how to break it") == "the-demo-app-and-how-to-break-it"
    assert slug("Where things go — and why") == "where-things-go--and-why"
