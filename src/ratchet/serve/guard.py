"""The injection guard on the serving path: per signature, block, flag or ignore inputs that break an L1 rule.

:meth:`InputGuard.screen` looks at every input field of a validated request (strings as they
are, other values by their JSON form) before the program runs. A detection counts
``ratchet_injection_detected_total{signature,rule,action}`` and logs one ``injection_detected``
line (request id, signature, field, rule, action and at most ``guard.excerpt_chars`` of the
matched words, PII-redacted; never the input). In ``block`` mode it returns the
:class:`~ratchet.errors.InjectionBlockedError` the runtime answers with (HTTP 400), so no LM
is called; in ``flag`` mode the request is served as usual.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from typing import Any

from ratchet.config.settings import GuardSettings, GuardSignatureSettings
from ratchet.errors import InjectionBlockedError
from ratchet.guard import Detection, Detector, select_rules
from ratchet.serve import metrics

__all__ = ["InputGuard"]

log = logging.getLogger(__name__)


class InputGuard:
    """The configured guard of every signature (detectors are built once per signature, on first use)."""

    def __init__(self, settings: GuardSettings, redact: Callable[[str], str] = lambda text: text) -> None:
        self.settings = settings
        self._redact = redact
        self._detectors: dict[str, tuple[str, Detector]] = {}

    def screen(self, signature: str, values: Mapping[str, Any], request_id: str) -> InjectionBlockedError | None:
        """Look at ``values`` (a request's validated inputs); the error to answer with when ``signature`` blocks."""
        mode, detector = self._detector(signature)
        if mode == "off":
            return None
        for field, value in values.items():
            found = detector.scan(value if isinstance(value, str) else _as_text(value))
            if found is None:
                continue
            action = "block" if mode == "block" else "flag"
            metrics.INJECTION_DETECTED.labels(signature, found.rule, action).inc()
            self._log(request_id, signature, field, found, action)
            return InjectionBlockedError(found.rule, field=field) if action == "block" else None
        return None

    def _detector(self, signature: str) -> tuple[str, Detector]:
        known = self._detectors.get(signature)
        if known is None:
            own: GuardSignatureSettings = self.settings.for_signature(signature)
            rules = select_rules(own.rules, own.disabled_rules)
            known = self._detectors[signature] = (own.mode, Detector(rules))
        return known

    def _log(self, request_id: str, signature: str, field: str, found: Detection, action: str) -> None:
        limit = self.settings.excerpt_chars
        excerpt = self._redact(found.matched[:limit]) if limit else ""
        log.warning("injection_detected request_id=%s signature=%s field=%s rule=%s action=%s excerpt=%s",
                    request_id, signature, field, found.rule, action, json.dumps(excerpt, ensure_ascii=False),
                    extra={"event": "injection_detected", "request_id": request_id, "signature": signature,
                           "field": field, "rule": found.rule, "inner_rule": found.inner, "action": action,
                           "excerpt": excerpt})


def _as_text(value: Any) -> str:
    """The string form of a non-string input (JSON for lists and dicts, so nested strings are looked at)."""
    try:
        return json.dumps(value, ensure_ascii=False, default=str)
    except (TypeError, ValueError):
        return str(value)
