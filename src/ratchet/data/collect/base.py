"""What every collector shares: the :class:`Collector` interface and its :class:`CollectionReport`.

A collector turns one source (telemetry logs, git history, an LM) into
:class:`~ratchet.data.records.ExampleRecord` batches. :meth:`Collector.collect` runs it and
writes, atomically::

    <output>/<signature>.jsonl        the examples of each signature (ExampleRecord JSON Lines)
    <output>/collection_report.json   the report: what was examined, written and skipped, and why

Every item a collector examines ends up either written or skipped under a reason, so
``examined == collected + sum(skipped.values())``: nothing is dropped silently.
"""

from __future__ import annotations

import re
import time
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar

from ratchet.data.records import ExampleRecord, utc_now, write_batch
from ratchet.errors import DataError
from ratchet.store.atomic import atomic_write_json
from ratchet.store.private import make_private_dir

__all__ = [
    "REPORT_NAME",
    "CollectionReport",
    "Collector",
    "ProgressFn",
    "parse_since",
    "plural",
]

REPORT_NAME = "collection_report.json"
_MAX_ERRORS = 20

ProgressFn = Callable[[int, int | None, str], None]
"""``progress(done, total, status)``: how far a collection is (``total`` None when unknown)."""


def _no_progress(done: int, total: int | None, status: str) -> None:
    pass


def plural(n: int, word: str) -> str:
    """``1 example``, ``2 examples``."""
    return f"{n} {word}{'' if n == 1 else 's'}"


@dataclass
class CollectionReport:
    """What one collection examined, wrote and skipped (by reason), and how long it took."""

    source: str
    output_dir: str
    target: int | None = None
    examined: int = 0
    written: dict[str, int] = field(default_factory=dict)
    skipped: Counter[str] = field(default_factory=Counter)
    counts: dict[str, Any] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    stopped: str = ""
    hints: list[str] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    parameters: dict[str, Any] = field(default_factory=dict)
    started_at: str = field(default_factory=utc_now)
    seconds: float = 0.0

    @property
    def collected(self) -> int:
        """Examples written, over every signature."""
        return sum(self.written.values())

    @property
    def complete(self) -> bool:
        """True when there is no target or it was reached."""
        return self.target is None or self.collected >= self.target

    def skip(self, reason: str, detail: str | None = None) -> None:
        """Count one examined item as skipped for ``reason`` (keeping the first details)."""
        self.skipped[reason] += 1
        if detail is not None:
            self.error(f"{reason}: {detail}")

    def error(self, message: str) -> None:
        if len(self.errors) < _MAX_ERRORS:
            self.errors.append(message)

    def count(self, key: str, n: int = 1) -> None:
        self.counts[key] = self.counts.get(key, 0) + n

    def summary(self, *, reasons: bool = True) -> str:
        """One line: ``collected: 1 example, target: 30`` (+ what was skipped, most frequent first)."""
        line = f"collected: {plural(self.collected, 'example')}"
        if self.target is not None:
            line += f", target: {self.target}"
        line += f" ({plural(self.examined, self._unit())} examined"
        if self.skipped and reasons:
            reasons = ", ".join(f"{reason} {n}" for reason, n in self.skipped.most_common())
            line += f"; skipped: {reasons}"
        return line + ")"

    def _unit(self) -> str:
        return {"telemetry": "call", "git": "commit", "synthetic": "attempt"}.get(self.source, "item")

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "summary": self.summary(),
            "collected": self.collected,
            "target": self.target,
            "complete": self.complete,
            "stopped": self.stopped,
            "examined": self.examined,
            "written": dict(self.written),
            "skipped": dict(self.skipped.most_common()),
            "counts": self.counts,
            "hints": self.hints,
            "errors": self.errors,
            "output_dir": self.output_dir,
            "files": self.files,
            "parameters": self.parameters,
            "started_at": self.started_at,
            "seconds": round(self.seconds, 3),
        }


class Collector(ABC):
    """One source of training examples (the plug-in point; see ``telemetry.py``, ``git.py``, ``synthetic.py``).

    Subclasses implement :meth:`run`; :meth:`collect` times it and writes the files.
    """

    source: ClassVar[str]
    target: int | None = None

    @abstractmethod
    def run(self, report: CollectionReport, progress: ProgressFn) -> dict[str, list[ExampleRecord]]:
        """Collect examples by signature, counting every examined item in ``report``."""

    def parameters(self) -> dict[str, Any]:
        """The options of this collection, recorded in the report."""
        return {}

    def collect(self, output_dir: Path, *, progress: ProgressFn | None = None) -> CollectionReport:
        """Run the collection and write ``<output>/<signature>.jsonl`` and ``collection_report.json``."""
        started = time.perf_counter()
        output_dir = Path(output_dir)
        if output_dir.exists() and not output_dir.is_dir():
            raise DataError(f"{output_dir}: not a directory")
        report = CollectionReport(source=self.source, output_dir=str(output_dir), target=self.target,
                                  parameters=self.parameters())
        batches = self.run(report, progress or _no_progress)
        make_private_dir(output_dir)
        for signature, records in batches.items():
            path = output_dir / f"{signature}.jsonl"
            report.written[signature] = write_batch(path, records)
            report.files.append(str(path))
        report.seconds = time.perf_counter() - started
        atomic_write_json(output_dir / REPORT_NAME, report.to_dict())
        return report


_DAYS = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*d?\s*$")


def parse_since(value: str | None, *, now: datetime | None = None) -> datetime | None:
    """``--since``: a number of days (``30``, ``30d``) or an ISO date/time (naive means UTC)."""
    if value is None or not str(value).strip():
        return None
    match = _DAYS.match(str(value))
    if match:
        return (now or datetime.now(UTC)) - timedelta(days=float(match.group(1)))
    try:
        moment = datetime.fromisoformat(str(value).strip())
    except ValueError:
        raise DataError(f"--since {value!r}: expected a number of days (30) or an ISO date (2026-11-01)") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
