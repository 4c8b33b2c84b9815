"""The domain's rules of one pipeline (``domain.Policy``), from its settings."""

from __future__ import annotations

from datetime import timedelta

from pipeline import domain
from pipeline.config import CheckSpec, Settings, StageSettings
from pipeline.model import Person


def policy_of(
    settings: Settings, controller_account: Person | None = None, approvers: frozenset[str] | None = None
) -> domain.Policy:
    """The domain's rules, from the settings; ``approvers``: their pinned account ids and uuids
    (else the names as written). The approval rules' switches go to ``ApprovalPolicy`` by their
    configuration keys, so a new rule needs no line here."""
    backups = settings.production.backups
    approval = settings.approval
    rules = approval.model_dump(exclude={"approvers"})
    return domain.Policy(
        required_builds=tuple(settings.source.required_builds),
        approval=domain.ApprovalPolicy(
            approvers=approvers if approvers is not None else frozenset(approval.approvers),
            names=tuple(approval.approvers),
            controller_account=controller_account,
            **rules,
        ),
        staging=verification_of(settings.staging),
        production=verification_of(settings.production),
        capture_backup=backups.capture_before_promotion if backups else False,
        backup_max_age=backups.max_age if backups else timedelta(hours=26),
        capture_timeout=backups.capture_timeout if backups else timedelta(hours=6),
        staging_name=settings.staging.name,
        production_name=settings.production.name,
        source_branch=settings.source.branch,
        production_branch=settings.source.production_branch,
        windows={s.name: s.windows.windows() for s in settings.stages if s.windows is not None},
        intent_grace=settings.schedule.effect_grace,
    )


def verification_of(stage: StageSettings) -> domain.Verification:
    """Each configured check of the stage with its own rule: retries, interval, backoff, soak."""
    return domain.Verification(
        checks=tuple(
            domain.CheckRule(
                name=check_label(spec),
                retries=spec.options.retries,
                interval=spec.options.interval,
                backoff=spec.options.backoff,
                soak=spec.options.soak,
            )
            for spec in stage.checks
        )
    )


def check_label(spec: CheckSpec) -> str:
    """A configured check's name for people: the plugin, and its path when it has one."""
    path = getattr(spec.options, "path", None)
    return f"{spec.kind} {path}" if isinstance(path, str) else spec.kind
