"""Drift: each signature's live inputs and outputs against its production version's training data.

Per signature with enough live calls (``ratchet.monitor.drift``): output drift (label PSI) and
input drift (an excess of novel inputs) each raise a warning, with the numbers, the reference
used and what to do. A kind that was judged and is no longer flagged resolves its alert; a
signature without enough data keeps whatever it had (its drift was not disproved). When the run
dispatches, the results are also written for Prometheus and the dashboard.
"""

from __future__ import annotations

from ratchet.config import Settings
from ratchet.monitor.alerts import Alert
from ratchet.monitor.drift import DriftReport, SignatureDrift, assess_drift, write_results
from ratchet.monitor.results import CheckResult
from ratchet.programs.registry import ProgramRegistry

__all__ = ["HINT", "NAME", "check_drift"]

NAME = "drift"
HINT = ("Collect and label recent traffic (feedback and `ratchet collect telemetry`, or `ratchet annotate`) into "
        "the signature's dataset: the next cycle trains on it.")


def check_drift(settings: Settings, *, registry: ProgramRegistry | None = None, now: float | None = None,
                export: bool = False) -> CheckResult:
    """Judge every registered signature's live window; ``export`` writes ``<home>/metrics`` (when dispatching)."""
    if registry is None:
        from ratchet.programs import load_programs

        registry = load_programs(settings)
    report = assess_drift(settings, registry, now=now)
    result = CheckResult(NAME)
    for sig in report.signatures.values():
        result.scopes.extend(f"{NAME}/{kind}/{sig.signature}" for kind in sig.judged)
        result.alerts.extend(_alert(kind, sig, report) for kind in sig.flagged)
    result.summary = report.to_dict()
    if export:
        write_results(settings.home_dir, report)
    return result


def _alert(kind: str, sig: SignatureDrift, report: DriftReport) -> Alert:
    assert sig.reference is not None
    window = f"last {report.window_hours:g} h"
    reference = f"Reference: {sig.reference.description}."
    details = {"signature": sig.signature, "kind": kind, "live_calls": sig.live_n, "window_hours": report.window_hours,
               "reference": sig.reference.description, "reference_kind": sig.reference.kind,
               "program_version": sig.reference.program_version, "dataset_version": sig.reference.dataset_version}
    if kind == "output":
        out = sig.output
        assert out is not None
        moved = out.top_shifts(1)[0]
        message = (f"{sig.signature}: the '{out.label_field}' labels of {out.live_n} live calls ({window}) moved away "
                   f"from the training data (PSI {out.psi:.2f} > {out.threshold:g}, G-test p = {out.p_value:.2g}); "
                   f"most moved: {moved['label']} {moved['reference_share']:.0%} in training → "
                   f"{moved['live_share']:.0%} live. {reference}")
        details.update(label_field=out.label_field, psi=round(out.psi, 4), psi_threshold=out.threshold,
                       p_value=round(out.p_value, 6), alpha=out.alpha, top_shifts=out.top_shifts())
        return Alert("warning", "Output Drift", message, {**details, "hint": HINT},
                     condition=f"{NAME}/output/{sig.signature}")
    inp = sig.input
    assert inp is not None
    message = (f"{sig.signature}: {inp.live_share:.0%} of {inp.live_n} live inputs ({window}) are unlike every "
               f"training input (similarity < {inp.similarity_threshold:g}), against {inp.reference_share:.0%} of "
               f"held-out inputs: at least {inp.excess_lower_bound * 100:.0f} points more at {1 - inp.alpha:.0%} "
               f"confidence (margin {inp.margin * 100:g} points). {reference}")
    details.update({k: v for k, v in inp.to_dict().items() if k != "flagged"})
    return Alert("warning", "Input Drift", message, {**details, "hint": HINT},
                 condition=f"{NAME}/input/{sig.signature}")
