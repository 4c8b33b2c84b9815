"""The controller's one small error hierarchy.

Adapters translate every third-party error into one of these at the boundary
(``raise Temporary(...) from exc``), so the controller decides on our terms only:

- ``Temporary``: worth trying again later (timeouts, 5xx, 429). Carries ``retry_after`` seconds.
- ``Permanent``: trying again will not help (404, 401, 422, a refused merge). Carries the evidence.
- ``ConfigError``: bad configuration, found before anything runs. Names the file, the key path and
  what is expected.
- ``BadInput``: a command's argument names nothing that exists, or is not allowed (exit status 2,
  nothing changed); ``Refused``: a valid request that cannot be done now, saying why (exit 1).

Messages never contain secrets: adapters build them from status codes, ids and response bodies only.
"""

from __future__ import annotations


class PipelineError(Exception):
    """Base of every error the controller raises on purpose."""


class ConfigError(PipelineError):
    """One configuration problem: ``<file>: <key.path>: <what is wrong and what is expected>``."""

    def __init__(self, file: str, key: str, message: str) -> None:
        self.file = file
        self.key = key
        self.message = message
        where = f"{file}: {key}" if key else file
        super().__init__(f"{where}: {message}")


class ConfigInvalid(PipelineError):
    """Every configuration problem found, one ``ConfigError`` per line."""

    def __init__(self, problems: list[ConfigError]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


class BadInput(PipelineError):
    """A command's input is wrong: ``option`` names the argument or option, the message what is
    expected. Nothing was changed."""

    def __init__(self, option: str, message: str) -> None:
        self.option = option
        super().__init__(f"{option}: {message}")


class Refused(PipelineError):
    """A valid request that cannot be carried out now (production busy, nothing to promote...);
    the message says why and what to do. Nothing was changed."""


class LeaseLost(PipelineError):
    """The pass lock is no longer surely ours (the process was paused or slowed past its lease, or
    another process holds it now): the pass stops before writing or asking for anything, and the
    holder of the lock carries on from what the store says."""


class StoreLost(PipelineError):
    """The store is no longer the one this process opened (its file removed or replaced, its history
    another): nothing more may be written to it or done on what it said; the service stops."""


class ExternalError(PipelineError):
    """A call to Bitbucket, Heroku or the Heroku Data API did not do what was asked.

    ``service`` is "bitbucket", "heroku" or "heroku-data"; ``status`` the HTTP status when there was
    one; ``evidence`` a short excerpt of the response body (never headers, never credentials).
    """

    def __init__(self, service: str, message: str, *, status: int | None = None, evidence: str = "") -> None:
        self.service = service
        self.status = status
        self.evidence = evidence
        detail = f" (HTTP {status})" if status is not None else ""
        super().__init__(f"{service}: {message}{detail}" + (f": {evidence}" if evidence else ""))


class Temporary(ExternalError):
    """Try again after ``retry_after`` seconds; nothing was (or may safely be assumed) done."""

    def __init__(
        self,
        service: str,
        message: str,
        *,
        status: int | None = None,
        evidence: str = "",
        retry_after: float = 30.0,
    ) -> None:
        super().__init__(service, message, status=status, evidence=evidence)
        self.retry_after = retry_after


class Permanent(ExternalError):
    """Trying again will not help; a person has to act (the message says on what)."""


class NotFound(Permanent):
    """The thing asked for does not exist (HTTP 404)."""
