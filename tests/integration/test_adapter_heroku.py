"""``HerokuPlatform`` against the sandbox's Heroku Platform API over real HTTP, with heroku3:
every ``ports.Platform`` method along the real release path (archive of a Bitbucket commit ->
source upload -> build on claims-staging -> release phase -> promotion to claims-production ->
rollback), plus Range paging and error translation."""

from __future__ import annotations

import hashlib
import uuid
from typing import Any

import pytest
import requests
from adapter_support import assert_secret_free, poll

from pipeline.adapters import http
from pipeline.adapters.bitbucket import BitbucketCloud, BitbucketCredential
from pipeline.adapters.heroku import HerokuPlatform
from pipeline.errors import NotFound, Permanent, Temporary
from pipeline.model import HerokuBuild, HerokuRelease
from sandbox.core import Sandbox

STAGING, PRODUCTION, PIPELINE = "claims-staging", "claims-production", "claims"


@pytest.fixture
def heroku(info: dict[str, Any], key: str) -> HerokuPlatform:
    return HerokuPlatform(info["heroku"]["url"], key, timeout=10.0)


def new_commit(info: dict[str, Any], marker: str) -> str:
    """A developer's commit (on a branch of its own, from main) holding ``marker``; its hash."""
    bb = info["bitbucket"]
    auth = (bb["emails"]["dev"], bb["users"]["dev"])
    repo = f"{bb['api']}/repositories/{bb['workspace']}/{bb['repository']}"
    main = requests.get(f"{repo}/refs/branches/main", auth=auth, timeout=10).json()["target"]["hash"]
    form = {"branch": f"adapter/{marker}", "parents": main, "message": f"Mark {marker}", "MARKER.txt": marker}
    answer = requests.post(f"{repo}/src", auth=auth, data=form, timeout=10)
    assert answer.status_code == 201, answer.text
    return answer.headers["Location"].rsplit("/", 1)[1]


def finished(thing: HerokuBuild | HerokuRelease) -> bool:
    return thing.status != "pending"


def finished_release(heroku: HerokuPlatform, app: str, release_id: str) -> HerokuRelease:
    return poll(f"release {release_id} of {app}", lambda: heroku.release(app, release_id), finished)


# -- access --------------------------------------------------------------------------------------


def test_check_access_returns_the_account_email(heroku: HerokuPlatform) -> None:
    assert heroku.check_access() == "release-controller@whisper.example"


def test_a_refused_key_is_permanent_and_names_the_variable_not_the_key(info: dict[str, Any]) -> None:
    bad = "HRKU-bad-0000-1111-2222-333344445555"
    heroku = HerokuPlatform(info["heroku"]["url"], bad, timeout=10.0)
    with pytest.raises(Permanent) as caught:
        heroku.check_access()
    assert caught.value.status == 401
    assert "HEROKU_API_KEY was refused" in str(caught.value)
    assert_secret_free(caught.value, bad)
    with pytest.raises(Permanent) as again:
        heroku.releases(STAGING)
    assert "HEROKU_API_KEY" in str(again.value)
    assert_secret_free(again.value, bad)
    assert bad not in repr(heroku)


# -- the release path ----------------------------------------------------------------------------


def test_build_on_staging_promote_to_production_and_roll_back(
    info: dict[str, Any], heroku: HerokuPlatform
) -> None:
    bb = info["bitbucket"]
    credential = BitbucketCredential(bb["users"]["controller"], bb["emails"]["controller"])
    source = BitbucketCloud(bb["url"], credential, bb["workspace"], bb["repository"], timeout=10)
    marker = f"heroku-path-{uuid.uuid4().hex[:8]}"
    commit = new_commit(info, marker)
    tarball = source.archive(commit)

    # Upload and build that exact commit on staging, labelled with it.
    get_url = heroku.upload_source(tarball)
    assert requests.get(get_url, timeout=10).content == tarball  # the PUT landed
    checksum = "SHA256:" + hashlib.sha256(tarball).hexdigest()
    started = heroku.start_build(STAGING, get_url, checksum, commit)
    assert started.status == "pending" and started.version == commit
    assert started.created_at.tzinfo is not None
    built = poll("the staging build", lambda: heroku.build(STAGING, started.id), finished)
    assert built.status == "succeeded", requests.get(built.output_stream_url or "", timeout=10).text
    assert built.version == commit and built.slug_id and built.release_id
    assert built.id in [b.id for b in heroku.builds(STAGING, limit=10)]
    (newest_build,) = heroku.builds(STAGING, limit=1)  # Heroku's times have whole seconds: ties happen
    assert newest_build.created_at >= built.created_at

    # Its release runs the release phase, then becomes current.
    staged = finished_release(heroku, STAGING, built.release_id)
    assert staged.status == "succeeded" and staged.current and staged.slug_id == built.slug_id
    assert heroku.release(STAGING, staged.version) == staged  # by version number as well as by id
    assert heroku.releases(STAGING, limit=1) == [staged]
    current = heroku.current_release(STAGING)
    assert current is not None and current.id == staged.id
    assert "release:" in heroku.release_output(staged)
    health = poll(
        "staging to run the commit",
        lambda: requests.get(f"{heroku.web_url(STAGING).rstrip('/')}/health", timeout=5),
        lambda h: h.ok and h.json().get("commit") == commit,
    )
    assert health.json()["status"] == "ok"

    # Promote that release's slug to production.
    before = heroku.current_release(PRODUCTION)
    assert before is not None
    promotion = heroku.promote(PIPELINE, STAGING, staged.id, PRODUCTION)
    assert promotion.id and promotion.status in ("pending", "completed")
    done = poll("the promotion", lambda: heroku.promotion(promotion.id), lambda p: p.status == "completed")
    (target,) = done.targets
    assert target.status == "succeeded" and target.error_message is None and target.release_id
    promoted = finished_release(heroku, PRODUCTION, target.release_id)
    assert promoted.status == "succeeded" and promoted.current
    assert promoted.slug_id == staged.slug_id  # build once: the very slug
    assert heroku.current_release(PRODUCTION) == promoted

    # Roll production back to what it ran before.
    rolled = heroku.rollback(PRODUCTION, before.id)
    assert rolled.version > promoted.version and rolled.slug_id == before.slug_id
    rolled = finished_release(heroku, PRODUCTION, rolled.id)
    assert rolled.status == "succeeded"
    now = heroku.current_release(PRODUCTION)
    assert now is not None and now.id == rolled.id and now.slug_id == before.slug_id


def test_lists_are_newest_first_and_follow_next_range(info: dict[str, Any], key: str) -> None:
    # Pages of two force the 206 + Next-Range path (Heroku's pages hold up to 1000).
    paged = HerokuPlatform(info["heroku"]["url"], key, timeout=10.0, page_size=2)
    releases = paged.releases(STAGING, limit=5)
    whole = HerokuPlatform(info["heroku"]["url"], key, timeout=10.0).releases(STAGING, limit=5)
    assert releases == whole and len(releases) >= 3
    versions = [r.version for r in releases]
    assert versions == sorted(versions, reverse=True) and len(set(versions)) == len(versions)
    builds = paged.builds(STAGING, limit=3)
    assert builds and [b.created_at for b in builds] == sorted((b.created_at for b in builds), reverse=True)
    assert paged.releases(STAGING, limit=2) == whole[:2]


def test_web_url_and_release_output_without_output(heroku: HerokuPlatform) -> None:
    assert heroku.web_url(PRODUCTION).startswith("http")
    first = heroku.release(STAGING, 1)
    assert first.output_stream_url is None and heroku.release_output(first) == ""
    current = heroku.current_release(STAGING)
    assert current is not None and current.output_stream_url
    gone = HerokuRelease(
        id=current.id,
        version=current.version,
        status=current.status,
        slug_id=current.slug_id,
        current=current.current,
        description=current.description,
        created_at=current.created_at,
        output_stream_url=current.output_stream_url.split("?")[0] + "?token=expired",
    )
    assert heroku.release_output(gone) == ""


def test_formation_lists_each_process_type_and_the_dynos_run_it(heroku: HerokuPlatform) -> None:
    formation = {f.type: f for f in heroku.formation(STAGING)}
    assert formation["web"].quantity == 1 and formation["web"].command
    current = heroku.current_release(STAGING)
    assert current is not None
    web = [d for d in heroku.dynos(STAGING) if d.type == "web"]
    assert len(web) == formation["web"].quantity
    assert all(d.release_version == current.version for d in web)


# -- error translation ---------------------------------------------------------------------------


def test_missing_things_are_not_found(heroku: HerokuPlatform, key: str) -> None:
    for call in (
        lambda: heroku.release(STAGING, 987654),
        lambda: heroku.build(STAGING, str(uuid.uuid4())),
        lambda: heroku.web_url("no-such-app"),
        lambda: heroku.promotion(str(uuid.uuid4())),
        lambda: heroku.promote("no-such-pipeline", STAGING, str(uuid.uuid4()), PRODUCTION),
    ):
        with pytest.raises(NotFound) as caught:
            call()
        assert caught.value.status == 404
        assert_secret_free(caught.value, key)


def test_a_refused_request_is_permanent_with_evidence(heroku: HerokuPlatform) -> None:
    with pytest.raises(Permanent) as caught:
        heroku.start_build(STAGING, "not a url", "SHA256:" + "0" * 64, "v")
    assert caught.value.status == 422 and "source_blob.url" in caught.value.evidence


def test_injected_503_is_temporary(sandbox: Sandbox, heroku: HerokuPlatform, key: str) -> None:
    sandbox.faults.add(service="heroku", method="GET", path=f"/apps/{STAGING}/releases", kind="error")
    with pytest.raises(Temporary) as caught:
        heroku.releases(STAGING)
    assert caught.value.status == 503 and caught.value.retry_after > 0
    assert_secret_free(caught.value, key)
    assert heroku.releases(STAGING)


def test_injected_429_is_temporary_with_a_retry_delay(
    sandbox: Sandbox, heroku: HerokuPlatform, key: str
) -> None:
    sandbox.faults.add(service="heroku", path=f"/apps/{STAGING}/builds", kind="rate_limit")
    with pytest.raises(Temporary) as raw:  # a request of our own
        heroku.builds(STAGING)
    assert raw.value.status == 429 and raw.value.retry_after >= 1
    assert_secret_free(raw.value, key)
    heroku.check_access()  # heroku3 is authenticated now
    sandbox.faults.add(service="heroku", path="/account", kind="rate_limit")
    with pytest.raises(Temporary) as library:  # through heroku3, which raises RateLimitExceeded
        heroku.check_access()
    assert library.value.status == 429 and library.value.retry_after >= 1


def test_a_slow_or_dropped_answer_is_temporary(sandbox: Sandbox, info: dict[str, Any], key: str) -> None:
    heroku = HerokuPlatform(info["heroku"]["url"], key, timeout=1.0)
    heroku.check_access()
    sandbox.faults.add(service="heroku", path=f"/apps/{STAGING}", kind="slow", delay=2.5)
    with pytest.raises(Temporary) as slow:
        heroku.web_url(STAGING)
    sandbox.faults.add(service="heroku", path="/sources", kind="drop")
    with pytest.raises(Temporary) as dropped:
        heroku.upload_source(b"\x1f\x8b not really")
    for caught in (slow, dropped):
        assert caught.value.status is None
        assert_secret_free(caught.value, key)


# -- the shared translation (pipeline.adapters.http) ---------------------------------------------

NOW = 1_800_000_000.0


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({}, 60.0),
        ({"Retry-After": "120"}, 120.0),
        ({"Retry-After": "0"}, 1.0),
        ({"Retry-After": "soon"}, 60.0),
        ({"Retry-After": "86400"}, 3600.0),
        ({"Retry-After": "Fri, 15 Jan 2027 08:02:00 GMT"}, 120.0),
        ({"RateLimit-Reset": "42"}, 42.0),
        ({"X-RateLimit-Reset": str(int(NOW) + 300)}, 300.0),
    ],
)
def test_retry_after_is_read_from_the_answer_headers(headers: dict[str, str], expected: float) -> None:
    assert http.retry_after(headers, 60.0, now=NOW) == pytest.approx(expected)


def test_evidence_is_scrubbed_of_secrets_and_credentials_in_urls() -> None:
    text = "see https://user:hunter2@host/x?token=abc123&x=1 or /get?signature=s3cr3t with KEY-42"
    scrubbed = http.redact(text, ["KEY-42"])
    for secret in ("hunter2", "abc123", "s3cr3t", "KEY-42"):
        assert secret not in scrubbed
    assert "x=1" in scrubbed and "host/x" in scrubbed
