"""The deploy decision of an optimization: a paired comparison on held-out data against two rules.

The comparison itself (:func:`compare_paired`) lives in :mod:`ratchet.evaluation.paired`, where the
rollout's canary trigger can use it too; it is re-exported here.
"""

from __future__ import annotations

import math
from typing import Any

from ratchet.evaluation.paired import PairedComparison, compare_paired

__all__ = ["PairedComparison", "compare_paired", "deploy_decision"]


def deploy_decision(comparison: PairedComparison, min_improvement_percent: float) -> dict[str, Any]:
    """Deploy when the improvement reaches ``min_improvement_percent`` AND the interval excludes zero.

    The improvement is relative to the baseline's score; a baseline scoring 0 counts
    any positive difference as meeting it. The result says which rule decided.
    """
    relative = comparison.relative_improvement_percent
    if relative is None:
        enough = comparison.mean_difference > 0
        shown = "baseline scored 0" if enough else "no improvement over a baseline scoring 0"
    else:
        enough = relative >= min_improvement_percent
        shown = f"{relative:+.1f} %"
    significant = comparison.ci_low > 0
    ci = f"{comparison.confidence:.0%} interval [{comparison.ci_low:+.3f}, {comparison.ci_high:+.3f}]"
    if enough and significant:
        reason = f"deploy: improvement {shown} ≥ {min_improvement_percent:g} % and the {ci} excludes zero"
    elif not enough and not significant:
        reason = (f"keep baseline: improvement {shown} < {min_improvement_percent:g} % and the {ci} "
                  "includes zero (or favours the baseline)")
    elif not enough:
        reason = f"keep baseline: improvement {shown} < {min_improvement_percent:g} % (minimum-improvement rule)"
    else:
        reason = f"keep baseline: the {ci} does not exclude zero (significance rule)"
    return {
        "deploy": bool(enough and significant),
        "min_improvement_percent": min_improvement_percent,
        "improvement_percent": None if relative is None or math.isnan(relative) else round(relative, 3),
        "improvement_rule_met": bool(enough),
        "interval_rule_met": bool(significant),
        "reason": reason,
    }
