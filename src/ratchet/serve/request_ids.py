"""Request ids only this service can issue, so feedback can only name requests it really served.

An id is ``r`` + 20 hex digits of nonce + 16 hex digits of tag, the tag an HMAC of the nonce under
the service secret's ``request-ids`` key (:func:`ratchet.store.secrets.derived_key`). Any worker, on
any host sharing ``RATCHET_SECRET_KEY``, checks an id without looking anything up; guessing a valid
one takes about 2^64 tries. The nonce is random, or — when the client sent its own ``request_id`` —
derived from it (an idempotency key: the same client id from the same caller for the same program
always gets the same request id, so a retried call's feedback lands on one request). A client id
is never stored, logged or used to choose an arm or the telemetry sample.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets

from ratchet.config import Settings
from ratchet.store.secrets import derived_key

__all__ = ["RequestIds"]

_NONCE_HEX = 20
_TAG_HEX = 16
_SHAPE = re.compile(rf"r[0-9a-f]{{{_NONCE_HEX + _TAG_HEX}}}")


class RequestIds:
    """Issues request ids and recognises the ones it (or a worker with the same secret) issued."""

    def __init__(self, key: bytes) -> None:
        self._key = key

    @classmethod
    def for_settings(cls, settings: Settings) -> RequestIds:
        return cls(derived_key(settings, "request-ids"))

    def issue(self, *, idempotency_key: str | None = None, caller: str = "", signature: str = "") -> str:
        """A new id; with ``idempotency_key``, the one id for that key from ``caller`` for ``signature``."""
        if idempotency_key is None:
            nonce = secrets.token_hex(_NONCE_HEX // 2)
        else:
            scope = "\x1f".join(("idempotency", caller, signature, idempotency_key)).encode("utf-8", "surrogatepass")
            nonce = hmac.new(self._key, scope, hashlib.sha256).hexdigest()[:_NONCE_HEX]
        return f"r{nonce}{self._tag(nonce)}"

    def issued(self, request_id: object) -> bool:
        """Whether ``request_id`` is an id this service issued (constant-time over the tag)."""
        if not isinstance(request_id, str) or not _SHAPE.fullmatch(request_id):
            return False
        nonce, tag = request_id[1:1 + _NONCE_HEX], request_id[1 + _NONCE_HEX:]
        return hmac.compare_digest(tag, self._tag(nonce))

    def _tag(self, nonce: str) -> str:
        return hmac.new(self._key, b"tag\x1f" + nonce.encode("ascii"), hashlib.sha256).hexdigest()[:_TAG_HEX]
