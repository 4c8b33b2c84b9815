"""The Bitbucket stand-in's website host (``bitbucket.org``, apart from ``api.bitbucket.org``): git
over HTTPS through ``git http-backend`` with the real git client, the source archive, and the
``html``/clone links of the API that point at it."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import pytest
import requests

from sandbox.bitbucket import BitbucketCloud
from sandbox.faults import Faults
from sandbox.server import ServiceServer

WS, REPO = "whisper", "claims"
R = f"/2.0/repositories/{WS}/{REPO}"
FILES = {"app.py": b"print('hello')\n", "Procfile": b"web: python app.py\n"}


@dataclass
class Hosts:
    api: ServiceServer
    web: ServiceServer
    bb: BitbucketCloud
    tmp: Path

    def person(self, user: str) -> tuple[str, str]:
        return (self.bb.emails()[user], self.bb.tokens()[user])

    def call(self, method: str, path: str, user: str = "dev", **kwargs: object) -> requests.Response:
        return requests.request(method, f"{self.api.url}{path}", auth=self.person(user), timeout=10, **kwargs)  # type: ignore[arg-type]

    def commit(self, branch: str, name: str) -> str:
        r = self.call("POST", f"{R}/src", data={"branch": branch, "message": name, name: name})
        assert r.status_code == 201, r.text
        return r.headers["Location"].rsplit("/", 1)[1]

    def git_url(self, user: str, secret: str, suffix: str = ".git") -> str:
        host = self.web.url.removeprefix("http://")
        return f"http://{quote(user, safe='')}:{quote(secret, safe='')}@{host}/{WS}/{REPO}{suffix}"

    def fetch(self, url: str, sha: str, *config: str) -> subprocess.CompletedProcess[str]:
        """``git fetch --depth 1 <url> <sha>`` into a fresh repository, with git's defaults (no system
        or global configuration)."""
        clone = self.tmp / f"clone-{len(list(self.tmp.iterdir()))}"
        subprocess.run(["git", "init", "-q", str(clone)], check=True)
        args = ["git", "-C", str(clone)]
        for item in config:
            args += ["-c", item]
        env = {
            **os.environ,
            "GIT_TERMINAL_PROMPT": "0",
            "GIT_TRACE_PACKET": "1",
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_CONFIG_GLOBAL": os.devnull,
        }
        result = subprocess.run(
            [*args, "fetch", "--depth", "1", url, sha], capture_output=True, text=True, env=env, timeout=60
        )
        if result.returncode == 0:
            head = subprocess.run(
                ["git", "-C", str(clone), "rev-parse", "FETCH_HEAD"],
                capture_output=True,
                text=True,
                check=True,
            )
            assert head.stdout.strip() == sha
        return result


@pytest.fixture
def hosts(tmp_path: Path) -> Iterator[Hosts]:
    faults = Faults()
    api, web = ServiceServer("bitbucket", faults), ServiceServer("bitbucket-web", faults)
    bb = BitbucketCloud(tmp_path / "bitbucket", api.url, web_url=web.url)
    api.start(bb.wsgi_app, bb.fault_response)
    web.start(bb.web_wsgi_app, bb.fault_response)
    bb.seed(dict(FILES), workspace=WS, repository=REPO)
    (tmp_path / "clones").mkdir()
    try:
        yield Hosts(api, web, bb, tmp_path / "clones")
    finally:
        api.stop()
        web.stop()
        bb.close()


def test_git_fetch_depth_1_of_a_reachable_commit_with_each_git_user_name(hosts: Hosts) -> None:
    older = hosts.commit("develop", "one.txt")
    hosts.commit("develop", "two.txt")  # so that `older` is no branch tip
    tokens, access = hosts.bb.tokens(), hosts.bb.access_tokens()
    for user, secret, suffix in (
        ("dev", tokens["dev"], ".git"),
        ("readonly", tokens["readonly"], ""),  # whoever can read may fetch; the .git suffix is optional
        ("x-bitbucket-api-token-auth", tokens["controller"], ".git"),
        ("x-token-auth", access["repository"], ".git"),
        ("x-token-auth", access["workspace"], ""),
    ):
        result = hosts.fetch(hosts.git_url(user, secret, suffix), older)
        assert result.returncode == 0, (user, result.stderr[-500:])
        assert "version 2" in result.stderr  # git's default protocol, through Git-Protocol


def test_protocol_v0_may_not_fetch_an_unadvertised_commit(hosts: Hosts) -> None:
    # uploadpack.allowReachableSHA1InWant is not set: only protocol v2 fetches any reachable commit
    older = hosts.commit("develop", "one.txt")
    hosts.commit("develop", "two.txt")
    url = hosts.git_url("dev", hosts.bb.tokens()["dev"])
    refused = hosts.fetch(url, older, "protocol.version=0")
    assert refused.returncode != 0 and "unadvertised object" in refused.stderr
    tip = hosts.call("GET", f"{R}/refs/branches/develop").json()["target"]["hash"]
    assert hosts.fetch(url, tip, "protocol.version=0").returncode == 0


def test_git_refuses_what_bitbucket_refuses(hosts: Hosts) -> None:
    tokens = hosts.bb.tokens()
    main = hosts.call("GET", f"{R}/refs/branches/main").json()["target"]["hash"]
    refs = f"{hosts.web.url}/{WS}/{REPO}.git/info/refs?service=git-upload-pack"

    anonymous = requests.get(refs, timeout=10)
    assert anonymous.status_code == 401
    assert anonymous.headers["WWW-Authenticate"] == 'Basic realm="Bitbucket.org HTTP"'
    bearer = requests.get(refs, headers={"Authorization": f"Bearer {hosts.bb.access_tokens()['repository']}"})
    assert bearer.status_code == 401
    for user, secret in (
        ("dev@whisper.example", tokens["dev"]),  # the e-mail is the API's user name, not git's
        ("dev", hosts.bb.access_tokens()["repository"]),  # an access token goes with x-token-auth
        ("x-token-auth", tokens["dev"]),  # and an API token does not
        ("dev", tokens["po"]),
    ):
        result = hosts.fetch(hosts.git_url(user, secret), main)
        assert result.returncode != 0 and "Authentication failed" in result.stderr, user
        assert requests.get(refs, auth=(user, secret), timeout=10).status_code == 401, user

    assert requests.get(refs, auth=("dev", tokens["dev"]), timeout=10).status_code == 200
    push = refs.replace("git-upload-pack", "git-receive-pack")
    assert requests.get(push, auth=("dev", tokens["dev"]), timeout=10).status_code == 403
    dumb = f"{hosts.web.url}/{WS}/{REPO}.git/info/refs"
    assert requests.get(dumb, auth=("dev", tokens["dev"]), timeout=10).status_code == 403
    other = f"{hosts.web.url}/{WS}/nope.git/info/refs?service=git-upload-pack"
    assert requests.get(other, auth=("dev", tokens["dev"]), timeout=10).status_code == 404


def test_the_archive_lives_on_the_website_and_takes_basic_only(hosts: Hosts) -> None:
    url = f"{hosts.web.url}/{WS}/{REPO}/get/main.tar.gz"
    token = hosts.bb.tokens()["controller"]
    for user in ("controller", "controller@whisper.example"):
        r = requests.get(url, auth=(user, token), timeout=10)
        assert r.status_code == 200 and r.content[:2] == b"\x1f\x8b", user
    assert requests.get(url, headers={"Authorization": f"Bearer {token}"}, timeout=10).status_code == 401
    access = hosts.bb.access_tokens()["repository"]
    assert requests.get(url, headers={"Authorization": f"Bearer {access}"}, timeout=10).status_code == 401
    assert requests.get(url, auth=("x-token-auth", access), timeout=10).status_code == 401
    assert requests.get(url, timeout=10).status_code == 401
    assert hosts.call("GET", f"/{WS}/{REPO}/get/main.tar.gz").status_code == 404  # not on the API host


def test_html_and_clone_links_point_at_the_website(hosts: Hosts) -> None:
    web, api = hosts.web.url, hosts.api.url
    repo = hosts.call("GET", R).json()
    assert repo["links"]["html"]["href"] == f"{web}/{WS}/{REPO}"
    assert {"name": "https", "href": f"{web}/{WS}/{REPO}.git"} in repo["links"]["clone"]
    assert repo["links"]["self"]["href"] == f"{api}{R}"
    branch = hosts.call("GET", f"{R}/refs/branches/main").json()
    assert branch["links"]["html"]["href"] == f"{web}/{WS}/{REPO}/branch/main"
    assert branch["target"]["links"]["html"]["href"].startswith(f"{web}/{WS}/{REPO}/commits/")
    hosts.commit("feature/links", "links.txt")
    body = {"title": "Links", "source": {"branch": {"name": "feature/links"}}}
    pr = hosts.call("POST", f"{R}/pullrequests", json=body).json()
    assert pr["links"]["html"]["href"] == f"{web}/{WS}/{REPO}/pull-requests/{pr['id']}"
    assert pr["links"]["self"]["href"].startswith(f"{api}/2.0/")
    commit = hosts.call("GET", f"{R}/commit/main").json()
    assert commit["links"]["html"]["href"].startswith(f"{web}/")
