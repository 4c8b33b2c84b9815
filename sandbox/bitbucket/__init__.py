"""A Bitbucket Cloud REST 2.0 stand-in backed by real git repositories (see ``service``)."""

from __future__ import annotations

from sandbox.bitbucket.service import BitbucketCloud

__all__ = ["BitbucketCloud"]
