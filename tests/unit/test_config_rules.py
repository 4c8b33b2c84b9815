"""Rules across keys: the models state them, and their problems come where they always came, after
each file's keys taken one by one (and after its checks), in a stable order."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from pipeline import config
from pipeline.errors import ConfigInvalid

ROOT = Path(__file__).resolve().parents[2]
ENV = {"BITBUCKET_TOKEN": "bb-token-0", "HEROKU_API_KEY": "hk-key-0", "BITBUCKET_WEBHOOK_SECRET": "hook-0"}


@pytest.fixture
def shipped(tmp_path: Path) -> Path:
    shutil.copy(ROOT / "pipeline.yml", tmp_path / "pipeline.yml")
    shutil.copytree(ROOT / "environments", tmp_path / "environments")
    return tmp_path / "pipeline.yml"


def change(path: Path, edit: Callable[[dict[str, Any]], object]) -> None:
    data = yaml.safe_load(path.read_text())
    edit(data)
    path.write_text(yaml.safe_dump(data, sort_keys=False))


def problems(config_path: Path) -> list[tuple[str, str, str]]:
    with pytest.raises(ConfigInvalid) as caught:
        config.load(config_path, ENV)
    return [(Path(p.file).name, p.key, p.message) for p in caught.value.problems]


def test_pipeline_rules_follow_the_keys_own_problems_in_order(shipped: Path) -> None:
    def edit(d: dict[str, Any]) -> None:
        d["source"]["production_branch"] = "develop"
        d["schedule"]["poll_interval"] = "often"
        d["approval"].update(approvers=["a", "b", "a", "b", "a"], min_approvals=5)
        d["colour"] = "blue"

    change(shipped, edit)
    assert [(key, message[:30]) for _, key, message in problems(shipped)] == [
        ("schedule.poll_interval", "expected a duration such as 30"),
        ("colour", "unknown key (known keys: name,"),
        ("source.production_branch", "must differ from source.branch"),
        ("approval.approvers[2]", "listed twice; each approver co"),
        ("approval.approvers[3]", "listed twice; each approver co"),
        ("approval.approvers[4]", "listed twice; each approver co"),
        ("approval.min_approvals", "must be between 1 and 2 (the n"),
    ]


def test_a_rule_holds_under_an_unresolved_variable(shipped: Path) -> None:
    change(shipped, lambda d: d["approval"].update(approvers=["${NOT_SET}", "${NOT_SET}"]))
    assert [key for _, key, _ in problems(shipped)] == [
        "approval.approvers[0]",
        "approval.approvers[1]",
        "approval.approvers[1]",  # listed twice
    ]


def test_a_section_with_problems_of_its_own_is_not_judged_by_its_rules(shipped: Path) -> None:
    change(shipped, lambda d: d["approval"].update(approvers=["a", "", "a"], min_approvals=3))
    assert [key for _, key, _ in problems(shipped)] == ["approval.approvers[1]"]


def test_production_rules_follow_the_file_and_its_checks(shipped: Path) -> None:
    def edit(d: dict[str, Any]) -> None:
        d["heroku"].pop("pipeline")
        d["checks"].append({"smoke": {}})
        d["backups"]["max_age"] = "a day"

    change(shipped.parent / "environments" / "production.yml", edit)
    assert [key for _, key, _ in problems(shipped)] == ["backups.max_age", "checks[1]", "heroku.pipeline"]


def test_backups_on_staging_are_checked_and_refused(shipped: Path) -> None:
    def edit(d: dict[str, Any]) -> None:
        d["backups"] = {"max_age": "a day"}
        d["checks"].append({"smoke": {}})

    change(shipped.parent / "environments" / "staging.yml", edit)
    assert [(key, message[:30]) for _, key, message in problems(shipped)] == [
        ("backups.max_age", "expected a duration such as 30"),
        ("checks[1]", "unknown check 'smoke'; known c"),
        ("backups", "backups apply to the productio"),
    ]


def test_the_models_hold_their_rules_on_their_own() -> None:
    with pytest.raises(ValidationError, match=r"must differ from source\.branch"):
        config.SourceSettings(workspace="w", repository="r", branch="main", production_branch="main")
    with pytest.raises(ValidationError, match=r"listed twice; .* 2 distinct people could never approve"):
        config.ApprovalSettings(approvers=("po", "po"), min_approvals=2)
