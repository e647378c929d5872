"""Request ids that never carry PII: a client may send anything as its id, even an e-mail address.

An id the redactor leaves alone is kept as it is. One that holds PII is stored, logged and
returned as its redacted form plus a digest of the original (letters only, so the redactor
leaves it alone too), so different ids stay different and the same id always maps to the same
safe one: feedback sent with the original id still finds its request.
"""

from __future__ import annotations

import hashlib

from ratchet.telemetry.redact import Redactor

__all__ = ["safe_request_id"]

_LETTERS = str.maketrans("0123456789", "ghijklmnop")


def safe_request_id(redactor: Redactor, request_id: str) -> str:
    """``request_id``, or when it holds PII its redacted form and a 16-letter digest (``[EMAIL]#kdab…``)."""
    redacted, found = redactor.redact_text(request_id)
    if not found:
        return request_id
    digest = hashlib.sha256(request_id.encode("utf-8", "surrogatepass")).hexdigest()[:16].translate(_LETTERS)
    return f"{redacted[:160]}#{digest}"
