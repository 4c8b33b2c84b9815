"""Secrets never reach a log line, whoever logs it, tracebacks included."""

from __future__ import annotations

import io
import logging

from pipeline import bootstrap

SECRET = "ATATT3xSECRETSECRET"


def test_secrets_are_blanked_in_messages_arguments_and_tracebacks() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        bootstrap.redact_logs([SECRET])
        log = logging.getLogger("some.library")
        log.warning("calling with token %s", SECRET)
        try:
            raise RuntimeError(f"refused: Bearer {SECRET}")
        except RuntimeError:
            log.exception("the call failed")
        bootstrap.redact_logs([SECRET])  # twice: still one filter per handler
        assert sum(1 for f in handler.filters if type(f).__name__ == "_Redact") == 1
    finally:
        root.removeHandler(handler)
    text = stream.getvalue()
    assert SECRET not in text
    assert "calling with token ***" in text and "refused: Bearer ***" in text
