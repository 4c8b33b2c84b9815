"""The Heroku Platform API stand-in: apps that really run, behind Heroku's API shapes and rules."""

from __future__ import annotations

from sandbox.heroku.platform import HerokuPlatform

__all__ = ["HerokuPlatform"]
