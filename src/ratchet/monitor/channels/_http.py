"""POSTing JSON for the webhook-style channels, with errors that never show the (secret) URL."""

from __future__ import annotations

from typing import Any

import httpx

from ratchet.errors import DeliveryError
from ratchet.version import __version__

__all__ = ["post_json"]

_BODY_PREVIEW = 200


def post_json(url: str, payload: dict[str, Any], *, timeout_s: float, channel: str) -> None:
    """POST ``payload`` as JSON; raise ``DeliveryError`` on a timeout, a network error or a non-2xx answer."""
    headers = {"User-Agent": f"ratchet/{__version__}"}
    try:
        response = httpx.post(url, json=payload, headers=headers, timeout=timeout_s)
    except httpx.TimeoutException:
        raise DeliveryError(f"{channel}: no answer within {timeout_s:g} s") from None
    except httpx.HTTPError as exc:
        raise DeliveryError(f"{channel}: {type(exc).__name__}: {_scrub(str(exc), url)}") from None
    if not 200 <= response.status_code < 300:
        body = _scrub(response.text.strip().replace("\n", " "), url)[:_BODY_PREVIEW]
        raise DeliveryError(f"{channel}: HTTP {response.status_code} {response.reason_phrase}"
                            + (f": {body}" if body else ""))


def _scrub(text: str, url: str) -> str:
    """``text`` without the URL (webhook URLs are credentials)."""
    return text.replace(url, "<url>") if url else text
