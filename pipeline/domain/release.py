"""The release state machine: ``decide(release, observation, policy, now) -> Decision``.

Pure: no I/O, no clock, no environment. The controller observes Bitbucket and Heroku into an
``Observation``, calls ``decide``, carries out the ``Decision``'s actions in order and records them.
Every branch here is exercised with plain values in ``tests/unit/test_domain.py``.

The path (see ``State``)::

    detected -> gated -> staging_deploying -> staging_verifying -> awaiting_approval -> approved
      -> backing_up -> promoting -> production_verifying -> released -> backups_verified

Effects that create something on Heroku or Bitbucket are marked pending (``pending_action``,
``pending_since``) before they run. When a pass finds the mark but not the id, the observation
looks for the effect by its natural key (the build of this commit, a backup or a production release
created since the mark); ``decide`` adopts what it finds, waits through ``Policy.intent_grace`` for
an answer that may still come, and only then does the effect again.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime

from pipeline.domain import production, staging
from pipeline.domain.actions import ReleaseDecision, decision
from pipeline.domain.observation import Observation
from pipeline.domain.policy import Policy
from pipeline.model import Release, State

Step = Callable[[Release, Observation, Policy, datetime], ReleaseDecision]

# Every state that is not final, with its step: ``staging`` holds the steps up to approval,
# ``production`` the rest.
STEPS: Mapping[State, Step] = {**staging.STEPS, **production.STEPS}


def decide(release: Release, seen: Observation, policy: Policy, now: datetime) -> ReleaseDecision:
    """What to do next for ``release``, given what was just seen. Final states: nothing."""
    if release.state.is_final:
        return decision()
    return STEPS[release.state](release, seen, policy, now)
