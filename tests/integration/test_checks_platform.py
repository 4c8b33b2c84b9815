"""The checks that read Heroku (``release_phase``, ``dynos``) and the ``commit`` check, against the
session sandbox over real HTTP: the real ``HerokuPlatform`` (heroku3 and requests) reads the
sandbox's Heroku, and the demo app answers on its ``web_url``.

The releases these tests make on claims-staging leave it as they found it: a release whose release
phase fails is never deployed, and the crashing one is rolled back before the test ends."""

from __future__ import annotations

import dataclasses
import hashlib
import uuid
from typing import Any

import pytest
import requests
from adapter_support import poll

import checks
from checks import Target, commit, dynos, release_phase
from pipeline.adapters.bitbucket import BitbucketCloud, BitbucketCredential
from pipeline.adapters.heroku import HerokuPlatform
from pipeline.model import HerokuRelease
from sandbox import demo
from sandbox.core import Sandbox

STAGING = "claims-staging"


@pytest.fixture
def heroku(info: dict[str, Any], key: str) -> HerokuPlatform:
    return HerokuPlatform(info["heroku"]["url"], key, timeout=10.0)


def running(heroku: HerokuPlatform, app: str = STAGING) -> Target:
    """The target of the release the app runs now, its commit read from the build of its slug."""
    current = heroku.current_release(app)
    assert current is not None
    built = next(b for b in heroku.builds(app) if b.slug_id == current.slug_id)
    assert built.version
    return Target(
        stage="staging",
        app=app,
        web_url=heroku.web_url(app),
        release_version=current.version,
        commit=built.version,
        platform=heroku,
    )


def release_of(info: dict[str, Any], heroku: HerokuPlatform, files: dict[str, bytes]) -> HerokuRelease:
    """Commit ``files`` on a branch of their own from main, build that commit on staging, and
    return its release once the release phase is over."""
    bb = info["bitbucket"]
    repo = f"{bb['api']}/repositories/{bb['workspace']}/{bb['repository']}"
    auth = (bb["emails"]["dev"], bb["users"]["dev"])
    main = requests.get(f"{repo}/refs/branches/main", auth=auth, timeout=10).json()["target"]["hash"]
    form = {"branch": f"checks/{uuid.uuid4().hex[:8]}", "parents": main, "message": "Try a check"}
    answer = requests.post(
        f"{repo}/src", auth=auth, data={**form, **{p: c.decode() for p, c in files.items()}}, timeout=10
    )
    assert answer.status_code == 201, answer.text
    sha = answer.headers["Location"].rsplit("/", 1)[1]
    credential = BitbucketCredential(bb["users"]["controller"], bb["emails"]["controller"])
    source = BitbucketCloud(bb["url"], credential, bb["workspace"], bb["repository"], timeout=10)
    tarball = source.archive(sha)
    checksum = "SHA256:" + hashlib.sha256(tarball).hexdigest()
    started = heroku.start_build(STAGING, heroku.upload_source(tarball), checksum, sha)
    built = poll("the build", lambda: heroku.build(STAGING, started.id), lambda b: b.status != "pending")
    assert built.status == "succeeded" and built.release_id
    release_id = built.release_id
    return poll("the release", lambda: heroku.release(STAGING, release_id), lambda r: r.status != "pending")


# --- release_phase ----------------------------------------------------------------------------


def test_release_phase_passes_on_the_running_release_and_keeps_its_output(heroku: HerokuPlatform) -> None:
    target = running(heroku)
    result = release_phase.run(release_phase.Options(), target)
    assert (result.name, result.outcome) == ("release_phase", "passed")
    assert result.detail.startswith(f"v{target.release_version} succeeded; release phase printed ")
    assert "release: " in result.evidence  # what release.py printed


def test_release_phase_of_a_release_without_one(heroku: HerokuPlatform) -> None:
    first = Target(stage="staging", app=STAGING, web_url="", release_version=1, commit="", platform=heroku)
    result = release_phase.run(release_phase.Options(), first)
    assert (result.outcome, result.detail, result.evidence) == (
        "passed",
        "v1 succeeded; it has no release phase",
        "",
    )


def test_release_phase_fails_on_a_migration_that_fails_and_quotes_it(
    info: dict[str, Any], heroku: HerokuPlatform
) -> None:
    before = running(heroku)
    failed = release_of(info, heroku, demo.migration_file("break_release", failing=True))
    assert failed.status == "failed"
    target = Target("staging", STAGING, before.web_url, failed.version, before.commit, heroku)
    result = release_phase.run(release_phase.Options(tail_lines=1), target)
    assert result.outcome == "failed"
    assert result.detail.startswith(f"v{failed.version} failed; release phase printed ")
    assert result.detail.endswith(
        f"ending: Release command exited with status 1; release v{failed.version} failed"
    )
    assert "003_break_release.sql failed: " in result.evidence and "no_such_table" in result.evidence
    assert running(heroku).release_version == before.release_version  # never deployed


def test_release_phase_of_a_release_that_does_not_exist_is_an_error(heroku: HerokuPlatform) -> None:
    target = Target("staging", STAGING, "", 987654, "", heroku)
    result = release_phase.run(release_phase.Options(), target)
    assert result.outcome == "error"
    assert result.detail.startswith(f"could not read v987654 of {STAGING}: heroku: ")
    assert "(HTTP 404)" in result.detail


# --- dynos ------------------------------------------------------------------------------------


def test_dynos_pass_when_the_web_dyno_runs_the_release(heroku: HerokuPlatform) -> None:
    target = running(heroku)
    result = dynos.run(dynos.Options(), target)
    assert (result.name, result.outcome, result.detail) == (
        "dynos",
        "passed",
        f"v{target.release_version}: web 1 of 1 up",
    )
    assert checks.run_check("dynos", dynos.Options(types=("web",)), target).passed


def test_dynos_fail_when_they_run_another_release_or_a_type_is_missing(heroku: HerokuPlatform) -> None:
    now = running(heroku)
    assert now.release_version is not None
    newer = Target("staging", STAGING, now.web_url, now.release_version + 1, now.commit, heroku)
    behind = dynos.run(dynos.Options(), newer)
    assert behind.outcome == "failed"
    assert behind.detail == (
        f"v{now.release_version + 1}: web: 0 of 1 up on v{now.release_version + 1} "
        f"(web.1 is up on v{now.release_version})"
    )
    assert f"dyno: web.1 is up on v{now.release_version}" in behind.evidence
    missing = dynos.run(dynos.Options(types=("web", "worker")), now)
    assert missing.outcome == "failed"
    assert "no process type 'worker' in the formation (it has web)" in missing.detail


def test_dynos_see_a_dyno_that_crashed_on_the_release(info: dict[str, Any], heroku: HerokuPlatform) -> None:
    before = heroku.current_release(STAGING)
    assert before is not None
    crashing = release_of(info, heroku, demo.health_file("crash-after", 1))
    try:
        assert crashing.status == "succeeded"  # a web process that crashes does not fail the release
        target = Target("staging", STAGING, "", crashing.version, "", heroku)
        result = poll("web.1 to crash", lambda: dynos.run(dynos.Options(), target), lambda r: not r.passed)
        assert result.outcome == "failed"
        version = f"v{crashing.version}"
        assert result.detail == f"{version}: web: 0 of 1 up on {version} (web.1 crashed on {version})"
    finally:
        back = heroku.rollback(STAGING, before.id)
        poll(
            "staging to run its old slug again",
            lambda: dynos.run(dynos.Options(), Target("staging", STAGING, "", back.version, "", heroku)),
            lambda r: r.passed,
        )


def test_heroku_not_answering_is_an_error(sandbox: Sandbox, heroku: HerokuPlatform) -> None:
    target = running(heroku)
    sandbox.faults.add(
        service="heroku", method="GET", path=f"/apps/{STAGING}/dynos", kind="error", status=503
    )
    result = dynos.run(dynos.Options(), target)
    assert result.outcome == "error"
    assert result.detail.startswith(f"could not read the dynos of {STAGING}: heroku: ")
    assert "HTTP 503" in result.detail
    assert dynos.run(dynos.Options(), target).passed  # the fault was for one request


# --- commit -----------------------------------------------------------------------------------


@pytest.fixture
def staging(heroku: HerokuPlatform) -> Target:
    return running(heroku)


def test_commit_passes_when_the_app_reports_the_released_commit(staging: Target) -> None:
    result = commit.run(commit.Options(), staging)
    assert (result.name, result.outcome) == ("commit /health", "passed")
    assert result.detail.endswith(f": commit is {staging.commit}")
    assert checks.run_check("commit", commit.Options(field="$.commit"), staging).passed


def test_commit_fails_when_the_app_runs_another_commit(staging: Target) -> None:
    other = dataclasses.replace(staging, commit="0" * 40)
    result = commit.run(commit.Options(), other)
    assert result.outcome == "failed"
    assert f"JSON 'commit' is \"{staging.commit}\", expected {'0' * 40}" in result.detail
