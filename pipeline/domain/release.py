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

from datetime import datetime

from pipeline.domain.actions import (
    Decision,
    _decision,
)
from pipeline.domain.observation import (
    Observation,
)
from pipeline.domain.policy import (
    Policy,
)
from pipeline.domain.production import (
    _approved,
    _backing_up,
    _production_verifying,
    _promoting,
    _released,
)
from pipeline.domain.staging import (
    _awaiting_approval,
    _detected,
    _gated,
    _staging_deploying,
    _staging_verifying,
)
from pipeline.model import (
    Release,
    State,
)

# --- The decision -----------------------------------------------------------------------------


def decide(release: Release, seen: Observation, policy: Policy, now: datetime) -> Decision:
    """What to do next for ``release``, given what was just seen. Final states: nothing."""
    if release.state.is_final:
        return _decision()
    step = _STEPS[release.state]
    return step(release, seen, policy, now)


_STEPS = {
    State.DETECTED: _detected,
    State.GATED: _gated,
    State.STAGING_DEPLOYING: _staging_deploying,
    State.STAGING_VERIFYING: _staging_verifying,
    State.AWAITING_APPROVAL: _awaiting_approval,
    State.APPROVED: _approved,
    State.BACKING_UP: _backing_up,
    State.PROMOTING: _promoting,
    State.PRODUCTION_VERIFYING: _production_verifying,
    State.RELEASED: _released,
}
