"""The one call path every request takes: route, run, measure, count, sample.

::

    runtime = ratchet.Runtime()                      # settings from ratchet.toml / RATCHET_*
    result = runtime.call("classify_intent", {"text": "Where is my card?"}, user_id="u-42")
    result.outputs, result.arm, result.latency_ms, result.tokens, result.sampled
    runtime.feedback(result.request_id, score=1.0)

Per request: validate the inputs against the signature, pick the arm by
deterministic bucketing from the routing state, run that program version on the
configured LM (falling back to ``[lm.fallback]`` when the LM fails), then update
the Prometheus metrics and the per-arm counters, and hand a PII-redacted copy of
sampled calls to the telemetry writer. Nothing after the program call blocks on
I/O: counters are batched, telemetry is written by a background thread.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import dspy

from ratchet.config import Settings, load_settings
from ratchet.errors import InputValidationError, ModelNotAvailableError, VersionError
from ratchet.lm.cache import serving_caches
from ratchet.lm.pricing import TokenPrices, token_prices
from ratchet.lm.setup import LMBundle, build_lms, configure_dspy
from ratchet.programs import ProgramRegistry, load_programs
from ratchet.programs.versions import VersionStore
from ratchet.routing import ROUTING_FILENAME, choose_arm
from ratchet.serve import metrics
from ratchet.serve.deferred import Deferred
from ratchet.serve.errors import LM_FAILURES, classify_error
from ratchet.serve.result import CallResult, FeedbackResult
from ratchet.serve.served import ServedVersion, ServedVersions
from ratchet.serve.state_follower import StateFollower
from ratchet.store.db import StateDB
from ratchet.store.feedback import record_feedback
from ratchet.store.outcomes import OutcomeRecorder
from ratchet.store.private import make_private_dir
from ratchet.telemetry.records import FeedbackRecord, InteractionLog
from ratchet.telemetry.redact import Redactor
from ratchet.telemetry.sampling import Sampler
from ratchet.telemetry.writer import TelemetryWriter

__all__ = ["Runtime"]

_FREE_TEXT = ("input", "output", "correction", "error")
_DAY_S = 86400.0

log = logging.getLogger(__name__)

@dataclass(frozen=True)
class _Ticket:
    """Who a request is: its id, and the experiment that routed it ("" outside one: counters are kept apart)."""

    request_id: str
    experiment_id: str


class Runtime:
    """Serve registered programs with routing, metrics, per-arm counters and telemetry."""

    def __init__(self, settings: Settings | None = None, *, registry: ProgramRegistry | None = None,
                 lms: LMBundle | None = None, db: StateDB | None = None, configure: bool = True) -> None:
        self.settings = settings or load_settings()
        self.registry = registry if registry is not None else load_programs(self.settings)
        home = make_private_dir(self.settings.home_dir)
        if configure:
            self.lms = configure_dspy(self.settings, serving=True, bundle=lms)
        else:  # DSPy is configured by the caller; models built here still cache only as [serve] allows
            self.lms = lms or build_lms(self.settings.lm, cache=serving_caches(self.settings.serve))
        self.versions = VersionStore(home)
        self.sampler = Sampler.from_settings(self.settings.telemetry)
        self.redactor = Redactor(self.settings.telemetry.redact_patterns)
        telemetry = self.settings.telemetry
        self.telemetry = TelemetryWriter(home / "telemetry", max_file_mb=telemetry.max_file_mb,
                                         max_age_days=telemetry.max_age_days,
                                         compress_rotated=telemetry.compress_rotated,
                                         queue_size=telemetry.queue_size,
                                         flush_interval_s=telemetry.flush_interval_s)
        self.db = db or StateDB.connect(self.settings)
        self.follower = StateFollower(self.db, self.registry, self.versions, home / ROUTING_FILENAME,
                                      interval_s=self.settings.serve.routing_check_interval_s)
        self.outcomes = OutcomeRecorder(self.db, flush_interval_s=self.settings.serve.outcome_flush_interval_s)
        # Prices follow the settings' models; models passed in with ``lms`` have unknown cost.
        self._prices: dict[str, TokenPrices | None] = {}
        if lms is None:
            self._prices[self.lms.task.model] = token_prices(self.settings.lm)
            if self.lms.fallback is not None and self.settings.lm.fallback is not None:
                self._prices[self.lms.fallback.model] = token_prices(self.settings.lm.fallback)
        self.served = ServedVersions(self.registry, self.versions, self.follower, lm_id=self.lms.model_id,
                                     adapter=self.lms.adapter_name)
        self._unmatched = Deferred(self._match_later, delay_s=2 * self.settings.serve.outcome_flush_interval_s + 0.5)
        self._closed = False

    # -- public API ---------------------------------------------------------------------------
    def call(self, signature: str, inputs: dict[str, Any], *, request_id: str | None = None,
             user_id: str | None = None) -> CallResult:
        """Serve one request synchronously. Unknown signatures raise; every other failure is in the result."""
        started = time.perf_counter()
        served, ticket, values, error = self._prepare(signature, inputs, request_id, user_id)
        if error is not None:
            return self._finish(served, ticket, values, started, error=error)
        prediction, error, fallback = None, None, False
        try:
            with dspy.context(lm=self.lms.task, adapter=self.lms.adapter, track_usage=True):
                prediction = served.module(**values)
        except Exception as exc:
            error = exc
        if error is not None and self._can_fall_back(error):
            fallback = True
            try:
                with dspy.context(lm=self.lms.fallback, adapter=self.lms.fallback_adapter, track_usage=True):
                    prediction, error = served.module(**values), None
            except Exception as exc:
                error = exc
        return self._finish(served, ticket, values, started, prediction=prediction, error=error,
                            fallback=fallback)

    async def acall(self, signature: str, inputs: dict[str, Any], *, request_id: str | None = None,
                    user_id: str | None = None, timeout_s: float | None = None) -> CallResult:
        """Serve one request on the event loop; an LM call longer than ``timeout_s`` fails with ``timeout``."""
        started = time.perf_counter()
        served, ticket, values, error = self._prepare(signature, inputs, request_id, user_id)
        if error is not None:
            return self._finish(served, ticket, values, started, error=error)
        timeout = timeout_s if timeout_s is not None else self.settings.serve.request_timeout_s
        prediction, error, fallback = None, None, False
        try:
            prediction = await self._run_async(served.module, values, self.lms.task, self.lms.adapter, timeout)
        except Exception as exc:
            error = exc
        if error is not None and self._can_fall_back(error):
            fallback = True
            try:
                prediction = await self._run_async(served.module, values, self.lms.fallback,
                                                   self.lms.fallback_adapter, timeout)
                error = None
            except Exception as exc:
                error = exc
        return self._finish(served, ticket, values, started, prediction=prediction, error=error,
                            fallback=fallback)

    def feedback(self, request_id: str, score: float, correction: dict[str, Any] | None = None) -> FeedbackResult:
        """Attach a 0–1 quality score (and optionally corrected outputs) to a served request.

        The score is stored by request id and matched to the arm that served the
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
                correction = self.registry.get(signature).schema.validate_outputs(correction)
        record_feedback(self.db, request_id, float(score), correction)
        sampled = False
        if known is not None:
            sampled = self._feedback_matched(known, request_id, float(score), correction)
        else:  # served by another worker that has not flushed its request index yet: look again later
            self._unmatched.schedule((request_id, float(score), correction, time.time()))
        return FeedbackResult(request_id=request_id, accepted=True, matched=known is not None,
                              signature=signature, arm=arm, version=version, sampled=sampled)

    def _feedback_too_late(self, served_at: float) -> str | None:
        """Why feedback on a request served at ``served_at`` is refused, or None while its window is open."""
        window_days = self.settings.serve.request_index_days
        age_days = (time.time() - served_at) / _DAY_S
        if age_days <= window_days:
            return None
        return (f"the request was served {age_days:.1f} days ago; feedback is accepted for "
                f"{window_days:g} days (serve.request_index_days)")

    def _feedback_matched(self, known: tuple[str, str, str], request_id: str, score: float,
                          correction: dict[str, Any] | None, at: float | None = None) -> bool:
        """Count feedback for its arm and, when the request was sampled, log it to telemetry."""
        signature, _version, arm = known
        metrics.FEEDBACK.labels(signature, arm).inc()
        if not self.sampler.should_sample(signature, request_id):
            return False
        record = FeedbackRecord(request_id=request_id, signature=signature, score=score, correction=correction,
                                timestamp_ms=int((at or time.time()) * 1000))
        self._submit_telemetry(record.to_dict())
        return True

    def _match_later(self, item: tuple[str, float, dict[str, Any] | None, float]) -> None:
        request_id, score, correction, at = item
        known = self.outcomes.lookup(request_id)
        if known is None:
            return  # never served (or pruned): the score is stored, it just matches no request
        if correction is not None and known[0] in self.registry:
            try:
                correction = self.registry.get(known[0]).schema.validate_outputs(correction)
            except InputValidationError as exc:
                log.warning("feedback for %s: correction dropped from telemetry: %s", request_id, exc)
                correction = None
        self._feedback_matched(known, request_id, score, correction, at)

    def instrument(self, module: dspy.Module, *, signature: str, metric: Callable[..., Any] | None = None
                   ) -> Callable[..., dspy.Prediction]:
        """Wrap an existing module so every call goes through this runtime (see :func:`ratchet.instrument`)."""
        from ratchet.serve.instrument import instrument

        return instrument(module, signature=signature, metric=metric, runtime=self)

    def warm_up(self, on_phase: Callable[[str], None] | None = None) -> list[tuple[str, str, str]]:
        """Get ready to serve: self-test and load the model, load every program version that serves now.

        With the embedded model each of those versions also answers one request on neutral inputs (not
        counted, not sampled), so its prompt prefix sits in a llama.cpp context cache and the first
        real request costs what later ones do. ``on_phase`` hears ``model`` then ``programs``.
        Returns the (signature, arm, version) triples warmed. Raises ``ModelNotAvailableError``
        when the model cannot run here.
        """
        report = on_phase or (lambda phase: None)
        report("model")
        self.lms.warm_up()
        report("programs")
        state = self.follower.current()
        warmed: list[tuple[str, str, str]] = []
        for spec in self.registry:
            for arm, version in self.served.serving_now(spec.name, state):
                try:
                    served = self.served.get(spec, version, arm)
                except VersionError as exc:  # /ready reports it; the other programs still warm up
                    log.error("cannot load %s %s for the %s arm: %s", spec.name, version, arm, exc)
                    continue
                if self.lms.engine is not None:
                    self._warm_prompt(served)
                warmed.append((spec.name, arm, version))
        return warmed

    def _warm_prompt(self, served: ServedVersion) -> None:
        """Run a version once on neutral inputs so the model caches its prompt prefix (outcome ignored)."""
        try:
            with dspy.context(lm=self.lms.task, adapter=self.lms.adapter):
                served.module(**served.spec.schema.neutral_inputs())
        except ModelNotAvailableError:
            raise
        except Exception as exc:  # a neutral input may well not parse: the prefix is cached all the same
            log.debug("warm-up call of %s %s: %s", served.spec.name, served.version, exc)

    @property
    def model_loaded(self) -> bool:
        return self.lms.engine is None or self.lms.engine.loaded

    def flush(self, timeout: float = 5.0) -> None:
        """Write buffered counters and telemetry now."""
        self.outcomes.flush()
        self.telemetry.flush(timeout)

    def close(self) -> None:
        """Flush and stop the background writers (idempotent)."""
        if self._closed:
            return
        self._closed = True
        self.follower.close()
        self._unmatched.close()
        self.outcomes.close()
        self.telemetry.close()

    def __enter__(self) -> Runtime:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the call path ------------------------------------------------------------------------
    def _prepare(self, signature: str, inputs: Any, request_id: str | None, user_id: str | None
                 ) -> tuple[ServedVersion, _Ticket, dict[str, Any], BaseException | None]:
        spec = self.registry.get(signature)
        request_id = request_id or uuid.uuid4().hex
        state = self.follower.current()
        if self.served.routing_changed(state):
            self.served.publish_routing()
        route = state.routing.route(signature)
        arm = choose_arm(route, user_id or request_id)
        ticket = _Ticket(request_id, (route.experiment_id or "") if route is not None else "")
        if route is None:
            version = state.production_of(signature)
        else:
            version = route.candidate_version if arm == "candidate" else route.baseline_version
        try:
            served = self.served.get(spec, version, arm)
        except VersionError as exc:
            if arm == "candidate":
                log.error("candidate %s of %s cannot be served (%s); serving the baseline", version, signature, exc)
                metrics.VERSION_UNAVAILABLE.labels(signature, version, arm).inc()
                version, arm = route.baseline_version, "baseline"
            try:
                served = self.served.get(spec, version, arm)
            except VersionError as missing:  # nothing to serve with: an error result, counted like any other
                metrics.VERSION_UNAVAILABLE.labels(signature, version, arm).inc()
                served = self.served.unavailable(spec, version, arm)
                return served, ticket, inputs if isinstance(inputs, dict) else {}, missing
        try:
            values = spec.schema.validate_inputs(inputs)
        except InputValidationError as exc:
            return served, ticket, inputs if isinstance(inputs, dict) else {}, exc
        return served, ticket, values, None

    async def _run_async(self, module: dspy.Module, values: dict[str, Any], lm: dspy.LM, adapter: dspy.Adapter,
                         timeout: float) -> dspy.Prediction:
        with dspy.context(lm=lm, adapter=adapter, track_usage=True):
            # A user module without aforward runs in a worker thread (the context is copied).
            coroutine = module.acall(**values) if hasattr(module, "aforward") else asyncio.to_thread(module, **values)
            return await asyncio.wait_for(coroutine, timeout=timeout)

    def _can_fall_back(self, error: BaseException) -> bool:
        return self.lms.fallback is not None and classify_error(error) in LM_FAILURES

    def _finish(self, served: ServedVersion, ticket: _Ticket, values: dict[str, Any], started: float, *,
                prediction: dspy.Prediction | None = None, error: BaseException | None = None,
                fallback: bool = False) -> CallResult:
        latency_s = time.perf_counter() - started
        request_id = ticket.request_id
        signature, version, arm = served.spec.name, served.version, served.arm
        model = (self.lms.fallback if fallback else self.lms.task).model
        tokens_in, tokens_out = _usage(prediction)
        prices = self._prices.get(model)
        cost = prices.cost(tokens_in, tokens_out) if prices is not None and prediction is not None else None
        error_type = classify_error(error) if error is not None else None
        outputs = {name: prediction.get(name) for name in served.spec.schema.output_names} if prediction else None

        served.requests.inc()
        served.duration.observe(latency_s)
        if tokens_in:
            served.tokens_in.inc(tokens_in)
        if tokens_out:
            served.tokens_out.inc(tokens_out)
        if cost:
            served.cost.inc(cost)
        if error_type is not None:
            metrics.ERRORS.labels(signature, served.module_name, arm, error_type).inc()
        if fallback:
            metrics.FALLBACKS.labels(signature).inc()
        self.outcomes.record(signature, version, arm, latency_s=latency_s, success=error is None,
                             error_type=error_type, tokens_in=tokens_in, tokens_out=tokens_out,
                             cost_usd=cost or 0.0, experiment_id=ticket.experiment_id)
        self.outcomes.index_request(request_id, signature, version, arm)

        sampled = self.sampler.should_sample(signature, request_id)
        if sampled:
            metrics.TELEMETRY_SAMPLED.labels(signature).inc()
            record = InteractionLog(
                module_name=served.module_name, module_version=version, signature=signature, input=values,
                output=outputs, timestamp_ms=int(time.time() * 1000), latency_ms=round(latency_s * 1000, 3),
                tokens=tokens_in + tokens_out, tokens_in=tokens_in, tokens_out=tokens_out, cost_usd=cost,
                model=model, success=error is None, error=None if error is None else str(error)[:500],
                request_id=request_id, arm=arm, program_fingerprint=served.fingerprint, error_type=error_type,
            )
            self._submit_telemetry(record.to_dict())
        return CallResult(
            request_id=request_id, signature=signature, version=version, arm=arm, success=error is None,
            latency_ms=latency_s * 1000, outputs=outputs, prediction=prediction, tokens_in=tokens_in,
            tokens_out=tokens_out, cost_usd=cost, error_type=error_type,
            error=None if error is None else str(error), sampled=sampled, fallback_used=fallback, model=model,
            exception=error,
        )

    def _submit_telemetry(self, record: dict[str, Any]) -> None:
        """Redact PII in the free-text parts first, then buffer; nothing unredacted is ever queued or written.

        Only what users and the model wrote is redacted (inputs, outputs, corrections,
        error messages); ids, versions and fingerprints stay intact for joins.
        """
        for key in _FREE_TEXT:
            if record.get(key) is not None:
                record[key], counts = self.redactor.redact(record[key])
                for kind, count in counts.items():
                    metrics.REDACTIONS.labels(kind).inc(count)
        if not self.telemetry.submit(record):
            metrics.TELEMETRY_DROPPED.inc()


def _usage(prediction: dspy.Prediction | None) -> tuple[int, int]:
    if prediction is None:
        return 0, 0
    getter = getattr(prediction, "get_lm_usage", None)
    usage = getter() if callable(getter) else None
    if not usage:
        return 0, 0
    tokens_in = sum(int((u or {}).get("prompt_tokens") or 0) for u in usage.values())
    tokens_out = sum(int((u or {}).get("completion_tokens") or 0) for u in usage.values())
    return tokens_in, tokens_out

