"""Short-lived encryption of what must wait between two conversation steps (the user name)."""

from __future__ import annotations

import base64
import hashlib

from cryptography.fernet import Fernet, InvalidToken


class Sealer:
    """Fernet with a key derived from SECRET_KEY; sealed values expire after `ttl_seconds`."""

    def __init__(self, secret: str, *, ttl_seconds: int = 600, purpose: str = "fsm") -> None:
        # `purpose` separates the keys: what one use seals, another cannot open.
        digest = hashlib.sha256(f"attn-{purpose}-seal:".encode() + secret.encode()).digest()
        self._fernet = Fernet(base64.urlsafe_b64encode(digest))
        self._ttl = ttl_seconds

    def seal(self, value: str) -> str:
        return self._fernet.encrypt(value.encode()).decode("ascii")

    def unseal(self, token: str) -> str | None:
        """The sealed value, or None when the token is forged, damaged or expired."""
        try:
            return self._fernet.decrypt(token.encode("ascii"), ttl=self._ttl).decode()
        except (InvalidToken, ValueError):
            return None
