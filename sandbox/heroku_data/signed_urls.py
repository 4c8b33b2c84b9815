"""Short-lived signed URLs for backup downloads, like the S3 presigned URLs Heroku hands out.

A URL is ``{base}{path}?expires=<unix seconds>&signature=<hex>`` where the signature is an
HMAC-SHA256 over ``"{path}\\n{expires}"`` with a secret kept in the state dir (made on first
use, so URLs stay valid across a restart of the sandbox, and a URL from another state dir
never is). ``verify`` answers why a URL is refused, so the server can say so.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path
from urllib.parse import urlencode

DEFAULT_TTL = 3600.0  # seconds; Heroku's public backup URLs last an hour
MAX_TTL = 7 * 24 * 3600.0  # S3 refuses presigned URLs that live longer than a week


class Signer:
    """Signs and verifies download paths with the state dir's secret."""

    def __init__(self, key_file: Path) -> None:
        self._key = self._load_or_make(key_file)

    @staticmethod
    def _load_or_make(key_file: Path) -> bytes:
        try:
            return bytes.fromhex(key_file.read_text().strip())
        except FileNotFoundError:
            pass
        key_file.parent.mkdir(parents=True, exist_ok=True)
        key = secrets.token_bytes(32)
        fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(key.hex())
        return key

    def signature(self, path: str, expires: int) -> str:
        return hmac.new(self._key, f"{path}\n{expires}".encode(), hashlib.sha256).hexdigest()

    def sign(self, base_url: str, path: str, expires: int) -> str:
        """The absolute URL of ``path`` on ``base_url``, valid until ``expires`` (unix seconds)."""
        query = urlencode({"expires": expires, "signature": self.signature(path, expires)})
        return f"{base_url}{path}?{query}"

    def verify(self, path: str, expires: str | None, signature: str | None, now: float) -> str | None:
        """None when the URL may be served now, otherwise the reason it may not."""
        if not expires or not signature:
            return "Request is missing its signature"
        if not expires.isdigit():
            return "Invalid expiry in the query string"
        if not hmac.compare_digest(self.signature(path, int(expires)), signature):
            return "The request signature we calculated does not match the signature you provided"
        if int(expires) < now:
            return "Request has expired"
        return None
