"""One optimization: dataset → DSPy optimizer → paired evaluation against production → decision → version.

Used by ``ratchet optimize`` and by each signature of ``ratchet cycle``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import dspy

from ratchet.config import Settings
from ratchet.data.datasets import DatasetStore, assign_split
from ratchet.data.golden import golden_input_hashes, without_golden
from ratchet.data.records import ExampleRecord
from ratchet.errors import DataError
from ratchet.evaluation.golden import GoldenScores, compare_golden, load_golden_set, score_golden
from ratchet.evaluation.runner import EvalReport, evaluate_program
from ratchet.lm.adapter import CompletionAdapter
from ratchet.lm.pricing import token_prices
from ratchet.lm.setup import LMBundle, build_lms
from ratchet.lm.tokens import prompt_budget
from ratchet.optimize.meter import LMUsageMeter
from ratchet.optimize.optimizers import OptimizeContext, get_optimizer
from ratchet.optimize.stats import compare_paired, deploy_decision
from ratchet.programs.production import ProductionPointers
from ratchet.programs.registry import ProgramRegistry
from ratchet.programs.versions import VersionStore
from ratchet.store.db import StateDB

__all__ = ["OptimizationResult", "Progress", "is_base_model", "run_optimization"]

Progress = Callable[[str, int, int], None]  # phase, completed, total


@dataclass
class OptimizationResult:
    """What an optimization produced and how it compares with production."""

    signature: str
    optimizer: str
    parameters: dict[str, Any]
    dataset_version: str
    baseline_version: str
    candidate_version: str | None
    sizes: dict[str, int]
    baseline: EvalReport
    candidate: EvalReport
    comparison: dict[str, Any]
    decision: dict[str, Any]
    usage: dict[str, Any]
    seconds: dict[str, float] = field(default_factory=dict)
    excluded_golden: int = 0  # examples left out because their inputs are in the golden set
    golden: dict[str, Any] | None = None  # baseline and candidate on the golden set (None: it has none); informs only

    @property
    def deploy(self) -> bool:
        return bool(self.decision["deploy"])

    def to_dict(self) -> dict[str, Any]:
        return {
            "signature": self.signature,
            "optimizer": self.optimizer,
            "parameters": self.parameters,
            "dataset_version": self.dataset_version,
            "baseline_version": self.baseline_version,
            "candidate_version": self.candidate_version,
            "sizes": self.sizes,
            "excluded_golden": self.excluded_golden,
            "golden": self.golden,
            "baseline": self.baseline.summary(),
            "candidate": self.candidate.summary(),
            "comparison": self.comparison,
            "decision": self.decision,
            "usage": self.usage,
            "seconds": {k: round(v, 2) for k, v in self.seconds.items()},
            "per_example": [
                {"index": b.index, "baseline": b.score, "candidate": c.score}
                for b, c in zip(self.baseline.results, self.candidate.results, strict=True)
            ],
        }


def run_optimization(
    settings: Settings,
    registry: ProgramRegistry,
    signature: str,
    *,
    dataset_version: str = "latest",
    optimizer: str | None = None,
    auto: str | None = "light",
    trials: int | None = None,
    seed: int = 0,
    min_improvement: float = 5.0,
    save_candidate: bool = True,
    lms: LMBundle | None = None,
    num_threads: int | None = None,
    progress: Progress | None = None,
    records: Sequence[ExampleRecord] | None = None,
    budget_minutes: float | None = None,
) -> OptimizationResult:
    """Optimize ``signature`` on a dataset version's train split and compare it with production on its test split.

    ``records`` (a batch that was not stored, e.g. in a dry run) replaces the dataset version;
    their splits come from the same stable hash the dataset store uses. Examples whose inputs
    are in the signature's golden set are left out of every split (the leakage rule), counted
    in ``excluded_golden``. ``optimizer`` and ``budget_minutes`` default to ``[optimize]`` in the settings; the
    budget bounds the optimizer's compile (``auto`` keeps to it; the others are not stopped by it).
    """
    spec = registry.get(signature)
    plugin = get_optimizer(optimizer or settings.optimize.optimizer)
    budget_minutes = budget_minutes if budget_minutes is not None else settings.optimize.budget_minutes
    if records is None:
        dataset = DatasetStore(settings.home_dir, settings.data, registry=registry).load(signature, dataset_version)
        records, dataset_label = dataset.records, dataset.version
    else:
        dataset_label = "unstored batch"
    records, excluded_golden = without_golden(records, golden_input_hashes(settings, signature, registry=registry),
                                              spec.schema)
    ratios = settings.data.split_ratios
    splits: dict[str, list[dspy.Example]] = {"train": [], "dev": [], "test": []}
    for record in records:
        split = record.split or assign_split(record.inputs(spec.schema), ratios)
        splits[split].append(record.to_example(spec.schema))
    if not splits["train"] or not splits["test"]:
        raise DataError(f"dataset {signature} {dataset_label} has {len(splits['train'])} train and "
                        f"{len(splits['test'])} test examples; optimization needs both")
    valset = splits["dev"] or splits["train"]
    bundle = lms or build_lms(settings.lm)
    base_model = is_base_model(settings, bundle)
    threads = num_threads or (1 if bundle.engine is not None else 8)
    roles = role_lms(bundle, base_model)
    prices = {bundle.task.model: token_prices(settings.lm)} if lms is None else {}
    report = progress or (lambda phase, done, total: None)

    db = StateDB.connect(settings)
    versions = VersionStore(settings.home_dir, db)  # with PostgreSQL the new version goes to the database too
    with db:
        baseline_version = ProductionPointers(db, versions).get(signature)
    baseline = versions.load(spec, baseline_version)
    ctx = OptimizeContext(spec=spec, trainset=splits["train"], valset=valset, task_lm=roles["task"],
                          prompt_lm=roles["prompt"], teacher_lm=roles["teacher"], reflection_lm=roles["reflection"],
                          base_model=base_model, seed=seed, auto=auto, trials=trials, num_threads=threads,
                          adapter=bundle.adapter, prompt_budget=prompt_budget(bundle), budget_minutes=budget_minutes,
                          instruction_share=settings.optimize.instruction_share,
                          reserved_examples=2 * len(splits["test"]))
    estimated = max(1, plugin.estimated_calls(ctx))
    meter = LMUsageMeter(roles, prices=prices,
                         on_call=lambda: report("optimize", min(meter.total_calls, estimated), estimated))
    seconds: dict[str, float] = {}

    started = time.perf_counter()
    if budget_minutes is not None:
        ctx.deadline = time.monotonic() + 60 * budget_minutes
    report("optimize", 0, estimated)
    with dspy.context(lm=roles["task"], adapter=bundle.adapter, callbacks=[meter]):
        candidate = plugin.compile(baseline.deepcopy(), ctx)
    seconds["optimize"] = time.perf_counter() - started
    usage = meter.summary()

    started = time.perf_counter()
    test = splits["test"]
    golden = load_golden_set(settings, registry, signature)
    total = 2 * len(test) + (2 * len(golden) if golden is not None else 0)
    done = [0]

    def tick(_result: Any) -> None:
        done[0] += 1
        report("evaluate", done[0], total)

    kwargs = {"lm": bundle.task, "adapter": bundle.adapter, "num_threads": threads, "on_result": tick}
    base_report = evaluate_program(baseline, test, spec.metric, **kwargs)
    cand_report = evaluate_program(candidate, test, spec.metric, **kwargs)
    seconds["evaluate"] = time.perf_counter() - started
    # loop.min_confidence_for_deployment (seed 003: 0.8) is the interval's level: see docs/operations.md for why
    # 80 % and not 95 % — the deploy decision only admits a candidate to a guarded rollout.
    comparison = compare_paired(base_report.scores, cand_report.scores, seed=seed,
                                confidence=settings.loop.min_confidence_for_deployment)
    decision = deploy_decision(comparison, min_improvement)
    golden_result = None
    if golden is not None:
        started = time.perf_counter()
        golden_kwargs = {"num_threads": threads, "on_result": tick}
        base_golden = score_golden(spec, baseline, golden, bundle, version=baseline_version, **golden_kwargs)
        cand_golden = score_golden(spec, candidate, golden, bundle, version="candidate", **golden_kwargs)
        golden_result = golden_summary(base_golden, cand_golden, 1 - settings.flywheel.golden_alpha,
                                       settings.flywheel.golden_min_drop)
        decision["golden"] = golden_result["verdict"]
        seconds["golden"] = time.perf_counter() - started

    params = plugin.parameters(ctx)
    candidate_version = None
    if save_candidate:
        golden_scores = ({"golden": golden_result["candidate"]["score"],
                          "golden_version": golden_result["golden_version"]} if golden_result else {})
        saved = versions.save(
            spec, candidate, lm=bundle.model_id, adapter=bundle.adapter_name, parent=baseline_version,
            dataset_version=dataset_label, optimizer=plugin.name, optimizer_params=params,
            scores={"test": cand_report.score, "baseline_test": base_report.score,
                    "comparison": comparison.to_dict(), "decision": decision, **golden_scores},
        )
        candidate_version = saved.version
        if golden_result:
            golden_result["candidate"]["version"] = candidate_version
    return OptimizationResult(
        signature=signature, optimizer=plugin.name, parameters=params, dataset_version=dataset_label,
        baseline_version=baseline_version, candidate_version=candidate_version,
        sizes={"train": len(splits["train"]), "dev": len(splits["dev"]), "test": len(test)},
        baseline=base_report, candidate=cand_report, comparison=comparison.to_dict(), decision=decision,
        usage=usage, seconds=seconds, excluded_golden=excluded_golden, golden=golden_result,
    )


def golden_summary(baseline: GoldenScores, candidate: GoldenScores, confidence: float, min_drop: float
                   ) -> dict[str, Any]:
    """Baseline and candidate on the golden set, paired, with a one-line verdict for the deploy decision (a
    candidate is *worse* when the interval lies below ``-min_drop`` and the paired test agrees — the daily eval
    regression's rule)."""
    comparison, _ = compare_golden(baseline.examples(), candidate.examples(), confidence=confidence)
    assert comparison is not None  # both scored the same examples
    worse = comparison.ci_high < -min_drop and comparison.p_value < 1 - confidence
    better = comparison.ci_low > 0 and comparison.p_value < 1 - confidence
    verdict = (f"golden set {baseline.golden_version} ({comparison.n} examples): candidate "
               f"{comparison.candidate_mean:.3f} vs baseline {comparison.baseline_mean:.3f}, "
               f"{comparison.mean_difference * 100:+.1f} points ({confidence:.0%} interval "
               f"{comparison.ci_low * 100:+.1f} to {comparison.ci_high * 100:+.1f}): "
               + ("significantly worse" if worse else "significantly better" if better else "no significant change")
               + " (reported, not gating)")
    return {"golden_version": baseline.golden_version, "n": comparison.n, "baseline": baseline.summary(),
            "candidate": candidate.summary(), "comparison": comparison.to_dict(), "worse": worse, "better": better,
            "gates": False, "verdict": verdict}


def is_base_model(settings: Settings, bundle: LMBundle) -> bool:
    """Whether the task model is a base model: ``lm.base_model`` when set, else whether it is behind the completion
    adapter (the embedded model, or ``lm.adapter = "completion"``)."""
    if settings.lm.base_model is not None:
        return settings.lm.base_model
    return isinstance(bundle.adapter, CompletionAdapter)


def role_lms(bundle: LMBundle, base_model: bool) -> dict[str, dspy.LM]:
    """One LM object per role, each tagged with its role (``ratchet_role``), so calls can be told apart
    even when roles share a model — and when an optimizer copies an LM, since copies keep the tag.

    A base model proposing instructions for itself writes a sentence or two of use at
    best, so its proposals are capped at 128 tokens.
    """
    task = bundle.task
    if bundle.prompt is not task:
        prompt = bundle.prompt
    elif base_model:
        prompt = task.copy(max_tokens=min(128, int(task.kwargs.get("max_tokens") or 128)))
    else:
        prompt = task.copy()
    roles = {
        "task": task,
        "prompt": prompt,
        "teacher": bundle.teacher if bundle.teacher is not task else task.copy(),
        "reflection": bundle.reflection if bundle.reflection not in (task, bundle.prompt) else task.copy(),
    }
    for role, lm in roles.items():
        lm.ratchet_role = role
    return roles
