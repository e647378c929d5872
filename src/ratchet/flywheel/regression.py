"""The daily eval regression (seed 004's ``run_daily_eval.py``): production and live candidates on the golden set,
against the previous run, paired example by example.

For each signature with a golden set, :func:`run_eval_regression` scores the production version and the
candidate of a live experiment (shadow, running or paused) on the latest golden version
(:mod:`ratchet.evaluation.golden`), then compares each version with a *reference*, paired on the examples
both scored (same input hash, same label):

- the same version (name and fingerprint) in the previous run — a drop means the model, the serving
  stack or the labels moved under an unchanged program;
- else, for production, the previous run's production — production changed since then (promoted or rolled
  back) and the report says from which version;
- else, for a candidate seen for the first time, this run's production.

A drop is a *regression* when the two-sided ``1 − flywheel.golden_alpha`` paired bootstrap interval of the
difference lies below ``−flywheel.golden_min_drop`` *and* the paired test (exact McNemar for 0/1 scores)
rejects "no difference" at that alpha — the interval alone is too eager on small golden sets: four
examples lost and none won out of two hundred give the interval −4.0 to −0.5 points but McNemar p = 0.125.

Each run writes ``<home>/eval_reports/<signature>/<UTC timestamp>.json`` (and a short ``.md``), atomically
and owner-only (golden examples are user text; the report keeps only hashes of them, but the per-example
scores are what the next run pairs with). A run that crashes writes nothing: the next one pairs with the last
complete report. An unreadable newest report is named and treated as no previous run.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select

from ratchet.config import Settings
from ratchet.errors import RatchetError
from ratchet.evaluation.golden import GoldenScores, GoldenSet, compare_golden, load_golden_set, score_golden
from ratchet.lm.setup import LMBundle, build_lms
from ratchet.programs.production import ProductionPointers
from ratchet.programs.registry import ProgramRegistry, ProgramSpec
from ratchet.programs.versions import VersionStore
from ratchet.store.atomic import atomic_write_json, atomic_write_text
from ratchet.store.db import StateDB
from ratchet.store.private import make_private_dir
from ratchet.store.tables import LIVE_STATUSES, experiments

__all__ = [
    "REPORTS_DIRNAME",
    "REPORT_FORMAT",
    "RegressionRun",
    "SignatureRegression",
    "VersionRegression",
    "latest_report",
    "read_report",
    "report_files",
    "report_history",
    "run_eval_regression",
]

REPORTS_DIRNAME = "eval_reports"
REPORT_FORMAT = 1

Progress = Callable[[str, str, int, int], None]
"""``on_progress(signature, version, done, total)``: at the start of each version and after each example."""


@dataclass
class VersionRegression:
    """One version's golden scores in this run and its comparison with its reference."""

    version: str
    roles: list[str]
    fingerprint: str | None = None
    scores: GoldenScores | None = None
    error: str | None = None
    against: dict[str, Any] | None = None  # the reference: version, roles, run_at, basis
    comparison: dict[str, Any] | None = None  # PairedComparison.to_dict()
    excluded: dict[str, int] = field(default_factory=dict)
    regression: bool = False
    message: str = ""

    def to_dict(self, *, with_examples: bool = True) -> dict[str, Any]:
        summary = {k: v for k, v in (self.scores.summary() if self.scores else {}).items()
                   if k not in ("version", "golden_version")}
        out: dict[str, Any] = {"version": self.version, "roles": self.roles, "fingerprint": self.fingerprint,
                               "error": self.error, **summary, "against": self.against,
                               "comparison": self.comparison, "excluded": self.excluded,
                               "regression": self.regression, "message": self.message}
        if with_examples and self.scores is not None:
            out["examples"] = self.scores.examples()
        return out


@dataclass
class SignatureRegression:
    """What one run did for one signature."""

    signature: str
    status: str = "ran"  # "ran", "no_golden" or "error"
    reason: str | None = None
    golden_version: str | None = None
    golden_size: int = 0
    model: str | None = None
    versions: list[VersionRegression] = field(default_factory=list)
    previous: dict[str, Any] | None = None  # path and run_at of the report compared with
    previous_problem: str | None = None  # why the newest earlier report could not be used
    report: Path | None = None

    @property
    def regression(self) -> bool:
        return any(v.regression for v in self.versions)

    def to_dict(self, *, with_examples: bool = False) -> dict[str, Any]:
        return {"signature": self.signature, "status": self.status, "reason": self.reason,
                "golden_version": self.golden_version, "golden_size": self.golden_size, "model": self.model,
                "regression": self.regression, "previous": self.previous, "previous_problem": self.previous_problem,
                "report": str(self.report) if self.report else None,
                "versions": [v.to_dict(with_examples=with_examples) for v in self.versions]}


@dataclass
class RegressionRun:
    """Every chosen signature's outcome of one eval-regression run."""

    at: float
    signatures: dict[str, SignatureRegression]

    @property
    def regression(self) -> bool:
        return any(s.regression for s in self.signatures.values())

    @property
    def failed(self) -> list[str]:
        return [name for name, s in self.signatures.items()
                if s.status == "error" or any(v.error for v in s.versions)]

    def to_dict(self) -> dict[str, Any]:
        return {"at": datetime.fromtimestamp(self.at, UTC).isoformat(timespec="seconds"),
                "regression": self.regression, "failed": self.failed,
                "signatures": {name: s.to_dict() for name, s in self.signatures.items()}}


# -- the run -----------------------------------------------------------------------------------------------------


def run_eval_regression(settings: Settings, registry: ProgramRegistry, db: StateDB, signature: str | None = None,
                        *, lms: LMBundle | None = None, now: float | None = None,
                        on_progress: Progress | None = None) -> RegressionRun:
    """Score production and any live candidate of each signature (or of ``signature``) on its golden set,
    compare with the previous run, write the reports. ``lms`` defaults to the configured models, built without
    DSPy's response cache (a cached answer would hide the model changing underneath)."""
    names = [registry.get(signature).name] if signature is not None else registry.names()
    now = time.time() if now is None else now
    versions = VersionStore(settings.home_dir, db)
    pointers = ProductionPointers(db, versions)
    run = RegressionRun(now, {})
    built: list[LMBundle] = [lms] if lms is not None else []

    def models() -> LMBundle:
        if not built:
            built.append(build_lms(settings.lm, cache=False).prepare())
        return built[0]

    for name in names:
        outcome = SignatureRegression(name)
        run.signatures[name] = outcome
        golden = load_golden_set(settings, registry, name)
        if golden is None:
            outcome.status, outcome.reason = "no_golden", "no golden set (seed one with `ratchet golden add`)"
            continue
        outcome.golden_version, outcome.golden_size = golden.version, len(golden)
        try:
            targets = _targets(pointers.get(name), live_candidates(db, name))
            bundle = models()
        except RatchetError as exc:  # e.g. the embedded model cannot run here, or an API key is missing
            outcome.status, outcome.reason = "error", str(exc)
            continue
        outcome.model = bundle.model_id
        previous, outcome.previous_problem = _previous(settings.home_dir, name)
        if previous is not None:
            outcome.previous = {"path": previous["_path"], "run_at": previous.get("run_at")}
        spec = registry.get(name)
        outcome.versions = [_score(spec, version, roles, golden, versions, bundle, on_progress)
                            for version, roles in targets.items()]
        _compare(outcome, previous, settings)
        outcome.report = _write(settings.home_dir, outcome, now)
    return run


def live_candidates(db: StateDB, signature: str) -> list[tuple[str, str]]:
    """The live experiment of ``signature`` (at most one) as (experiment id, candidate version)."""
    c = experiments.c
    query = (select(c.experiment_id, c.candidate_version)
             .where(c.signature == signature, c.status.in_(LIVE_STATUSES)).order_by(c.created_at))
    with db.begin(snapshot=True) as conn:
        return [(str(eid), str(version)) for eid, version in conn.execute(query)]


def _targets(production: str, candidates: Iterable[tuple[str, str]]) -> dict[str, list[str]]:
    targets: dict[str, list[str]] = {production: ["production"]}
    for experiment_id, version in candidates:
        targets.setdefault(version, []).append(f"candidate of {experiment_id}")
    return targets


def _score(spec: ProgramSpec, version: str, roles: list[str], golden: GoldenSet, versions: VersionStore,
           bundle: LMBundle, on_progress: Progress | None) -> VersionRegression:
    result = VersionRegression(version, roles)
    try:
        program = versions.load(spec, version)
        result.fingerprint = versions.fingerprint_of(spec, version, lm=bundle.model_id, adapter=bundle.adapter_name)
    except RatchetError as exc:
        result.error = str(exc)
        return result
    total, done = len(golden), [0]

    def advanced(_result: Any) -> None:
        done[0] += 1
        if on_progress:
            on_progress(spec.name, version, done[0], total)

    if on_progress:
        on_progress(spec.name, version, 0, total)
    result.scores = score_golden(spec, program, golden, bundle, version=version, on_result=advanced)
    return result


def _compare(outcome: SignatureRegression, previous: Mapping[str, Any] | None, settings: Settings) -> None:
    """Give each scored version its reference, comparison and verdict."""
    alpha, min_drop = settings.flywheel.golden_alpha, settings.flywheel.golden_min_drop
    before = list(previous["versions"]) if previous is not None else []
    run_at = previous.get("run_at") if previous is not None else None
    production = next((v for v in outcome.versions if "production" in v.roles and v.scores), None)
    for item in outcome.versions:
        if item.scores is None:
            item.message = f"{item.version}: not scored: {item.error}"
            continue
        reference, against = _reference(item, before, run_at, production)
        if reference is None:
            item.message = f"{item.version}: {item.scores.score:.3f} on {item.scores.n} golden examples; no " \
                           "previous run to compare with"
            continue
        item.against = against
        comparison, item.excluded = compare_golden(reference, item.scores.examples(), confidence=1 - alpha)
        if comparison is None:
            item.message = (f"{item.version}: {item.scores.score:.3f}; no golden example in common with "
                            f"{against['version']} ({against['basis']})")
            continue
        item.comparison = comparison.to_dict()
        item.regression = (comparison.ci_high < -min_drop and comparison.p_value < alpha)
        verdict = "REGRESSION" if item.regression else "no significant drop"
        item.message = (f"{item.version}: {verdict}: {comparison.candidate_mean:.3f} vs {comparison.baseline_mean:.3f}"
                        f" of {against['version']} ({against['basis']}) on the same {comparison.n} golden examples, "
                        f"{comparison.mean_difference * 100:+.1f} points ({1 - alpha:.0%} interval "
                        f"{comparison.ci_low * 100:+.1f} to {comparison.ci_high * 100:+.1f}; {comparison.losses} "
                        f"worse, {comparison.wins} better, {comparison.test} p = {comparison.p_value:.2g})")


def _reference(item: VersionRegression, before: list[dict[str, Any]], run_at: str | None,
               production: VersionRegression | None) -> tuple[dict[str, Any] | None, dict[str, Any]]:
    """The per-example scores ``item`` is compared with, and what they are (version, roles, run, basis)."""
    same = next((v for v in before if v["version"] == item.version and v.get("fingerprint") == item.fingerprint),
                None)
    if same is not None:
        return same["examples"], {"version": same["version"], "roles": same.get("roles", []), "run_at": run_at,
                                  "basis": "same version, previous run"}
    if "production" in item.roles:
        earlier = next((v for v in before if "production" in v.get("roles", [])), None)
        if earlier is not None:
            changed = (f"production changed since the previous run: {earlier['version']} → {item.version}"
                       if earlier["version"] != item.version else
                       f"production {item.version} changed since the previous run (another fingerprint)")
            return earlier["examples"], {"version": earlier["version"], "roles": earlier.get("roles", []),
                                         "run_at": run_at, "basis": changed}
    elif production is not None and production.scores is not None:
        return production.scores.examples(), {"version": production.version, "roles": production.roles,
                                              "run_at": None, "basis": "first run of this candidate: against "
                                              "production in this run"}
    return None, {}


# -- reports -----------------------------------------------------------------------------------------------------


def _reports_dir(home: Path, signature: str) -> Path:
    return Path(home) / REPORTS_DIRNAME / signature


def report_files(home: Path, signature: str) -> list[Path]:
    """Oldest first: by UTC timestamp, then by the suffix of runs within the same second (``_1``, ``_2`` …)."""
    directory = _reports_dir(home, signature)

    def order(path: Path) -> tuple[str, int]:
        stamp, _, suffix = path.stem.partition("_")
        return stamp, int(suffix) if suffix.isdigit() else 0

    return sorted(directory.glob("*.json"), key=order) if directory.is_dir() else []


def read_report(path: Path) -> dict[str, Any]:
    """A report, checked enough for a later run to pair with it; ValueError naming the problem."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: unreadable report ({exc})") from None
    if not isinstance(data, dict) or data.get("format") != REPORT_FORMAT:
        raise ValueError(f"{path}: not an eval-regression report of format {REPORT_FORMAT}")
    entries = data.get("versions")
    if not isinstance(entries, list):
        raise ValueError(f"{path}: no list of versions")
    for entry in entries:
        examples = entry.get("examples") if isinstance(entry, dict) else None
        if not isinstance(entry, dict) or not isinstance(entry.get("version"), str):
            raise ValueError(f"{path}: a version entry without a version name")
        if examples is None and entry.get("error"):
            entry["examples"] = {}
            continue
        if not isinstance(examples, dict) or not all(
                isinstance(e, dict) and isinstance(e.get("score"), int | float) for e in examples.values()):
            raise ValueError(f"{path}: version {entry['version']} has no per-example scores")
    data["_path"] = str(path)
    return data


def latest_report(home: Path, signature: str) -> dict[str, Any] | None:
    """The newest report of ``signature``, or None when it has none; ValueError when it cannot be read."""
    files = report_files(home, signature)
    return read_report(files[-1]) if files else None


def report_history(home: Path, signature: str, *, limit: int = 14) -> list[dict[str, Any]]:
    """The last ``limit`` readable reports of ``signature``, oldest first (unreadable ones are skipped)."""
    found = []
    for path in reversed(report_files(home, signature)):
        try:
            found.append(read_report(path))
        except ValueError:
            continue
        if len(found) == limit:
            break
    return found[::-1]


def _previous(home: Path, signature: str) -> tuple[dict[str, Any] | None, str | None]:
    try:
        return latest_report(home, signature), None
    except ValueError as exc:
        return None, f"{exc}; treated as no previous run (this run is the new reference)"


def _write(home: Path, outcome: SignatureRegression, now: float) -> Path:
    directory = make_private_dir(_reports_dir(home, outcome.signature))
    stamp = datetime.fromtimestamp(now, UTC)
    name = stamp.strftime("%Y%m%dT%H%M%SZ")
    path, suffix = directory / f"{name}.json", 1
    while path.exists() or path.with_suffix(".md").exists():  # two runs in the same second
        path, suffix = directory / f"{name}_{suffix}.json", suffix + 1
    outcome.report = path
    data = {"format": REPORT_FORMAT, "run_at": stamp.isoformat(timespec="seconds"),
            **outcome.to_dict(with_examples=True)}
    atomic_write_text(path.with_suffix(".md"), render_markdown(data))
    atomic_write_json(path, data)  # last: a report without its .md is still a complete reference
    return path


def render_markdown(report: Mapping[str, Any]) -> str:
    """A short readable form of a report."""
    lines = [f"# Eval regression: {report['signature']} · {report['run_at']}", "",
             f"Golden set {report['golden_version']} ({report['golden_size']} examples), model {report['model']}.",
             f"Verdict: **{'REGRESSION' if report['regression'] else 'no significant regression'}**.", ""]
    if report.get("previous_problem"):
        lines += [f"Previous report: {report['previous_problem']}", ""]
    elif not report.get("previous"):
        lines += ["First run: nothing to compare with.", ""]
    lines += ["| version | roles | score | n | parse failures | errors | change (points) | against |",
              "|---|---|---|---|---|---|---|---|"]
    for v in report["versions"]:
        cmp, against = v.get("comparison"), v.get("against") or {}
        change = (f"{cmp['mean_difference'] * 100:+.1f} ({cmp['ci_low'] * 100:+.1f} to {cmp['ci_high'] * 100:+.1f})"
                  if cmp else "–")
        score = f"{v['score']:.3f}" if v.get("score") is not None else f"error: {v.get('error')}"
        lines.append(f"| {v['version']} | {', '.join(v['roles'])} | {score} | {v.get('n', '–')} | "
                     f"{v.get('parse_failures', '–')} | {v.get('errors', '–')} | {change} | "
                     f"{against.get('basis', '–')} |")
    lines += ["", *[f"- {v['message']}" for v in report["versions"] if v.get("message")], ""]
    return "\n".join(lines)
