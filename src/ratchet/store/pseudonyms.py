"""Keyed pseudonyms of user ids: how a user's records are found without the raw id being stored.

A pseudonym is HMAC-SHA256 of the user id under the service's ``user-pseudonyms`` key
(:func:`ratchet.store.secrets.derived_key`), hex, cut to :data:`PSEUDONYM_LEN` characters.
The same id always gives the same pseudonym under one secret, so a deletion request for a user
finds every record stored with it; without the secret nobody can test a guessed id against a
stored pseudonym. A call served without a user id has no pseudonym: it cannot be found by user.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import threading

from ratchet.config import Settings
from ratchet.store.secrets import derived_key

__all__ = ["PSEUDONYM_LEN", "PSEUDONYM_PURPOSE", "Pseudonymizer", "is_pseudonym", "pseudonym_of", "user_pseudonym"]

PSEUDONYM_PURPOSE = "user-pseudonyms"
PSEUDONYM_LEN = 32
_PATTERN = re.compile(rf"^[0-9a-f]{{{PSEUDONYM_LEN}}}$")


def pseudonym_of(key: bytes, user_id: str) -> str:
    """The pseudonym of ``user_id`` under ``key`` (``str()`` of a non-string id; lone surrogates allowed)."""
    text = user_id if isinstance(user_id, str) else str(user_id)
    digest = hmac.new(key, text.encode("utf-8", "surrogatepass"), hashlib.sha256).hexdigest()
    return digest[:PSEUDONYM_LEN]


def user_pseudonym(settings: Settings, user_id: str) -> str:
    """The pseudonym of ``user_id`` under ``settings``' service secret."""
    return pseudonym_of(derived_key(settings, PSEUDONYM_PURPOSE), user_id)


def is_pseudonym(value: object) -> bool:
    """Whether ``value`` looks like a pseudonym (lower-case hex of the right length)."""
    return isinstance(value, str) and bool(_PATTERN.match(value))


class Pseudonymizer:
    """Pseudonyms for one process: the key is derived on first use (the secret file is made only when needed)."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._key: bytes | None = None
        self._lock = threading.Lock()

    def __call__(self, user_id: str | None) -> str | None:
        """The pseudonym of ``user_id``; None for a call without one (empty or missing)."""
        if user_id is None or user_id == "":
            return None
        key = self._key
        if key is None:
            with self._lock:
                if self._key is None:
                    self._key = derived_key(self._settings, PSEUDONYM_PURPOSE)
                key = self._key
        return pseudonym_of(key, user_id)
