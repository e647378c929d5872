"""The live window: successful calls of the production (baseline) arm over the last hours, from telemetry.

Telemetry files are listed once in write order (:func:`~ratchet.telemetry.writer.iter_log_files`)
and read with the store's JSON Lines reader, which skips and counts malformed lines; a line that
is JSON but not a valid record is skipped and counted too. A rotated file last modified before the
window holds only older calls and is not opened. Inputs and outputs are as telemetry stored them:
PII already redacted.
"""

from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ratchet.store.jsonl import JsonlReadStats, iter_jsonl
from ratchet.telemetry.records import InteractionLog, parse_record
from ratchet.telemetry.writer import iter_log_files

__all__ = ["LiveCalls", "TelemetryScan", "read_live"]


@dataclass
class LiveCalls:
    """One signature's calls in the window: ``(inputs, outputs)``, newest last, at most ``max_samples`` kept."""

    signature: str
    calls: deque[tuple[dict[str, Any], dict[str, Any]]]
    in_window: int = 0
    versions: Counter[str] = field(default_factory=Counter)

    def __len__(self) -> int:
        return len(self.calls)


@dataclass
class TelemetryScan:
    """What reading the telemetry saw: files, lines, and what was skipped or left out (and why)."""

    files: int = 0
    files_before_window: int = 0
    read: JsonlReadStats = field(default_factory=JsonlReadStats)
    invalid_records: int = 0
    excluded: Counter[str] = field(default_factory=Counter)
    invalid_errors: list[str] = field(default_factory=list)

    def invalid(self, where: str, error: ValueError) -> None:
        """Count a line that is JSON but not a valid record (the first few reasons are kept)."""
        self.invalid_records += 1
        if len(self.invalid_errors) < 5:
            self.invalid_errors.append(f"{where}: {error}")

    def to_dict(self) -> dict[str, Any]:
        return {"files": self.files, "files_before_window": self.files_before_window, "lines": self.read.lines,
                "malformed_lines": self.read.bad_lines, "invalid_records": self.invalid_records,
                "excluded": dict(sorted(self.excluded.items())),
                "errors": [*self.read.errors[:5], *self.invalid_errors]}


def read_live(directory: Path, *, since_ms: int, max_samples: int) -> tuple[dict[str, LiveCalls], TelemetryScan]:
    """Every signature's live calls since ``since_ms`` in the telemetry ``directory`` (missing: none)."""
    scan = TelemetryScan()
    live: dict[str, LiveCalls] = {}
    files = iter_log_files(Path(directory)) if Path(directory).is_dir() else []
    for path in files:
        try:
            if path.stat().st_mtime * 1000 < since_ms:
                scan.files_before_window += 1
                continue
        except OSError:  # rotated or removed meanwhile
            continue
        scan.files += 1
        for data in iter_jsonl(path, scan.read):
            if data.get("record") == "feedback":
                continue
            try:
                record = parse_record(data)
            except ValueError as exc:
                scan.invalid(path.name, exc)
                continue
            assert isinstance(record, InteractionLog)
            reason = _excluded(record, since_ms)
            if reason:
                scan.excluded[reason] += 1
                continue
            calls = live.get(record.signature)
            if calls is None:
                calls = live[record.signature] = LiveCalls(record.signature, deque(maxlen=max_samples))
            calls.calls.append((record.input, record.output))
            calls.in_window += 1
            calls.versions[record.module_version] += 1
    return live, scan


def _excluded(record: InteractionLog, since_ms: int) -> str | None:
    if record.timestamp_ms < since_ms:
        return "before_window"
    if not record.success:
        return "failed_call"
    if record.arm not in (None, "baseline"):
        return "candidate_arm"
    return None
