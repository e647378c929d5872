"""Experiments: the list (live first) and one experiment — its stage and split, each arm over time as charts,
the triggers against their thresholds, the event timeline — and the operator's Pause / Resume / Promote /
Roll back.

Everything comes from what ``ratchet ab list`` and ``ratchet ab status`` read (the controller's store and
:meth:`RolloutController.evaluate`); the arms over time from :func:`ratchet.rollout.history.experiment_history`
(the same counter query at each moment). The actions call the same controller methods as ``ratchet ab`` and
``POST /v1/experiments/…``, audited as the logged-in key from this client.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Form, Request
from fastapi.responses import Response

from ratchet.audit import audit_context
from ratchet.console.access import PageNotFound, check_csrf, viewer
from ratchet.console.charts import LineChart, Series, interval_strip, render_line_chart
from ratchet.console.context import ConsoleContext, console_context
from ratchet.console.render import page, redirect
from ratchet.errors import RatchetError, UnknownExperimentError
from ratchet.monitor.rollout_alerts import announce_outcome
from ratchet.rollout import Experiment, ExperimentEvent, RolloutController
from ratchet.rollout.experiments import LIVE
from ratchet.rollout.history import ExperimentHistory, experiment_history

__all__ = ["ACTIONS", "add_routes", "check_rows", "history_charts"]

log = logging.getLogger(__name__)

ACTIONS = ("pause", "resume", "promote", "rollback")
LIVE_REFRESH_S = 5

DONE = {
    "pause": "Paused: the split holds and stages stop advancing; rollback triggers still apply.",
    "resume": "Resumed: stages advance again (paused time does not count toward a stage's minimum).",
    "promote": "Promoted: the candidate is the production version and serves all traffic.",
    "rollback": "Rolled back: production serves all traffic again.",
}

_MARKERS = {"advance": None, "pause": "paused", "resume": "resumed", "promote": "promoted",
            "rollback": "rolled back"}


def _controller(ctx: ConsoleContext) -> RolloutController:
    """The controller ``ratchet ab`` uses: promotions and rollbacks are announced on the alert channels."""
    return RolloutController(ctx.settings, ctx.registry, db=ctx.db, notify=announce_outcome(ctx.settings))


def _order(experiments: list[Experiment]) -> list[Experiment]:
    """Live first, then the most recent first."""
    return sorted(experiments, key=lambda e: (e.status not in LIVE, -e.created_at))


def _stage(exp: Experiment) -> str:
    if exp.status == "shadow":
        return f"shadow ({exp.shadow_share:.0%} of requests, unseen)"
    if exp.config.get("rolled_back_in") == "shadow":
        return "shadow"
    return f"{exp.stage_index + 1} of {len(exp.stages)} ({exp.stage_percent} %)"


def _split(exp: Experiment) -> str:
    candidate = round(exp.candidate_share * 100)
    return f"{100 - candidate} % baseline · {candidate} % candidate"


def confirmations(exp: Experiment) -> dict[str, str]:
    """What each action's confirmation says will happen."""
    sig, pct = exp.signature, exp.stage_percent
    return {
        "pause": (f"Pause {exp.experiment_id}? The candidate keeps {pct} % of {sig} traffic, but stages stop "
                  "advancing (rollback triggers still apply)."),
        "resume": (f"Resume {exp.experiment_id}? Stages advance again from {pct} % of {sig} traffic as their "
                   "minimum time and requests are met."),
        "promote": (f"Promote {exp.experiment_id}? {exp.candidate_version} becomes the production version of {sig} "
                    "and serves 100 % of its traffic at once."),
        "rollback": (f"Roll back {exp.experiment_id}? Production ({exp.baseline_version}) serves 100 % of {sig} "
                     "traffic at once; the experiment ends."),
    }


def available(exp: Experiment) -> list[str]:
    """The actions the experiment's status allows (the controller refuses the others anyway)."""
    if not exp.live:
        return []
    return [a for a, ok in (("pause", exp.status == "running"), ("resume", exp.status == "paused"),
                            ("promote", True), ("rollback", True)) if ok]


# -- the triggers -------------------------------------------------------------------------------------------

def _points(v: float) -> str:
    return f"{v * 100:+.1f} pts"


def _ms(v: float) -> str:
    return f"{v * 1000:+.0f} ms"


def _score(v: float) -> str:
    return f"{v:.3f}"


def _share(v: float) -> str:
    return f"{v * 100:.0f} %"


@dataclass(frozen=True)
class _Kind:
    label: str
    fmt: Any
    upper_is_bad: bool
    threshold: str  # how the threshold reads


_KINDS = {
    "error_rate": _Kind("Error rate (candidate − baseline)", _points, True, "worse by more than {t}"),
    "latency": _Kind("Mean latency (candidate − baseline)", _ms, True, "slower by more than {t}"),
    "quality": _Kind("Quality (candidate feedback score)", _score, False, "below {t}"),
    "catastrophe": _Kind("Catastrophe guard (candidate failures)", _share, True, "most of its first requests"),
    "agreement": _Kind("Shadow agreement with production", _share, False, "below {t}"),
    "canary": _Kind("Canary probes (candidate − baseline)", _score, False, "a drop of more than {t}"),
}


def check_rows(checks: list[dict[str, Any]], prefix: str = "trig") -> list[dict[str, Any]]:
    """The triggers' checks (``Check.to_dict()``) as table rows: state, estimate, interval, threshold, picture."""
    rows = []
    for i, check in enumerate(checks):
        trigger = str(check.get("trigger", "?"))
        kind = _KINDS.get(trigger, _Kind(trigger, _score, True, "{t}"))
        message = str(check.get("message", ""))
        fired = bool(check.get("fired"))
        waiting = not fired and (message.startswith("waiting") or message.startswith("canaries are off"))
        estimate, low, high = (float(check.get(k, 0.0)) for k in ("estimate", "low", "high"))
        threshold = float(check.get("threshold", 0.0))
        fmt = kind.fmt
        if trigger == "latency":
            t_text = f"{threshold * 1000:.0f} ms"
        elif trigger == "error_rate":
            t_text = f"{threshold * 100:.0f} pts"
        else:
            t_text = fmt(threshold).lstrip("+")
        interval = "–" if waiting or trigger == "catastrophe" else f"{fmt(low)} to {fmt(high)}"
        picture = ""
        if not waiting and trigger in ("error_rate", "latency", "quality", "agreement"):
            picture = interval_strip(f"{prefix}-{i}", kind.label, estimate, low, high, threshold, fired=fired,
                                     fmt=fmt, upper_is_bad=kind.upper_is_bad)
        rows.append({"trigger": trigger, "label": kind.label, "state": "fired" if fired else
                     ("waiting" if waiting else "ok"), "estimate": "–" if waiting else fmt(estimate),
                     "interval": interval,
                     "threshold": kind.threshold.format(t=t_text), "n": f"{check.get('n_candidate', 0)} / "
                     f"{check.get('n_baseline', 0)}", "message": message, "picture": picture})
    return rows


# -- the charts ---------------------------------------------------------------------------------------------

def _markers(events: list[ExperimentEvent], exp: Experiment) -> list[tuple[float, str]]:
    out = []
    for event in events:
        if event.kind not in _MARKERS:
            continue
        label = _MARKERS[event.kind]
        if label is None:  # an advance: to the next stage, or out of shadow to the first
            stage = event.to_stage if event.to_stage is not None else 0
            label = f"{exp.stages[stage]} %" if 0 <= stage < len(exp.stages) else "advance"
        out.append((event.at, label))
    return out


def history_charts(history: ExperimentHistory, exp: Experiment, events: list[ExperimentEvent]) -> list[Any]:
    """The error rate, latency and quality charts of each arm over the experiment (rendered ``<figure>``s)."""
    markers = _markers(events, exp)
    level = f"{1 - history.alpha:.1%}".replace(".0%", "%")
    names = {arm: f"{arm} {version}" for arm, version in history.arms.items()}
    since = "cumulative since the experiment started, as the triggers judge it"

    def series(value: str, low: str | None, high: str | None, dashed: str | None = None,
               dashed_label: str = "") -> list[Series]:
        out = []
        for arm, points in history.points.items():
            out.append(Series(
                label=names[arm], kind=arm,
                points=[(p.at, getattr(p, value)) for p in points],
                band=[(p.at, getattr(p, low), getattr(p, high)) for p in points] if low and high else (),
                dashed=[(p.at, getattr(p, dashed)) for p in points] if dashed else (), dashed_label=dashed_label))
        return out

    def describe(what: str, unit: Any) -> str:
        parts = []
        for arm, points in history.points.items():
            last = points[-1]
            parts.append(f"{names[arm]}: {unit(last)} over {last.requests} requests")
        return f"{what}, {since}. Now: " + "; ".join(parts) + "."

    def pct(v: float) -> str:
        return f"{v * 100:.1f} %"

    def ms(v: float) -> str:
        return f"{v * 1000:.0f} ms"

    min_quality = float(exp.config.get("min_quality", 0.70))
    charts = [
        LineChart(chart_id="chart-errors", title="Error rate by arm",
                  description=describe("Share of failed requests per arm, with its anytime-valid interval",
                                       lambda p: "no requests" if p.error_rate is None else pct(p.error_rate)),
                  y_label="error rate", series=series("error_rate", "error_low", "error_high"), y_format=pct,
                  line_label="error rate", band_label=f"{level} anytime-valid interval", markers=markers,
                  y_cap=1.0),
        LineChart(chart_id="chart-latency", title="Latency by arm (p50, p95)",
                  description=describe("Median (p50) and 95th-percentile latency per arm",
                                       lambda p: "no requests" if p.latency_p50_s is None else
                                       f"p50 {ms(p.latency_p50_s)}, p95 {ms(p.latency_p95_s or 0.0)}"),
                  y_label="latency", series=series("latency_p50_s", "latency_low_s", "latency_high_s",
                                                   "latency_p95_s", "p95"),
                  y_format=ms, line_label="p50", band_label=f"mean's {level} anytime-valid interval",
                  markers=markers),
        LineChart(chart_id="chart-quality", title="Quality by arm (feedback score)",
                  description=describe("Mean feedback score (0 to 1) per arm, with its anytime-valid interval",
                                       lambda p: "no feedback" if p.quality_mean is None else
                                       f"{p.quality_mean:.3f} from {p.quality_count} scores"),
                  y_label="feedback score", series=series("quality_mean", "quality_low", "quality_high"),
                  y_format=lambda v: f"{v:.2f}", line_label="mean score",
                  band_label=f"{level} anytime-valid interval",
                  threshold=(min_quality, f"min quality {min_quality:.2f}"), markers=markers, y_max=1.0),
    ]
    return [render_line_chart(c) for c in charts]


# -- pages --------------------------------------------------------------------------------------------------

def _detail(ctx: ConsoleContext, experiment_id: str) -> dict[str, Any]:
    controller = _controller(ctx)
    try:
        exp = controller.store.get(experiment_id)
    except UnknownExperimentError:
        raise PageNotFound(f"no experiment '{experiment_id}'") from None
    events = controller.store.events(exp.experiment_id)
    decision: dict[str, Any] | None = None
    decided_at: float | None = None
    error = None
    if exp.live:
        try:
            decision = controller.evaluate(exp).to_dict()
            decided_at = time.time()
        except Exception as exc:  # a page must show what it can
            log.exception("evaluating experiment %s", exp.experiment_id)
            error = f"could not evaluate the triggers: {type(exc).__name__}: {exc}"
    else:  # the checks as they stood when it ended (the last event that recorded them)
        for event in reversed(events):
            if event.metrics and event.metrics.get("checks"):
                decision, decided_at = event.metrics, event.at
                break
    history = experiment_history(ctx.db, exp, feedback_per_key=ctx.settings.rollout.max_feedback_per_key)
    return {"exp": exp, "events": list(reversed(events)), "decision": decision, "decided_at": decided_at,
            "error": error, "history": history, "charts": history_charts(history, exp, events),
            "checks": check_rows((decision or {}).get("checks") or []),
            "arms": {arm: points[-1] for arm, points in history.points.items()},
            "stage": _stage(exp), "split": _split(exp)}


def add_routes(app: FastAPI) -> None:
    from ratchet.console.routes import console_route

    async def experiments_list(request: Request) -> Response:
        user = viewer(request, "read")
        ctx = console_context(request)
        found = await asyncio.to_thread(_controller(ctx).store.list)
        rows = [{"exp": e, "stage": _stage(e), "split": _split(e)} for e in _order(found)]
        return page(request, user, "experiments.html", title="Experiments", rows=rows,
                    live=sum(1 for e in found if e.live))

    async def experiment_page(request: Request, experiment_id: str, done: str | None = None) -> Response:
        user = viewer(request, "read")
        ctx = console_context(request)
        data = await asyncio.to_thread(_detail, ctx, experiment_id)
        exp = data["exp"]
        return page(request, user, "experiment.html", title=f"Experiment {exp.experiment_id}",
                    notice=DONE.get(done or ""), actions=available(exp) if user.can("operator") else [],
                    confirm=confirmations(exp), refresh_s=LIVE_REFRESH_S, **data)

    async def act(request: Request, experiment_id: str, action: str, csrf_token: str = Form(""),
                  reason: str = Form("", max_length=500)) -> Response:
        user = viewer(request, "operator")
        check_csrf(request, user.session, csrf_token)
        if action not in ACTIONS:
            raise PageNotFound(f"no action '{action}' (one of {', '.join(ACTIONS)})")
        ctx = console_context(request)
        back = f"/ui/experiments/{experiment_id}"
        reason = reason.strip()
        if action == "rollback" and not reason:
            return page(request, user, "error.html", title="Not rolled back", status=422, back=back,
                        message="A rollback needs a reason (it is recorded in the event, the audit log and the alert).")
        controller = _controller(ctx)
        kwargs: dict[str, Any] = {"actor": user.principal.actor}
        if reason:
            kwargs["reason"] = reason
        client = request.client.host if request.client else None

        def run() -> Experiment:
            with audit_context(actor=user.principal.actor, source="http", client=client):
                return getattr(controller, action)(experiment_id, **kwargs)  # type: ignore[no-any-return]

        try:
            await asyncio.to_thread(run)
        except UnknownExperimentError:
            raise PageNotFound(f"no experiment '{experiment_id}'") from None
        except RatchetError as exc:  # an illegal transition, or someone else changed it first
            return page(request, user, "error.html", title="Not done", status=409, message=str(exc), back=back)
        return redirect(request, f"{back}?done={action}")

    console_route(app, "GET", "/ui/experiments", "read", experiments_list)
    console_route(app, "GET", "/ui/experiments/{experiment_id}", "read", experiment_page)
    console_route(app, "POST", "/ui/experiments/{experiment_id}/{action}", "operator", act)
