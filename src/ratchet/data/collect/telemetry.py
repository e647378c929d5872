"""Telemetry aggregation: logged calls joined with their feedback become labelled examples (seed 002).

The log files (plain or ``.gz``) hold ``InteractionLog`` and ``FeedbackRecord`` lines in
any order: feedback may come before or after its call, in another file. Two streaming
passes keep memory to what the join needs:

1. read only the feedback lines (a byte test skips the rest unparsed) into an index
   ``request_id → (time, score, correction)``; a later feedback replaces an earlier one;
2. stream the calls and judge each one on the spot, in this order (the first failed
   test is the reason it is skipped): signature, ``success``, latency, cost, ``since``,
   inputs valid for the program, then the label:

   - a feedback ``correction`` is the label (the whole corrected output, validated
     against the program's output fields; an invalid one is skipped and reported);
   - else the program's own output when the feedback score ≥ ``min_quality_score``;
   - no feedback, or a lower score: no label (``no_feedback``, ``low_score``).

Labelled calls are deduplicated by :func:`~ratchet.data.records.input_hash` (SHA-256 of the
sorted-key inputs) per signature; the oldest call wins. Malformed lines and invalid
records are skipped and counted; so is every call that does not become an example.
"""

from __future__ import annotations

import glob
import gzip
import json
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson  # a DSPy dependency: parses log lines about twice as fast as json

from ratchet.data.collect.base import CollectionReport, Collector, ProgressFn
from ratchet.data.records import ExampleRecord, input_hash
from ratchet.errors import DataError, InputValidationError
from ratchet.programs.registry import ProgramRegistry, ProgramSpec
from ratchet.telemetry.records import FeedbackRecord, InteractionLog, parse_record
from ratchet.telemetry.writer import iter_log_files

__all__ = ["TelemetryCollector", "expand_log_paths"]

_PROGRESS_EVERY = 8192


def expand_log_paths(patterns: Sequence[str | Path]) -> list[Path]:
    """Files named by paths, globs (``logs/*.jsonl.gz``, ``**`` allowed) or directories, in order, once each.

    A directory gives its telemetry files in write order (:func:`iter_log_files`), or else
    every ``*.jsonl``/``*.jsonl.gz`` in it. A pattern matching nothing is an error.
    """
    files: list[Path] = []
    for pattern in patterns:
        text = str(pattern)
        matches = sorted(glob.glob(text, recursive=True)) if glob.has_magic(text) else [text]
        found = []
        for match in map(Path, matches):
            if match.is_dir():
                found.extend(iter_log_files(match) or sorted(
                    p for p in match.iterdir() if p.is_file() and p.name.endswith((".jsonl", ".jsonl.gz"))))
            elif match.is_file():
                found.append(match)
        if not found:
            what = ("no .jsonl or .jsonl.gz files in it" if Path(text).is_dir()
                    else "no such file matches" if glob.has_magic(text) else "no such file")
            raise DataError(f"--log-file {text}: {what}")
        files.extend(found)
    return list(dict.fromkeys(files))


class TelemetryCollector(Collector):
    """Aggregate telemetry logs into examples of one signature (or of every registered one)."""

    source = "telemetry"

    def __init__(self, files: Sequence[Path], registry: ProgramRegistry, *, signature: str | None = None,
                 min_quality_score: float = 0.70, max_latency_ms: float | None = 5000.0,
                 max_cost_usd: float | None = 0.10, since: datetime | None = None,
                 max_feedback_per_key: int | None = None) -> None:
        if not 0.0 <= min_quality_score <= 1.0:
            raise DataError(f"min quality score must be between 0 and 1, got {min_quality_score}")
        self.files = [Path(f) for f in files]
        self.registry = registry
        self.spec = registry.get(signature) if signature is not None else None  # unknown: a clear error now
        self.signature = signature
        self.min_quality_score = min_quality_score
        self.max_latency_ms = max_latency_ms
        self.max_cost_usd = max_cost_usd
        self.since = since
        self.max_feedback_per_key = max_feedback_per_key
        self._since_ms = None if since is None else int(since.timestamp() * 1000)

    def parameters(self) -> dict[str, Any]:
        return {"files": [str(f) for f in self.files], "signature": self.signature,
                "min_quality_score": self.min_quality_score, "max_latency_ms": self.max_latency_ms,
                "max_cost_usd": self.max_cost_usd, "max_feedback_per_key": self.max_feedback_per_key,
                "since": None if self.since is None else self.since.isoformat(timespec="seconds")}

    def run(self, report: CollectionReport, progress: ProgressFn) -> dict[str, list[ExampleRecord]]:
        sizes = [_size(path) for path in self.files]
        total = 2 * sum(sizes)
        report.counts.update(files=len(self.files), bytes=sum(sizes), lines=0, malformed_lines=0,
                             invalid_records=0, interactions=0, feedback_records=0)
        feedback = self._index_feedback(report, progress, total)
        kept: dict[tuple[str, str], ExampleRecord] = {}
        specs: dict[str, ProgramSpec | None] = {}
        done = sum(sizes)
        for path, size in zip(self.files, sizes, strict=True):
            for number, raw in _lines(path, report, lambda pos, base=done: progress(base + pos, total, "calls")):
                report.counts["lines"] += 1
                if not raw.strip():
                    continue
                try:
                    data = orjson.loads(raw)
                except orjson.JSONDecodeError as exc:
                    self._bad(report, "malformed_lines", f"{path.name}:{number}: invalid JSON ({exc})")
                    continue
                if not isinstance(data, dict):
                    self._bad(report, "malformed_lines", f"{path.name}:{number}: expected a JSON object")
                    continue
                if data.get("record") == FeedbackRecord.RECORD:
                    continue  # indexed (or counted as invalid) in the first pass
                try:
                    record = parse_record(data)
                except ValueError as exc:
                    self._bad(report, "invalid_records", f"{path.name}:{number}: {exc}")
                    continue
                assert isinstance(record, InteractionLog)
                report.counts["interactions"] += 1
                report.examined += 1
                self._judge(record, feedback, specs, kept, report)
            done += size
        progress(total, total, "done")
        report.counts["feedback_unmatched"] = sum(1 for entry in feedback.values() if not entry[3])
        batches: dict[str, list[ExampleRecord]] = {}
        if self.signature is not None:
            batches[self.signature] = []
        for name, spec in specs.items():
            if spec is not None:
                batches.setdefault(name, [])
        for (name, _), example in kept.items():
            batches[name].append(example)
        for examples in batches.values():
            examples.sort(key=lambda e: e.metadata["original_timestamp_ms"])
        report.stopped = f"read {len(self.files)} file(s) to the end"
        self._hint(report, len(kept))
        return batches

    # -- pass 1: the feedback index ---------------------------------------------------------------
    def _index_feedback(self, report: CollectionReport, progress: ProgressFn, total: int
                        ) -> dict[str, list[Any]]:
        feedback: dict[str, list[Any]] = {}  # request_id → [timestamp_ms, score, correction, matched]
        per_key: dict[str, int] = {}  # sender → requests its feedback labels (bounded by max_feedback_per_key)
        done = 0
        for path in self.files:
            for number, raw in _lines(path, None, lambda pos, base=done: progress(base + pos, total, "feedback")):
                if b"feedback" not in raw:
                    continue
                try:
                    data = orjson.loads(raw)
                except orjson.JSONDecodeError:
                    continue  # counted as malformed by the second pass
                if not isinstance(data, dict) or data.get("record") != FeedbackRecord.RECORD:
                    continue
                try:
                    record = FeedbackRecord.from_dict(data)
                except ValueError as exc:
                    self._bad(report, "invalid_records", f"{path.name}:{number}: {exc}")
                    continue
                report.counts["feedback_records"] += 1
                if self.signature is not None and record.signature not in (self.signature, ""):
                    continue
                previous = feedback.get(record.request_id)
                if previous is not None:
                    report.count("feedback_superseded")
                    if previous[0] > record.timestamp_ms:
                        continue
                elif self.max_feedback_per_key is not None and record.principal is not None:
                    if per_key.get(record.principal, 0) >= self.max_feedback_per_key:
                        report.count("feedback_over_key_bound")
                        continue
                    per_key[record.principal] = per_key.get(record.principal, 0) + 1
                feedback[record.request_id] = [record.timestamp_ms, record.score, record.correction, False]
            done += _size(path)
        return feedback

    # -- pass 2: one call ------------------------------------------------------------------------
    def _judge(self, call: InteractionLog, feedback: dict[str, list[Any]], specs: dict[str, ProgramSpec | None],
               kept: dict[tuple[str, str], ExampleRecord], report: CollectionReport) -> None:
        entry = feedback.get(call.request_id) if call.request_id else None
        if entry is not None:
            entry[3] = True
        if self.signature is not None and call.signature != self.signature:
            report.skip("other_signature")
            return
        if call.arm == "shadow":  # a candidate's unseen answer: the feedback on this request judged production's
            report.skip("shadow_call")
            return
        spec = self._spec(call.signature, specs, report)
        if spec is None:
            report.skip("unregistered_signature")
            return
        if not call.success:
            report.skip("failed_call")
            return
        if self.max_latency_ms is not None and call.latency_ms is not None and call.latency_ms > self.max_latency_ms:
            report.skip("too_slow")
            return
        if self.max_cost_usd is not None and call.cost_usd is not None and call.cost_usd > self.max_cost_usd:
            report.skip("too_expensive")
            return
        if self._since_ms is not None and call.timestamp_ms < self._since_ms:
            report.skip("before_since")
            return
        schema = spec.schema
        try:
            inputs = schema.validate_inputs(call.input)
        except InputValidationError as exc:
            report.skip("invalid_input", f"request {call.request_id}: {exc}")
            return
        if entry is None:
            report.skip("no_feedback")
            return
        score, correction = entry[1], entry[2]
        if correction is not None:
            try:
                outputs = schema.validate_outputs(correction)
            except InputValidationError as exc:
                report.skip("invalid_correction", f"request {call.request_id}: {_short(correction)}: {exc}")
                return
            label_from = "correction"
        elif score >= self.min_quality_score:
            try:
                outputs = schema.validate_outputs(call.output)
            except InputValidationError as exc:
                report.skip("invalid_output", f"request {call.request_id}: {_short(call.output)}: {exc}")
                return
            label_from = "output"
        else:
            report.skip("low_score")
            return
        key = (call.signature, input_hash(inputs))
        existing = kept.get(key)
        if existing is not None:
            report.skip("duplicate")
            if existing.metadata["original_timestamp_ms"] <= call.timestamp_ms:
                return
            report.count(f"label_from_{existing.metadata['label_from']}", -1)  # an older call replaces it
        values = {**inputs, **outputs}
        example = ExampleRecord(
            values=values, signature=call.signature, source=self.source,
            timestamp=datetime.fromtimestamp(call.timestamp_ms / 1000, UTC).isoformat(timespec="seconds"),
            category=spec.category(values),
            metadata={"request_id": call.request_id, "original_timestamp_ms": call.timestamp_ms,
                      "latency_ms": call.latency_ms, "cost_usd": call.cost_usd, "model": call.model,
                      "module_version": call.module_version, "arm": call.arm, "feedback_score": score,
                      "label_from": label_from,
                      # the keyed pseudonym of the call's user (right to deletion finds the example by it)
                      **({"user_pseudonym": call.user_pseudonym} if call.user_pseudonym else {})},
        )
        example.ensure_id(schema)
        kept[key] = example
        report.count(f"label_from_{label_from}")

    def _spec(self, name: str, specs: dict[str, ProgramSpec | None], report: CollectionReport
              ) -> ProgramSpec | None:
        if name not in specs:
            specs[name] = self.registry.get(name) if name in self.registry else None
            if specs[name] is None:
                report.error(f"unregistered_signature: '{name}' is in the logs but no program is registered under it")
        return specs[name]

    @staticmethod
    def _bad(report: CollectionReport, key: str, message: str) -> None:
        report.counts[key] += 1
        report.error(message)

    def _hint(self, report: CollectionReport, collected: int) -> None:
        skipped = report.skipped
        if report.counts["interactions"] == 0:
            report.hints.append("no calls in the logs: is telemetry enabled and sampling (telemetry.sampling_rate)?")
        if skipped["no_feedback"] + skipped["low_score"] > collected:
            report.hints.append("most calls have no usable label: send feedback (runtime.feedback / POST "
                                "/v1/feedback) or lower --min-quality-score")
        if skipped["too_slow"] + skipped["too_expensive"] > collected:
            report.hints.append("many calls are over the limits: check --max-latency-ms / --max-cost-usd")
        if skipped["duplicate"] > collected:
            report.hints.append("most labelled calls repeat an input: usage is repetitive; consider synthetic data")


def _short(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= 120 else text[:117] + "..."


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _lines(path: Path, report: CollectionReport | None, progress: Any) -> Iterator[tuple[int, bytes]]:
    """Numbered raw lines of a plain or ``.gz`` file, reporting the bytes read on disk as it goes.

    A file that cannot be opened is counted as unreadable; a truncated ``.gz`` or a read error ends
    the file as one malformed line (counted once, in the pass given ``report``).
    """
    number = 0
    try:
        fh = open(path, "rb")  # noqa: SIM115 (closed below)
    except OSError as exc:
        if report is not None:
            report.count("unreadable_files")
            report.error(f"{path}: cannot be read: {exc}")
        return
    try:
        with fh:
            reader = gzip.GzipFile(fileobj=fh, mode="rb") if path.name.endswith(".gz") else fh
            with reader:
                for number, raw in enumerate(reader, start=1):
                    if number % _PROGRESS_EVERY == 0:
                        progress(fh.tell())
                    yield number, raw
                progress(fh.tell())
    except (EOFError, gzip.BadGzipFile, OSError) as exc:
        if report is not None:
            report.counts["malformed_lines"] += 1
            report.error(f"{path.name}: unreadable past line {number}: {exc}")
