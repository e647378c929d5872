"""Feedback on served requests: validated, stored for any worker, matched to the arm that served it.

Only request ids this service issued are accepted (:mod:`ratchet.serve.request_ids`): anything else
is refused before anything is stored. The score is stored by request id with who sent it, each later
score a new revision (:mod:`ratchet.store.feedback`), and matched to the arm that served the request
when quality is read, so any worker may receive it. When the request was sampled it also goes to
telemetry; if another worker served it and has not flushed its request index yet, that match is
retried a few seconds later. The correction is redacted like telemetry before anything is stored.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from ratchet.config import Settings
from ratchet.errors import CorrectionMismatchError, InputValidationError, UnknownRequestError
from ratchet.programs import ProgramRegistry
from ratchet.serve import metrics
from ratchet.serve.deferred import Deferred
from ratchet.serve.request_ids import RequestIds
from ratchet.serve.result import FeedbackResult
from ratchet.store.db import StateDB
from ratchet.store.feedback import record_feedback
from ratchet.store.outcomes import OutcomeRecorder
from ratchet.telemetry.records import FeedbackRecord
from ratchet.telemetry.redact import Redactor
from ratchet.telemetry.sampling import Sampler

__all__ = ["FeedbackIntake"]

_DAY_S = 86400.0

log = logging.getLogger(__name__)


class FeedbackIntake:
    """Receives feedback for a runtime: checks it, stores it, counts it per arm and logs it when sampled."""

    def __init__(self, settings: Settings, registry: ProgramRegistry, db: StateDB, outcomes: OutcomeRecorder,
                 sampler: Sampler, submit: Callable[[dict[str, Any]], None], redactor: Redactor | None = None,
                 *, request_ids: RequestIds | None = None) -> None:
        self.settings = settings
        self.request_ids = request_ids or RequestIds.for_settings(settings)
        self.redactor = redactor or Redactor(settings.telemetry.redact_patterns)
        self.registry = registry
        self.db = db
        self.outcomes = outcomes
        self.sampler = sampler
        self._submit = submit
        self._unmatched = Deferred(self._match_later, delay_s=2 * settings.serve.outcome_flush_interval_s + 0.5)

    def close(self) -> None:
        self._unmatched.close()

    def receive(self, request_id: str, score: float, correction: dict[str, Any] | None = None, *,
                caller: str = "library") -> FeedbackResult:
        """Attach a 0–1 quality score (and optionally corrected outputs) from ``caller`` to a served request.

        ``request_id`` must be one this service issued (``UnknownRequestError`` otherwise, nothing
        stored). The score is stored by request id and matched to the arm that served the
        request when quality is read, so any worker may receive it. When the request
        was sampled it also goes to telemetry (if another worker served it and has not
        flushed its request index yet, that match is retried a few seconds later).
        Feedback on a request served more than ``serve.request_index_days`` ago is not
        accepted: nothing is stored or counted (``accepted=False`` with the reason).
        """
        if isinstance(score, bool) or not isinstance(score, (int, float)) or not 0.0 <= float(score) <= 1.0:
            raise InputValidationError(f"score must be a number between 0 and 1, got {score!r}", field="score")
        if not isinstance(request_id, str) or not request_id:
            raise InputValidationError("request_id must be a non-empty string", field="request_id")
        if not self.request_ids.issued(request_id):
            raise UnknownRequestError("request_id was not issued by this service: send the request_id a predict "
                                      "response returned", field="request_id")
        found = self.outcomes.find(request_id)
        known = found[:3] if found is not None else None
        signature, version, arm = known if known else (None, None, None)
        if found is not None and (late := self._feedback_too_late(found.served_at)) is not None:
            return FeedbackResult(request_id=request_id, accepted=False, matched=True, signature=signature,
                                  arm=arm, version=version, reason=late)
        if correction is not None:
            if not isinstance(correction, dict):
                raise InputValidationError("correction must be an object of output fields", field="correction")
            if signature is not None and signature in self.registry:
                try:
                    correction = self.registry.get(signature).schema.validate_outputs(correction)
                except InputValidationError as exc:
                    field = f"correction.{exc.field}" if exc.field else "correction"
                    raise CorrectionMismatchError(f"the request was served by {signature}: {exc}",
                                                  field=field) from None
            correction = self.redactor.redact(correction)[0]  # stored and logged without PII
        revision = record_feedback(self.db, request_id, float(score), correction, principal=caller)
        sent = _Sent(request_id, float(score), correction, caller, revision, time.time())
        sampled = False
        if known is not None:
            sampled = self._feedback_matched(known, sent, user=found.user)
        else:  # served by another worker that has not flushed its request index yet: look again later
            self._unmatched.schedule(sent)
        return FeedbackResult(request_id=request_id, accepted=True, matched=known is not None,
                              signature=signature, arm=arm, version=version, sampled=sampled, revision=revision)

    def _feedback_too_late(self, served_at: float) -> str | None:
        """Why feedback on a request served at ``served_at`` is refused, or None while its window is open."""
        window_days = self.settings.serve.request_index_days
        age_days = (time.time() - served_at) / _DAY_S
        if age_days <= window_days:
            return None
        return (f"the request was served {age_days:.1f} days ago; feedback is accepted for "
                f"{window_days:g} days (serve.request_index_days)")

    def _feedback_matched(self, known: tuple[str, str, str], sent: _Sent, *, user: str | None = None) -> bool:
        """Count feedback for its arm and, when the request was sampled, log it to telemetry."""
        signature, _version, arm = known
        metrics.FEEDBACK.labels(signature, arm).inc()
        if not self.sampler.should_sample(signature, sent.request_id):
            return False
        record = FeedbackRecord(request_id=sent.request_id, signature=signature, score=sent.score,
                                correction=sent.correction, timestamp_ms=int(sent.at * 1000), principal=sent.caller,
                                revision=sent.revision, user_pseudonym=user)
        self._submit(record.to_dict())
        return True

    def _match_later(self, sent: _Sent) -> None:
        found = self.outcomes.find(sent.request_id)
        if found is None:
            return  # never served (or pruned): the score is stored, it just matches no request
        known = found[:3]
        if sent.correction is not None and known[0] in self.registry:
            try:
                sent = replace(sent, correction=self.registry.get(known[0]).schema.validate_outputs(sent.correction))
            except InputValidationError as exc:
                log.warning("feedback for %s: correction dropped from telemetry: %s", sent.request_id, exc)
                sent = replace(sent, correction=None)
        self._feedback_matched(known, sent, user=found.user)


@dataclass(frozen=True)
class _Sent:
    """One feedback as received: what telemetry logs once its request is matched."""

    request_id: str
    score: float
    correction: dict[str, Any] | None
    caller: str
    revision: int
    at: float
