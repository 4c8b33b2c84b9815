"""The scope table of the Bitbucket stand-in (``sandbox.bitbucket.scopes``) against Bitbucket's OpenAPI.

Each operation the stand-in serves needs the classic scopes its ``security`` names in
``../shared/contracts/bitbucket-cloud-2.0.swagger.json`` (skipped when ``../shared`` is absent);
and every route of the API app has its line in the table, so no endpoint goes unchecked.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sandbox.bitbucket import BitbucketCloud
from sandbox.bitbucket.scopes import ENDPOINT_SCOPES, granular, holds, openapi_path, requirement

SWAGGER_PATH = (
    Path(__file__).resolve().parents[2].parent / "shared" / "contracts" / "bitbucket-cloud-2.0.swagger.json"
)
IGNORED_METHODS = {"HEAD", "OPTIONS"}


def served(tmp_path: Path) -> set[tuple[str, str]]:
    """(method, OpenAPI path) of every route of the API app."""
    bb = BitbucketCloud(tmp_path, "http://127.0.0.1:9", web_url="http://127.0.0.1:10")
    try:
        out: set[tuple[str, str]] = set()
        for rule in bb.wsgi_app.url_map.iter_rules():
            if rule.endpoint == "static":
                continue
            for method in (rule.methods or set()) - IGNORED_METHODS:
                out.add((method, openapi_path(rule.rule)))
        return out
    finally:
        bb.close()


def test_every_route_has_its_line_in_the_table(tmp_path: Path) -> None:
    routes = served(tmp_path)
    assert routes == set(ENDPOINT_SCOPES), {
        "served but not in the table": sorted(routes - set(ENDPOINT_SCOPES)),
        "in the table but not served": sorted(set(ENDPOINT_SCOPES) - routes),
    }


@pytest.mark.skipif(
    not SWAGGER_PATH.is_file(),
    reason=f"Bitbucket's swagger is not at {SWAGGER_PATH} (../shared is absent beside the repository)",
)
def test_the_table_says_what_the_openapi_says() -> None:
    paths = json.loads(SWAGGER_PATH.read_text())["paths"]
    wrong = {}
    for (method, path), classic in ENDPOINT_SCOPES.items():
        operation = paths.get(path, {}).get(method.lower())
        assert operation is not None, f"{method} {path} is not in the OpenAPI"
        oauth2 = next(s["oauth2"] for s in operation["security"] if "oauth2" in s)
        if sorted(oauth2) != sorted(classic):
            wrong[f"{method} {path}"] = {"table": classic, "openapi": oauth2}
    assert wrong == {}


def test_granular_names_and_what_a_write_scope_holds() -> None:
    assert granular("GET", "/repositories/{workspace}/{repo_slug}/hooks", ("webhook",)) == (
        "read:webhook:bitbucket",
    )
    assert granular("POST", "/repositories/{workspace}/{repo_slug}/hooks", ("webhook",)) == (
        "write:webhook:bitbucket",
    )
    assert granular("GET", "/workspaces/{workspace}/members", ("account",)) == (
        "read:user:bitbucket",
        "read:workspace:bitbucket",
    )
    assert granular("GET", "/user/permissions/repositories", ("account", "repository")) == (
        "read:user:bitbucket",
        "read:repository:bitbucket",
    )
    assert {"repository", "pullrequest"} <= holds(["repository:write", "pullrequest:write"])
    assert "read:repository:bitbucket" in holds(["write:repository:bitbucket"])
    assert "repository" not in holds(["pullrequest:write"])  # nothing but write -> read is implied
    needed = requirement("POST", "/2.0/repositories/<workspace>/<slug>/pullrequests/<int:pr_id>/merge")
    assert needed is not None and needed.classic == ("pullrequest:write",)
    assert needed.granular == ("write:pullrequest:bitbucket",)
