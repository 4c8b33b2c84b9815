"""A hotfix: a commit on a hotfix/* branch taken through staging and approval to production without
what else is on develop; develop cannot take production back past it; merged back, all goes on."""

from __future__ import annotations

import pytest
from e2e_world import World

from pipeline.errors import BadInput, Refused
from pipeline.model import State


@pytest.mark.slow
def test_a_hotfix_goes_to_production_alone_and_develop_follows_only_once_it_has_it(world: World) -> None:
    people = world.people
    feature = people.merge_change("Big feature, not ready", {"FEATURE.md": b"big\n"})
    world.settle()
    assert world.release(feature.commit).state == State.AWAITING_APPROVAL

    # Ops branch the fix from what runs in production, and CI tests it.
    fix = people.commit(
        "hotfix/login", {"LOGIN.md": b"fixed\n"}, "Fix the login", user="ops", parent=people.head("main")
    )
    people.report_build(fix, "SUCCESSFUL")
    hotfix = world.services.start_hotfix("hotfix/login")
    assert hotfix.branch == "hotfix/login" and [c.hash for c in hotfix.commits] == [fix]
    world.settle()
    hotfix = world.release(fix)
    assert hotfix.state == State.AWAITING_APPROVAL, hotfix.reason
    assert world.release(feature.commit).state == State.AWAITING_APPROVAL  # neither supersedes the other

    people.approve(hotfix.pull_request_id, user="po")
    world.settle()
    hotfix = world.release(fix)
    assert hotfix.state == State.BACKUPS_VERIFIED, hotfix.reason
    assert world.production_releases()[-1]["slug_id"] == hotfix.staging_slug_id
    assert "FEATURE.md" not in _files_live(world)  # the feature did not go with it
    back = people.release_pull_request(into="develop")
    assert back is not None and back["source"]["branch"]["name"] == "main"  # bring the fix back

    # The feature, approved now, would take the fix out of production: it is not promoted.
    people.approve(world.release(feature.commit).pull_request_id, user="po")
    world.settle()
    stale = world.release(feature.commit)
    assert stale.state == State.SUPERSEDED and "production has moved past it" in stale.reason
    assert "Fix the login" in stale.reason
    assert world.production_releases()[-1]["slug_id"] == hotfix.staging_slug_id

    # develop takes main back in; the next candidate carries both and goes on.
    people._call("dev", "POST", f"/pullrequests/{back['id']}/merge", json={"merge_strategy": "merge_commit"})
    both = people.head("develop")
    people.report_build(both, "SUCCESSFUL")
    world.settle()
    release = world.release(both)
    assert release.state == State.AWAITING_APPROVAL, release.reason
    people.approve(user="po")
    world.settle()
    assert world.release(both).state == State.BACKUPS_VERIFIED


def _files_live(world: World) -> set[str]:
    """The files of the slug production runs (the sandbox keeps slugs as tarballs)."""
    import tarfile

    slug_id = world.production_releases()[-1]["slug_id"]
    with tarfile.open(world.sandbox.heroku.builder.slug_path(slug_id), "r:gz") as tar:
        return {m.name.removeprefix("./") for m in tar.getmembers()}


def test_a_hotfix_must_be_a_hotfix_branch_based_on_production(world: World) -> None:
    people = world.people
    with pytest.raises(BadInput, match="'develop' is not a hotfix branch"):
        world.services.start_hotfix("develop")
    with pytest.raises(BadInput, match="there is no branch 'hotfix/nope'"):
        world.services.start_hotfix("hotfix/nope")
    # Branched from develop, not from main: it would take develop's other work along.
    people.merge_change("Something on develop", {"OTHER.md": b"other\n"})
    people.commit(
        "hotfix/wrong", {"X.md": b"x\n"}, "Fix from the wrong base", user="ops", parent=people.head("develop")
    )
    with pytest.raises(Refused, match=r"hotfix/wrong carries .* of develop that production does not have"):
        world.services.start_hotfix("hotfix/wrong")
    assert [
        r for r in world.services.store.history(world.settings.name) if r.branch.startswith("hotfix/")
    ] == []
