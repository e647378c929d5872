"""Dataset quality: the latest version's mean quality score against the previous version's."""

from __future__ import annotations

from pathlib import Path

from ratchet.config import Settings
from ratchet.data.datasets import DatasetStore, VersionInfo
from ratchet.monitor.alerts import Alert
from ratchet.monitor.results import CheckResult
from ratchet.programs.registry import NAME_PATTERN, ProgramRegistry

__all__ = ["NAME", "check_dataset_quality", "dataset_signatures"]

NAME = "dataset_quality"


def dataset_signatures(settings: Settings, registry: ProgramRegistry) -> tuple[list[str], list[str]]:
    """Signatures with a directory under ``<home>/training_data``: (registered ones, unknown ones)."""
    root = Path(settings.home_dir) / "training_data"
    if not root.is_dir():
        return [], []
    names = sorted(p.name for p in root.iterdir() if p.is_dir() and NAME_PATTERN.match(p.name))
    return [n for n in names if n in registry], [n for n in names if n not in registry]


def check_dataset_quality(settings: Settings, signature: str | None = None, *,
                          registry: ProgramRegistry | None = None) -> CheckResult:
    """Per signature with two or more versions (one signature when given): the latest version's quality mean
    dropped by more than ``dataset_quality_drop_threshold`` (relative) from the previous version's → warning
    "Dataset Quality Degradation" (seed 001's shape)."""
    if registry is None:
        from ratchet.programs import load_programs

        registry = load_programs(settings)
    store = DatasetStore(settings.home_dir, settings.data, registry=registry)
    if signature is not None:
        registry.get(signature)  # an unknown name is an error, not a quiet "nothing found"
        signatures, unknown = [signature], []
        result = CheckResult(NAME, scopes=[f"{NAME}/quality_drop/{signature}"])
    else:
        signatures, unknown = dataset_signatures(settings, registry)
        result = CheckResult(NAME, scopes=[NAME])
    threshold = settings.monitor.dataset_quality_drop_threshold
    compared = []
    for name in signatures:
        pair = _latest_pair(store.list_versions(name))
        if pair is None:
            continue
        latest, previous = pair
        compared.append(name)
        latest_q, previous_q = float(latest.quality_mean or 0.0), float(previous.quality_mean or 0.0)
        if previous_q <= 0:
            continue
        drop = (previous_q - latest_q) / previous_q
        if drop > threshold:
            result.alerts.append(Alert(
                "warning", "Dataset Quality Degradation", f"Quality score dropped {drop * 100:.1f}% for {name}",
                {"signature": name, "latest_version": latest.version, "previous_version": previous.version,
                 "latest_quality": round(latest_q, 2), "previous_quality": round(previous_q, 2),
                 "drop_percent": round(drop * 100, 1), "threshold_percent": round(threshold * 100, 1)},
                condition=f"{NAME}/quality_drop/{name}"))
    result.summary = {"signatures": signatures, "compared": compared, "unknown_signatures": unknown}
    return result


def _latest_pair(versions: list[VersionInfo]) -> tuple[VersionInfo, VersionInfo] | None:
    """The latest version and the one before it, both with a quality mean (None when there are not two)."""
    index = next((i for i, v in enumerate(versions) if v.latest), len(versions) - 1)
    if index < 1 or versions[index].quality_mean is None:
        return None
    previous = [v for v in versions[:index] if v.quality_mean is not None]
    return (versions[index], previous[-1]) if previous else None
