"""The console's session cookie and CSRF tokens, both tagged with a key derived from the service secret.

A session is ``<payload>.<tag>``: the payload (URL-safe base64 JSON) names a random session id, the API key it
logged in with (none for an open loopback server) and when it expires; the tag is an HMAC-SHA256 over it, so a
client can neither forge nor extend one. The key itself never goes into the cookie: every request looks the key
up again, so revoking it ends its sessions. A form's CSRF token is an HMAC of the session id, checked with a
constant-time comparison on every state-changing request.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass

__all__ = ["COOKIE", "Session", "SessionSigner"]

COOKIE = "ratchet_session"


@dataclass(frozen=True)
class Session:
    """One browser's session: its id, the key it logged in with (None: not logged in) and its expiry."""

    sid: str
    key_id: str | None
    expires_at: float

    @property
    def logged_in(self) -> bool:
        return self.key_id is not None


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class SessionSigner:
    """Issues and checks session cookies and CSRF tokens under one secret."""

    def __init__(self, secret: bytes, *, ttl_s: float) -> None:
        if len(secret) < 16:
            raise ValueError("the console's session secret is too short")
        self._secret = secret
        self.ttl_s = ttl_s

    def _tag(self, purpose: str, payload: str) -> str:
        return _b64(hmac.new(self._secret, f"{purpose}:{payload}".encode(), hashlib.sha256).digest())

    def issue(self, key_id: str | None, *, now: float | None = None) -> tuple[str, Session]:
        """A new session (new id) for ``key_id`` and its cookie value."""
        now = time.time() if now is None else now
        session = Session(sid=secrets.token_urlsafe(18), key_id=key_id, expires_at=now + self.ttl_s)
        payload = _b64(json.dumps({"s": session.sid, "k": key_id, "e": int(session.expires_at)}).encode())
        return f"{payload}.{self._tag('session', payload)}", session

    def read(self, value: str | None, *, now: float | None = None) -> Session | None:
        """The session a cookie value carries; None when it is missing, forged, malformed or expired."""
        if not value or value.count(".") != 1 or len(value) > 1024:
            return None
        payload, tag = value.split(".")
        if not hmac.compare_digest(tag, self._tag("session", payload)):
            return None
        try:
            data = json.loads(_unb64(payload))
            session = Session(sid=str(data["s"]), key_id=None if data["k"] is None else str(data["k"]),
                              expires_at=float(data["e"]))
        except (ValueError, KeyError, TypeError):
            return None
        now = time.time() if now is None else now
        return session if session.expires_at > now else None

    def csrf_token(self, session: Session) -> str:
        """The token a form of this session carries."""
        return self._tag("csrf", session.sid)

    def csrf_ok(self, session: Session, token: str | None) -> bool:
        """Whether ``token`` is this session's CSRF token (constant time)."""
        return bool(token) and hmac.compare_digest(str(token), self.csrf_token(session))
