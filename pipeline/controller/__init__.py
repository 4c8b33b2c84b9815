"""The reconcile pass of one pipeline: observe -> decide -> act -> record.

- ``passes``: ``Controller.tick``, one pass (rollbacks, detection, every active release);
- ``reconcile``: the one loop, shared by releases and rollbacks;
- ``releases`` and ``rollbacks``: what each brings to the loop;
- ``observe``: what a release's state needs read; ``effects``: what its decisions ask done;
- ``feedback``: commit statuses, comments, the release pull request's description;
- ``stage``: the stage guard (the pass lock, what deploys where, locks and overrides);
- ``checking``: a stage's checks run; ``history``: every change saved with its event;
- ``detect``: new candidates; ``policy``: the domain's rules from the settings; ``report``: what a
  pass did.
"""

from pipeline.controller.feedback import production_release_before
from pipeline.controller.passes import Controller, utcnow
from pipeline.controller.policy import check_label, policy_of, verification_of
from pipeline.controller.report import PassReport, ReleaseReport, RollbackReport

__all__ = [
    "Controller",
    "PassReport",
    "ReleaseReport",
    "RollbackReport",
    "check_label",
    "policy_of",
    "production_release_before",
    "utcnow",
    "verification_of",
]
