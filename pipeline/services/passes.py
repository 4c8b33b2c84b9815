"""Passes until things settle."""

from __future__ import annotations

from pipeline.errors import PipelineError


class SettleTimeout(PipelineError):
    """``tick --settle`` ran out of time while something was still moving."""
