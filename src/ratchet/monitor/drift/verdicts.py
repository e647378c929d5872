"""The two drift verdicts of a window: output labels (PSI) and input novelty (excess novel share).

*Output drift* is flagged when the PSI of the live label distribution against the training labels
is above ``psi_threshold`` **and** a G-test rejects "same distribution" at ``alpha``: the first is
the size of the shift, the second says it is not the noise of a small window.

*Input drift* is flagged when the live share of novel inputs exceeds the held-out share by more
than ``novelty_margin`` at confidence ``1 − alpha`` (the one-sided lower bound of the difference
is above the margin). Both need ``min_samples`` live calls; the caller checks that.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ratchet.config.settings import DriftSettings
from ratchet.monitor.drift.stats import count_labels, excess_lower_bound, homogeneity_p_value, psi, psi_contributions
from ratchet.programs.registry import ProgramSpec

__all__ = ["InputDrift", "OutputDrift", "judge_input", "judge_output", "label_field"]


@dataclass(frozen=True)
class OutputDrift:
    """Live output labels against the training labels."""

    label_field: str
    reference_counts: dict[str, int]
    live_counts: dict[str, int]
    psi: float
    p_value: float
    threshold: float
    alpha: float

    @property
    def flagged(self) -> bool:
        return self.psi > self.threshold and self.p_value < self.alpha

    @property
    def live_n(self) -> int:
        return sum(self.live_counts.values())

    def top_shifts(self, n: int = 3) -> list[dict[str, Any]]:
        """The labels that move the PSI most, with their training and live shares."""
        ref_n, live_n = sum(self.reference_counts.values()), self.live_n
        terms = psi_contributions(self.reference_counts, self.live_counts)
        top = sorted(terms, key=lambda label: -terms[label])[:n]
        return [{"label": label, "reference_share": round(self.reference_counts.get(label, 0) / ref_n, 4),
                 "live_share": round(self.live_counts.get(label, 0) / live_n, 4)} for label in top]

    def to_dict(self) -> dict[str, Any]:
        return {"label_field": self.label_field, "psi": round(self.psi, 4), "p_value": round(self.p_value, 6),
                "threshold": self.threshold, "alpha": self.alpha, "flagged": self.flagged, "live_n": self.live_n,
                "reference_n": sum(self.reference_counts.values()), "top_shifts": self.top_shifts(),
                "reference_counts": self.reference_counts, "live_counts": self.live_counts}


@dataclass(frozen=True)
class InputDrift:
    """The live share of novel inputs against the held-out share."""

    similarity_threshold: float
    live_novel: int
    live_n: int
    reference_novel: int
    reference_n: int
    excess_lower_bound: float
    margin: float
    alpha: float

    @property
    def live_share(self) -> float:
        return self.live_novel / self.live_n

    @property
    def reference_share(self) -> float:
        return self.reference_novel / self.reference_n

    @property
    def flagged(self) -> bool:
        return self.excess_lower_bound > self.margin

    def to_dict(self) -> dict[str, Any]:
        return {"similarity_threshold": self.similarity_threshold, "live_novel_share": round(self.live_share, 4),
                "live_novel": self.live_novel, "live_n": self.live_n,
                "reference_novel_share": round(self.reference_share, 4), "reference_novel": self.reference_novel,
                "reference_n": self.reference_n, "excess_lower_bound": round(self.excess_lower_bound, 4),
                "margin": self.margin, "alpha": self.alpha, "flagged": self.flagged}


def label_field(spec: ProgramSpec) -> tuple[str | None, tuple[str, ...], str | None]:
    """The output whose label distribution is compared, its choices, or why there is none.

    The program's ``label_field`` when it is a ``Literal``; else the only output when it is one.
    """
    outputs = {f.name: f for f in spec.schema.outputs}
    name = spec.label_field or (next(iter(outputs)) if len(outputs) == 1 else None)
    if name is None:
        return None, (), f"{len(outputs)} output fields and no label_field: no single label to compare"
    choices = outputs[name].choices
    if not choices:
        return None, (), f"output '{name}' is {outputs[name].type}, not a Literal: no label distribution"
    return name, choices, None


def judge_output(field: str, choices: Sequence[str], reference_labels: Sequence[str], live_labels: Sequence[str],
                 drift: DriftSettings) -> OutputDrift:
    """PSI and G-test of ``live_labels`` against ``reference_labels`` over ``choices`` (+ an "(other)" bin)."""
    reference = count_labels(reference_labels, choices)
    live = count_labels(live_labels, choices)
    for counts, other in ((reference, live), (live, reference)):  # the same bins on both sides
        for label in other:
            counts.setdefault(label, 0)
    return OutputDrift(field, reference, live, psi(reference, live), homogeneity_p_value(reference, live),
                       drift.psi_threshold, drift.alpha)


def judge_input(live_novel: int, live_n: int, reference_novel: int, reference_n: int, drift: DriftSettings
                ) -> InputDrift:
    """The novelty verdict from the novel counts of the live window and of the held-out reference inputs."""
    bound = excess_lower_bound(live_novel, live_n, reference_novel, reference_n, drift.alpha)
    return InputDrift(drift.similarity_threshold, live_novel, live_n, reference_novel, reference_n, bound,
                      drift.novelty_margin, drift.alpha)
