"""The approval policy through the sandbox: each rule with real people acting in Bitbucket, the real
client libraries, and the controller judging what Bitbucket shows it."""

from __future__ import annotations

import threading

from e2e_world import World, wait_until

from pipeline.model import State

GOOD = {"CHANGELOG.md": b"- Claims can carry a note\n"}


def verified(world: World, title: str = "Add a note", user: str = "dev") -> str:
    """A change merged by ``user``, verified on staging and waiting for approval: its commit."""
    merged = world.people.merge_change(title, GOOD, user=user)
    world.settle()
    release = world.release(merged.commit)
    assert release.state == State.AWAITING_APPROVAL, release.reason
    return merged.commit


def judged(world: World, commit: str) -> dict[str, tuple[bool, str]]:
    """Who was seen approving (or requesting changes), whether it counted, and why."""
    return {a.user.username: (a.counted, a.reason) for a in world.release(commit).approvals}


def test_a_quorum_needs_that_many_distinct_approvers(world: World) -> None:
    world.configure(approval={"approvers": ["po", "ops"], "min_approvals": 2})
    commit = verified(world)
    world.people.approve(user="po")
    world.settle()
    release = world.release(commit)
    assert release.state == State.AWAITING_APPROVAL
    assert "waiting for 1 more approval(s) from po, ops" in release.reason

    world.people.approve(user="ops")
    world.settle()
    release = world.release(commit)
    assert release.state == State.BACKUPS_VERIFIED, release.reason
    assert sorted(a.user.username for a in release.counted_approvals) == ["ops", "po"]
    digest = {a.policy_digest for a in release.counted_approvals}
    assert len(digest) == 1 and all(a.commit == commit for a in release.counted_approvals)
    assert all(a.pull_request_id == release.pull_request_id for a in release.counted_approvals)


def test_the_author_the_controller_and_unlisted_people_never_count(world: World) -> None:
    commit = verified(world, "Written by the PO", user="po")
    pr = world.pull_request_of(commit)
    for user in ("po", "controller", "readonly", "dev"):
        world.people.approve(pr, user=user)
    world.settle()

    release = world.release(commit)
    assert release.state == State.AWAITING_APPROVAL and release.counted_approvals == ()
    why = judged(world, commit)
    assert not why["po"][0] and "wrote commit" in why["po"][1]
    assert not why["controller"][0] and "controller's own account never counts" in why["controller"][1]
    assert not why["readonly"][0] and "not an approver" in why["readonly"][1]
    assert not why["dev"][0] and "not an approver" in why["dev"][1]
    assert world.promotions() == []
    # `pipeline show` explains every approval seen, with its evidence.
    shown = world.services.show(release.id or 0)["approvals_seen"]
    assert {a["user"] for a in shown} == {"po", "controller", "readonly", "dev"}
    assert all(a["pull_request"] == pr and a["commit"] == commit and a["policy_digest"] for a in shown)


def test_an_approval_that_ages_past_max_age_before_promotion_no_longer_counts(world: World) -> None:
    world.configure(approval={"max_age": "3s"})
    commit = verified(world)
    # The backup before promotion takes 4 s: by the moment of promotion the approval is 4 s old.
    world.sandbox.faults.add(service="heroku-data", method="POST", path="*/backups", kind="slow", delay=4)
    world.people.approve(user="po")
    world.settle()

    release = world.release(commit)
    assert release.state == State.AWAITING_APPROVAL, release.reason
    kinds = world.events(release)
    assert "ReleaseApproved" in kinds and "ApprovalVoided" in kinds and "ApprovalLost" in kinds
    assert "more than 3s ago (approval.max_age)" in release.reason
    assert world.promotions() == [] and release.backup_id is None  # the next try backs up anew

    # The Product Owner renews the approval (unapprove, approve), in time this once.
    pr = world.pull_request_of(commit)
    world.people.unapprove(pr, user="po")
    world.people.approve(pr, user="po")
    world.settle()
    release = world.release(commit)
    assert release.state == State.BACKUPS_VERIFIED, release.reason
    assert len(world.production_backups()) == 2 and len(world.promotions()) == 1


def test_changes_requested_by_the_product_owner_reject_the_release(world: World) -> None:
    commit = verified(world)
    pr = world.pull_request_of(commit)
    world.people.request_changes(pr, user="po", comment="The totals are wrong on staging")
    world.settle()

    release = world.release(commit)
    assert release.state == State.REJECTED
    assert "po requested changes" in release.reason and "The totals are wrong on staging" in release.reason
    (rejected,) = [e for e in world.services.store.events(release.id or 0) if e.kind == "ReleaseRejected"]
    assert rejected.actor == "po"
    answer = world.people.pull_request(pr)
    assert answer["state"] == "DECLINED"  # the controller closes what will never ship, saying why
    assert any("Rejected: po requested changes" in c["content"]["raw"] for c in world.people.comments(pr))
    assert world.people.statuses(commit)["pipeline/production"]["state"] == "STOPPED"


def test_a_declined_release_pull_request_rejects_the_release_with_who_and_why(world: World) -> None:
    commit = verified(world)
    world.people.decline(world.pull_request_of(commit), user="po", reason="Not during the audit")
    world.settle()
    release = world.release(commit)
    assert release.state == State.REJECTED
    assert "declined by po: 'Not during the audit'" in release.reason
    assert world.promotions() == []


def test_an_unapprove_before_promotion_withdraws_the_approval(world: World) -> None:
    commit = verified(world)
    pr = world.pull_request_of(commit)
    # Hold the release in its backup long enough for the Product Owner to change their mind.
    world.sandbox.faults.add(service="heroku-data", method="POST", path="*/backups", kind="slow", delay=3)
    world.people.approve(pr, user="po")
    settling = threading.Thread(target=world.settle)
    settling.start()
    wait_until("the release backing up", lambda: world.release(commit).state == State.BACKING_UP)
    world.people.unapprove(pr, user="po")
    settling.join()

    release = world.release(commit)
    assert release.state == State.AWAITING_APPROVAL, release.reason
    (lost,) = [e for e in world.services.store.events(release.id or 0) if e.kind == "ApprovalLost"]
    assert "po withdrew the approval" in lost.reason and lost.state_from == State.BACKING_UP
    assert "ApprovalWithdrawn" in world.events(release)
    assert world.promotions() == []


def test_a_move_of_the_release_branch_voids_approvals_given_before_it(world: World) -> None:
    commit = verified(world)
    release = world.release(commit)
    world.people.approve(user="po")
    world.people.commit(release.release_branch or "", {"SNEAKY.txt": b"unverified\n"}, "Sneak", user="ops")
    world.settle()
    release = world.release(commit)
    assert release.state == State.AWAITING_APPROVAL
    (seen,) = release.approvals
    assert not seen.counted and "bound to the commit" in seen.reason
    # Approving again does not help while the branch is not at the verified commit.
    world.people.unapprove(world.pull_request_of(commit), user="po")
    world.people.approve(user="po")
    world.settle()
    assert world.release(commit).state == State.AWAITING_APPROVAL
    assert world.promotions() == []
