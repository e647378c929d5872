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
I/O: counters are batched, telemetry is written by a background thread. When a
candidate is in shadow and the request was chosen for it, the request is then
offered to the shadow runner (:mod:`ratchet.serve.shadow`), which runs the candidate
on the same inputs in the background and counts it apart (arm ``shadow``). With ``[otel]``
on, each request is also one OpenTelemetry span (:mod:`ratchet.serve.tracing`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import dspy

from ratchet.config import Settings, load_settings
from ratchet.errors import InputValidationError, OverloadedError, VersionError
from ratchet.lm.cache import serving_caches
from ratchet.lm.pricing import TokenPrices, token_prices
from ratchet.lm.setup import LMBundle, build_lms, configure_dspy
from ratchet.programs import ProgramRegistry, load_programs
from ratchet.programs.versions import VersionStore
from ratchet.routing import ROUTING_FILENAME, choose_arm, shadows
from ratchet.serve import metrics
from ratchet.serve.call_gate import CallGate, call_limit
from ratchet.serve.call_records import interaction_record, lm_usage, redact_free_text
from ratchet.serve.errors import LM_FAILURES, REFUSALS, classify_error
from ratchet.serve.feedback import FeedbackIntake
from ratchet.serve.field_limits import FieldLimits
from ratchet.serve.fit import PromptFit, invalid_text
from ratchet.serve.guard import InputGuard
from ratchet.serve.request_ids import RequestIds
from ratchet.serve.result import CallResult, FeedbackResult
from ratchet.serve.served import ServedVersion, ServedVersions
from ratchet.serve.shadow import ShadowJob, ShadowRunner, outputs_agree
from ratchet.serve.state_follower import StateFollower
from ratchet.serve.tracing import request_tracer
from ratchet.serve.warm_up import warm_up
from ratchet.store.db import StateDB
from ratchet.store.outcomes import OutcomeRecorder
from ratchet.store.private import make_private_dir
from ratchet.store.pseudonyms import Pseudonymizer
from ratchet.telemetry.database import database_sink
from ratchet.telemetry.redact import Redactor
from ratchet.telemetry.sampling import Sampler
from ratchet.telemetry.writer import TelemetryWriter

if TYPE_CHECKING:
    from ratchet.serve.otel import RequestTracer

__all__ = ["Runtime"]


log = logging.getLogger(__name__)

@dataclass(frozen=True)
class _Ticket:
    """Who a request is: its id, the experiment that routed it ("" outside one: counters are kept apart), and the
    candidate that also answers it in shadow (None: not shadowed)."""

    request_id: str
    experiment_id: str
    shadow_version: str | None = None
    user: str | None = None  # the keyed pseudonym of the user id (None: the call came without one)


class Runtime:
    """Serve registered programs with routing, metrics, per-arm counters and telemetry."""

    def __init__(self, settings: Settings | None = None, *, registry: ProgramRegistry | None = None,
                 lms: LMBundle | None = None, db: StateDB | None = None, configure: bool = True,
                 tracer: RequestTracer | None = None) -> None:
        self.settings = settings or load_settings()
        self.registry = registry if registry is not None else load_programs(self.settings)
        home = make_private_dir(self.settings.home_dir)
        if configure:
            self.lms = configure_dspy(self.settings, serving=True, bundle=lms)
        else:  # DSPy is configured by the caller; models built here still cache only as [serve] allows
            self.lms = lms or build_lms(self.settings.lm, cache=serving_caches(self.settings.serve))
        self.sampler = Sampler.from_settings(self.settings.telemetry)
        self.redactor = Redactor(self.settings.telemetry.redact_patterns)
        self.pseudonyms = Pseudonymizer(self.settings)  # user ids are stored only as keyed pseudonyms
        self.guard = InputGuard(self.settings.guard, redact=lambda text: self.redactor.redact_text(text)[0])
        self.fit = PromptFit(self.lms)
        self.field_limits = FieldLimits(self.settings.limits)
        self.gate = CallGate(call_limit(self.settings, embedded=self.lms.engine is not None),
                             self.settings.serve.queue_wait_s)
        telemetry = self.settings.telemetry
        self.db = db or StateDB.connect(self.settings)
        self.telemetry = TelemetryWriter(home / "telemetry", max_file_mb=telemetry.max_file_mb,
                                         max_age_days=telemetry.max_age_days,
                                         compress_rotated=telemetry.compress_rotated,
                                         queue_size=telemetry.queue_size,
                                         flush_interval_s=telemetry.flush_interval_s,
                                         sink=database_sink(self.settings, self.db))  # PostgreSQL: shared
        self.versions = VersionStore(home, self.db)  # with PostgreSQL, versions saved on another host are fetched
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
        self.request_ids = RequestIds.for_settings(self.settings)
        self._feedback = FeedbackIntake(self.settings, self.registry, self.db, self.outcomes, self.sampler,
                                        self._submit_telemetry, self.redactor, request_ids=self.request_ids)
        self.shadow = ShadowRunner(self._run_shadow_if_free,
                                   max_per_minute=self.settings.rollout.max_shadow_calls_per_minute)
        # One OTLP span per request when [otel] is on (a tracer given is used as is: tests); None costs nothing.
        self.tracer = tracer if tracer is not None else request_tracer(self.settings.otel, self.redactor)
        self._closed = False

    # -- public API ---------------------------------------------------------------------------
    def call(self, signature: str, inputs: dict[str, Any], *, request_id: str | None = None,
             user_id: str | None = None, caller: str = "library", trace_context: Mapping[str, str] | None = None
             ) -> CallResult:
        """Serve one request synchronously. Unknown signatures raise; every other failure is in the result.

        The result's ``request_id`` is issued here (feedback must name it); a ``request_id`` given is an
        idempotency key of ``caller``: the same one always gets the same issued id (:mod:`ratchet.serve.request_ids`).
        With ``[otel]`` on, the call is one span, the child of ``trace_context``'s W3C ``traceparent`` (e.g. the
        incoming request's headers) or else of the span current in the caller (:mod:`ratchet.serve.tracing`).
        """
        if self.tracer is None:
            return self._call(signature, inputs, request_id, user_id, caller)
        with self.tracer.request(signature, self.lms.task, trace_context) as span:
            return span.finish(self._call(signature, inputs, request_id, user_id, caller), inputs)

    async def acall(self, signature: str, inputs: dict[str, Any], *, request_id: str | None = None,
                    user_id: str | None = None, timeout_s: float | None = None, caller: str = "library",
                    trace_context: Mapping[str, str] | None = None) -> CallResult:
        """Serve one request on the event loop; an LM call longer than ``timeout_s`` fails with ``timeout``
        (request ids and spans as in :meth:`call`)."""
        if self.tracer is None:
            return await self._acall(signature, inputs, request_id, user_id, timeout_s, caller)
        with self.tracer.request(signature, self.lms.task, trace_context) as span:
            return span.finish(await self._acall(signature, inputs, request_id, user_id, timeout_s, caller), inputs)

    def feedback(self, request_id: str, score: float, correction: dict[str, Any] | None = None, *,
                 caller: str = "library") -> FeedbackResult:
        """Attach a 0–1 quality score (and optionally corrected outputs) to a request this service issued, as
        ``caller`` (:meth:`ratchet.serve.feedback.FeedbackIntake.receive`)."""
        return self._feedback.receive(request_id, score, correction, caller=caller)

    def instrument(self, module: dspy.Module, *, signature: str, metric: Callable[..., Any] | None = None
                   ) -> Callable[..., dspy.Prediction]:
        """Wrap an existing module so every call goes through this runtime (see :func:`ratchet.instrument`)."""
        from ratchet.serve.instrument import instrument

        return instrument(module, signature=signature, metric=metric, runtime=self)

    def warm_up(self, on_phase: Callable[[str], None] | None = None) -> list[tuple[str, str, str]]:
        """Get ready to serve (:func:`ratchet.serve.warm_up.warm_up`): the (signature, arm, version) triples warmed;
        raises ``ModelNotAvailableError`` when the model cannot run here."""
        return warm_up(self.lms, self.registry, self.served, self.follower.current(), on_phase)

    @property
    def model_loaded(self) -> bool:
        return self.lms.engine is None or self.lms.engine.loaded

    def flush(self, timeout: float = 5.0) -> None:
        """Finish queued shadow calls, then write buffered counters and telemetry and export queued spans now."""
        self.shadow.join(timeout)
        self.outcomes.flush()
        self.telemetry.flush(timeout)
        if self.tracer is not None:
            self.tracer.flush(timeout)

    def close(self) -> None:
        """Flush and stop the background writers (idempotent)."""
        if self._closed:
            return
        self._closed = True
        self.shadow.close()
        self.follower.close()
        self._feedback.close()
        self.outcomes.close()
        self.telemetry.close()
        if self.tracer is not None:
            self.tracer.close()

    def __enter__(self) -> Runtime:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the call path ------------------------------------------------------------------------
    def _call(self, signature: str, inputs: dict[str, Any], request_id: str | None, user_id: str | None,
              caller: str) -> CallResult:
        started = time.perf_counter()
        served, ticket, values, error = self._prepare(signature, inputs, request_id, user_id, caller)
        if error is not None:
            return self._finish(served, ticket, values, started, error=error)
        try:
            with self.gate.slot():
                prediction, error, fallback = self._answer(served, values)
        except OverloadedError as busy:  # no call slot freed within serve.queue_wait_s
            return self._finish(served, ticket, values, started, error=busy)
        return self._answered(served, ticket, values, started, prediction, error, fallback)

    async def _acall(self, signature: str, inputs: dict[str, Any], request_id: str | None, user_id: str | None,
                     timeout_s: float | None, caller: str) -> CallResult:
        started = time.perf_counter()
        served, ticket, values, error = self._prepare(signature, inputs, request_id, user_id, caller)
        if error is not None:
            return self._finish(served, ticket, values, started, error=error)
        timeout = timeout_s if timeout_s is not None else self.settings.serve.request_timeout_s
        try:
            async with self.gate.aslot():
                prediction, error, fallback = await self._answer_async(served, values, timeout)
        except OverloadedError as busy:  # no call slot freed within serve.queue_wait_s
            return self._finish(served, ticket, values, started, error=busy)
        return self._answered(served, ticket, values, started, prediction, error, fallback)

    def _answered(self, served: ServedVersion, ticket: _Ticket, values: dict[str, Any], started: float,
                  prediction: dspy.Prediction | None, error: BaseException | None, fallback: bool) -> CallResult:
        """Finish a call the program ran, then offer it to the shadow runner."""
        result = self._finish(served, ticket, values, started, prediction=prediction, error=error,
                              fallback=fallback)
        self._offer_shadow(served, ticket, values, result)
        return result

    def _prepare(self, signature: str, inputs: Any, request_id: str | None, user_id: str | None, caller: str
                 ) -> tuple[ServedVersion, _Ticket, dict[str, Any], BaseException | None]:
        spec = self.registry.get(signature)
        request_id = self.request_ids.issue(idempotency_key=request_id, caller=caller, signature=signature)
        state = self.follower.current()
        if self.served.routing_changed(state):
            self.served.publish_routing()
        route = state.routing.route(signature)
        key = user_id or request_id
        arm = choose_arm(route, key)
        user = self.pseudonyms(user_id)
        if route is None:
            ticket = _Ticket(request_id, "", user=user)
            version = state.production_of(signature)
        else:
            shadow = route.candidate_version if arm == "baseline" and shadows(route, key) else None
            ticket = _Ticket(request_id, route.experiment_id or "", shadow, user)
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
        refused = (self.field_limits.check(signature, values) or invalid_text(values)
                   or self.guard.screen(signature, values, request_id)
                   or self.fit.check(served.module, values, spec.schema.neutral_inputs))
        return served, ticket, values, refused

    def _answer(self, served: ServedVersion, values: dict[str, Any]
                ) -> tuple[dspy.Prediction | None, BaseException | None, bool]:
        """Run the program on the task LM, then on the fallback LM when that may help: (prediction, error, fallback)."""
        try:
            with dspy.context(lm=self.lms.task, adapter=self.lms.adapter, track_usage=True):
                return served.module(**values), None, False
        except Exception as exc:
            if not self._can_fall_back(exc):
                return None, exc, False
        try:
            with dspy.context(lm=self.lms.fallback, adapter=self.lms.fallback_adapter, track_usage=True):
                return served.module(**values), None, True
        except Exception as exc:
            return None, exc, True

    async def _answer_async(self, served: ServedVersion, values: dict[str, Any], timeout: float
                            ) -> tuple[dspy.Prediction | None, BaseException | None, bool]:
        """:meth:`_answer` on the event loop, each LM's attempt bounded by ``timeout``."""
        try:
            return await self._run_async(served.module, values, self.lms.task, self.lms.adapter, timeout), None, False
        except Exception as exc:
            if not self._can_fall_back(exc):
                return None, exc, False
        try:
            return (await self._run_async(served.module, values, self.lms.fallback, self.lms.fallback_adapter,
                                          timeout), None, True)
        except Exception as exc:
            return None, exc, True

    async def _run_async(self, module: dspy.Module, values: dict[str, Any], lm: dspy.LM, adapter: dspy.Adapter,
                         timeout: float) -> dspy.Prediction:
        with dspy.context(lm=lm, adapter=adapter, track_usage=True):
            # A user module without aforward runs in a worker thread (the context is copied).
            coroutine = module.acall(**values) if hasattr(module, "aforward") else asyncio.to_thread(module, **values)
            return await asyncio.wait_for(coroutine, timeout=timeout)

    def _cost(self, model: str, prediction: dspy.Prediction | None, tokens_in: int, tokens_out: int) -> float | None:
        """The call's cost in USD when the model's prices are known and it answered, else None."""
        prices = self._prices.get(model)
        return prices.cost(tokens_in, tokens_out) if prices is not None and prediction is not None else None

    def _can_fall_back(self, error: BaseException) -> bool:
        return self.lms.fallback is not None and classify_error(error) in LM_FAILURES

    def _finish(self, served: ServedVersion, ticket: _Ticket, values: dict[str, Any], started: float, *,
                prediction: dspy.Prediction | None = None, error: BaseException | None = None,
                fallback: bool = False) -> CallResult:
        latency_s = time.perf_counter() - started
        request_id = ticket.request_id
        signature, version, arm = served.spec.name, served.version, served.arm
        model = (self.lms.fallback if fallback else self.lms.task).model
        tokens_in, tokens_out = lm_usage(prediction)
        cost = self._cost(model, prediction, tokens_in, tokens_out)
        error_type = classify_error(error) if error is not None else None
        if error_type in REFUSALS:  # refused before the program ran (the client's doing, or no slot): not the arm's
            metrics.REJECTED.labels(signature, arm, error_type).inc()
            return CallResult(request_id=request_id, signature=signature, version=version, arm=arm, success=False,
                              latency_ms=latency_s * 1000, error_type=error_type, error=str(error), exception=error)
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
        self.outcomes.index_request(request_id, signature, version, arm, user=ticket.user)

        sampled = self.sampler.should_sample(signature, request_id)
        if sampled:
            metrics.TELEMETRY_SAMPLED.labels(signature).inc()
            self._submit_telemetry(interaction_record(
                served.module_name, served.fingerprint, version, signature, values, outputs, latency_s=latency_s,
                tokens=(tokens_in, tokens_out), cost=cost, model=model, error=error, error_type=error_type,
                request_id=request_id, arm=arm, user=ticket.user))
        return CallResult(
            request_id=request_id, signature=signature, version=version, arm=arm, success=error is None,
            latency_ms=latency_s * 1000, outputs=outputs, prediction=prediction, tokens_in=tokens_in,
            tokens_out=tokens_out, cost_usd=cost, error_type=error_type,
            error=None if error is None else str(error), sampled=sampled, fallback_used=fallback, model=model,
            exception=error,
        )

    # -- shadow calls ---------------------------------------------------------------------------
    def _offer_shadow(self, served: ServedVersion, ticket: _Ticket, values: dict[str, Any],
                      result: CallResult) -> None:
        """Hand a served request chosen for shadow to the runner (a request refused before the program ran — invalid
        inputs, blocked by the guard, no version — never gets here: nothing to compare)."""
        if ticket.shadow_version is None:
            return
        self.shadow.offer(ShadowJob(spec=served.spec, version=ticket.shadow_version,
                                    experiment_id=ticket.experiment_id, request_id=ticket.request_id,
                                    values=values, answered=result.outputs if result.success else None,
                                    user=ticket.user))

    def _run_shadow_if_free(self, job: ShadowJob) -> None:
        """Shadow calls take only a free call slot: requests come first (skipped ones count as ``busy``)."""
        if not self.gate.run_if_free(self._run_shadow, job):
            metrics.SHADOW_SKIPPED.labels(job.spec.name, "busy").inc()

    def _run_shadow(self, job: ShadowJob) -> None:
        """Run the candidate on a served request's inputs (on the shadow runner's thread); count, compare, log."""
        signature = job.spec.name
        started = time.perf_counter()
        prediction, error, served = None, None, None
        try:
            served = self.served.get(job.spec, job.version, "candidate")  # the module the candidate will serve
            with dspy.context(lm=self.lms.task, adapter=self.lms.adapter, track_usage=True):
                prediction = served.module(**job.values)
        except Exception as exc:
            error = exc
        latency_s = time.perf_counter() - started
        tokens_in, tokens_out = lm_usage(prediction)
        cost = self._cost(self.lms.task.model, prediction, tokens_in, tokens_out)
        error_type = classify_error(error) if error is not None else None
        self.outcomes.record(signature, job.version, "shadow", latency_s=latency_s, success=error is None,
                             error_type=error_type, tokens_in=tokens_in, tokens_out=tokens_out,
                             cost_usd=cost or 0.0, experiment_id=job.experiment_id)
        metrics.SHADOW_DURATION.labels(signature).observe(latency_s)
        outputs = {name: prediction.get(name) for name in job.spec.schema.output_names} if prediction else None
        if outputs is None:
            outcome = "error"
        elif job.answered is None:
            outcome = "unpaired"
        else:
            agreed = outputs_agree(job.answered, outputs)
            self.outcomes.compare(signature, job.version, job.experiment_id, agreed=agreed)
            outcome = "agree" if agreed else "disagree"
        metrics.SHADOW_CALLS.labels(signature, job.version, outcome).inc()
        if self.sampler.should_sample(signature, job.request_id):
            self._submit_telemetry(interaction_record(
                served.module_name if served else "unavailable", served.fingerprint if served else None,
                job.version, signature, job.values, outputs, latency_s=latency_s, tokens=(tokens_in, tokens_out),
                cost=cost, model=self.lms.task.model, error=error, error_type=error_type,
                request_id=job.request_id, arm="shadow", user=job.user))

    def _submit_telemetry(self, record: dict[str, Any]) -> None:
        """Redact PII in the free-text parts first (:func:`redact_free_text`), then buffer: nothing unredacted is
        ever queued or written."""
        redact_free_text(self.redactor, record)
        if not self.telemetry.submit(record):
            metrics.TELEMETRY_DROPPED.inc()
