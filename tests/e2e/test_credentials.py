"""``pipeline credentials check`` against the sandbox, which refuses what Bitbucket and Heroku refuse:
each kind of Bitbucket token (an API token with its e-mail, a repository or a workspace access
token), the mistakes people make with them, and Heroku's key; nothing it prints or records holds a
secret."""

from __future__ import annotations

import json
from typing import Any

import yaml
from cli_support import environment, ok, pipeline
from e2e_world import World

URL = "http://127.0.0.1:9/webhooks/bitbucket"


def check(world: World, *args: str, env: dict[str, str] | None = None) -> Any:
    return pipeline(world, "credentials", "check", *args, env=env or environment(world))


def checks(run: Any) -> dict[tuple[str, str], dict[str, Any]]:
    found = json.loads(run.stdout)["checks"]
    assert all(set(c) == {"credential", "need", "ok", "detail"} for c in found), found
    return {(c["credential"], c["need"]): c for c in found}


def approvers_as_ids(world: World) -> None:
    data = yaml.safe_load(world.config_path.read_text())
    data["approval"]["approvers"] = [world.account_id("po")]
    world.config_path.write_text(yaml.safe_dump(data))


def test_an_api_token_with_its_email_has_every_permission_and_rearms_the_webhook(world: World) -> None:
    run = ok(check(world, "--webhook-url", URL))
    assert "ok       BITBUCKET_TOKEN: authenticate: an Atlassian API token of " in run.stdout
    assert "acting as controller" in run.stdout and "MISSING" not in run.stdout
    for need in ("read the repository", "post commit statuses", "merge and decline pull requests"):
        assert f"BITBUCKET_TOKEN: {need}:" in run.stdout
    for need in ("deploy claims-staging", "deploy claims-production", "promote through pipeline claims"):
        assert f"ok       HEROKU_API_KEY: {need}:" in run.stdout
    assert "capture backups of claims-production's database" in run.stdout
    assert f"given to the webhook to {URL} (created)" in run.stdout
    (noted,) = [e for e in world.services.log() if e["kind"] == "CredentialsRotated"]
    for name in ("BITBUCKET_TOKEN", "HEROKU_API_KEY", "BITBUCKET_WEBHOOK_SECRET"):
        assert world.env[name] not in run.stdout + run.stderr + noted["reason"] + (noted["detail"] or "")
    as_json = checks(ok(check(world, "--json", "--webhook-url", URL)))
    assert all(c["ok"] for c in as_json.values())
    assert ("HEROKU_API_KEY", "deploy claims-production") in as_json


def test_an_api_token_sent_without_its_email_is_named_as_the_likely_mistake(world: World) -> None:
    run = check(world, env=environment(world, without=("BITBUCKET_EMAIL",)))
    assert run.returncode == 1, run.stdout
    assert "BITBUCKET_EMAIL" in run.stderr and "Bearer" in run.stderr
    assert world.env["BITBUCKET_TOKEN"] not in run.stdout + run.stderr


def test_the_readonly_users_token_lacks_the_writes_and_says_so(world: World) -> None:
    box = world.sandbox.info()["bitbucket"]
    env = environment(world) | {
        "BITBUCKET_TOKEN": box["users"]["readonly"],
        "BITBUCKET_EMAIL": box["emails"]["readonly"],
    }
    run = check(world, "--json", env=env)
    assert run.returncode == 1
    found = checks(run)
    write = found[("BITBUCKET_TOKEN", "post commit statuses")]
    assert not write["ok"] and "has read access to whisper/claims; this needs write" in write["detail"]
    assert found[("BITBUCKET_TOKEN", "read the repository")]["ok"]
    assert "cannot post commit statuses" in run.stderr


def test_each_access_token_alone_passes_once_approvers_are_written_as_ids(world: World) -> None:
    tokens = world.sandbox.info()["bitbucket"]["access_tokens"]
    bare = environment(world, without=("BITBUCKET_EMAIL",))
    nickname = check(world, env=bare | {"BITBUCKET_TOKEN": tokens["repository"]})
    assert nickname.returncode == 1 and "read the workspace's members" in nickname.stderr
    approvers_as_ids(world)
    for kind in ("repository", "workspace"):
        run = check(world, "--json", env=bare | {"BITBUCKET_TOKEN": tokens[kind]})
        assert run.returncode == 0, run.stdout + run.stderr
        found = checks(run)
        said = found[("BITBUCKET_TOKEN", "authenticate")]["detail"]
        assert "access token (sent as Bearer)" in said and "bot account" in said
        assert (
            "an access token's scopes are its access"
            in found[("BITBUCKET_TOKEN", "merge and decline pull requests")]["detail"]
        )


def test_a_refused_heroku_key_and_a_two_factor_account_are_explained(world: World) -> None:
    wrong = "not-a-real-key-0123456789"
    refused = check(world, env=environment(world) | {"HEROKU_API_KEY": wrong})
    assert refused.returncode == 1 and "HEROKU_API_KEY was refused" in refused.stderr
    assert wrong not in refused.stdout + refused.stderr
    world.sandbox.heroku.require_two_factor(True)
    try:
        second = check(world)
    finally:
        world.sandbox.heroku.require_two_factor(False)
    assert second.returncode == 1 and "heroku authorizations:create" in second.stderr
