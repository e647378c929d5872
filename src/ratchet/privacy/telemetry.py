"""A user's telemetry: found by pseudonym, removed from every log file (active, rotated, ``.gz``) by rewriting it.

Finding reads every file once and parses only the lines that hold the pseudonym's bytes. Removing
drops a line when its record carries the user's pseudonym, or carries none and has one of the
user's request ids (feedback records, shadow calls and records written before pseudonyms existed);
a record with another user's pseudonym is never removed. A line that is not a JSON object is kept
and counted, unless it holds the pseudonym or one of the request ids as bytes (a torn record of the
user's), which is removed.

A file with something to remove is rewritten atomically (:func:`ratchet.store.atomic.atomic_write_bytes`:
temp file, fsync, rename), keeping its mode and, for rotated files, its modification time (retention
ages the data, not the copy); a crash at any point leaves the old file whole. The active file is
rewritten under the EXCLUSIVE telemetry lock, so no append is lost; a rotated file under an exclusive
``flock`` on itself, like compression takes (:mod:`ratchet.telemetry.rotation`).
"""

from __future__ import annotations

import contextlib
import fcntl
import gzip
import io
import os
from collections import Counter
from collections.abc import Collection, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from ratchet.store.atomic import atomic_write_bytes
from ratchet.telemetry.logfiles import ACTIVE_NAME, locked, rotated_files

__all__ = ["TelemetryPurge", "UserTraces", "find_user_requests", "note_records", "purge_telemetry"]


@dataclass
class UserTraces:
    """What the telemetry says about one user: their request ids and the inputs of their calls."""

    request_ids: set[str] = field(default_factory=set)
    inputs: list[dict[str, Any]] = field(default_factory=list)
    files: int = 0


@dataclass
class TelemetryPurge:
    """What :func:`purge_telemetry` removed (by kind), kept, and which files it rewrote."""

    removed: Counter[str] = field(default_factory=Counter)  # interactions, shadow, feedback, malformed
    malformed_kept: int = 0
    files_scanned: int = 0
    files_rewritten: int = 0
    truncated_files: list[str] = field(default_factory=list)


def log_files(directory: Path) -> list[Path]:
    """Every telemetry file: rotated ones (both copies of one being compressed) oldest first, then the active."""
    files = rotated_files(directory)
    if (directory / ACTIVE_NAME).exists():
        files.append(directory / ACTIVE_NAME)
    return files


def find_user_requests(directory: Path, pseudonyms: Collection[str]) -> UserTraces:
    """The request ids (and call inputs) of the records carrying one of ``pseudonyms`` in every telemetry file."""
    traces = UserTraces()
    needles = [p.encode("ascii") for p in pseudonyms]
    for path in log_files(Path(directory)):
        traces.files += 1
        with contextlib.suppress(FileNotFoundError):  # compressed or expired meanwhile: the .gz is listed too
            lines, _complete = _read_lines(path)
            for raw in lines:
                if not any(needle in raw for needle in needles):
                    continue
                record = _parse(raw)
                if record is not None and record.get("user_pseudonym") in pseudonyms:
                    _note(traces, record)
    return traces


def purge_telemetry(directory: Path, pseudonyms: Collection[str], request_ids: set[str],
                    traces: UserTraces | None = None) -> TelemetryPurge:
    """Remove the user's records from every telemetry file of ``directory`` (see the module docstring).

    ``traces``, when given, also collects the inputs of the calls removed (for finding demos).
    """
    directory = Path(directory)
    result = TelemetryPurge()
    needles = [*(p.encode("ascii") for p in pseudonyms), *(orjson.dumps(rid) for rid in request_ids)]
    pending = log_files(directory)
    seen: set[Path] = set()
    while pending:
        path = pending.pop(0)
        if path in seen:
            continue
        seen.add(path)
        try:
            _purge_file(directory, path, pseudonyms, request_ids, needles, result, traces)
        except FileNotFoundError:  # compressed meanwhile: its .gz holds the same lines
            gz = path.with_name(path.name + ".gz")
            if not path.name.endswith(".gz") and path.name != ACTIVE_NAME and gz.exists():
                pending.append(gz)
    return result


def _purge_file(directory: Path, path: Path, pseudonyms: Collection[str], request_ids: set[str], needles: list[bytes],
                result: TelemetryPurge, traces: UserTraces | None) -> None:
    with _exclusive(directory, path):
        st = os.stat(path)
        lines, complete = _read_lines(path)
        result.files_scanned += 1
        kept: list[bytes] = []
        removed: Counter[str] = Counter()
        malformed_kept = 0
        for raw in lines:
            if not raw.strip():
                kept.append(raw)
                continue
            record = _parse(raw)
            if record is None:
                if any(needle in raw for needle in needles):
                    removed["malformed"] += 1
                else:
                    kept.append(raw)
                    malformed_kept += 1
                continue
            kind = _user_record(record, pseudonyms, request_ids)
            if kind is None:
                kept.append(raw)
                continue
            removed[kind] += 1
            if traces is not None:
                _note(traces, record)
        result.malformed_kept += malformed_kept
        if not removed:
            return
        data = b"".join(kept)
        if path.name.endswith(".gz"):
            data = _gzip(data, path.name.removesuffix(".gz"), int(st.st_mtime))
        atomic_write_bytes(path, data, mode=st.st_mode & 0o777)
        if path.name != ACTIVE_NAME:
            os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))  # retention ages the data, not the copy
        result.files_rewritten += 1
        result.removed.update(removed)
        if not complete:
            result.truncated_files.append(path.name)


def _user_record(record: dict[str, Any], pseudonyms: Collection[str], request_ids: set[str]) -> str | None:
    """The kind of the users' record (``interactions``, ``shadow``, ``feedback``), or None when it is not theirs."""
    owner = record.get("user_pseudonym")
    if owner not in pseudonyms and (owner is not None or record.get("request_id") not in request_ids):
        return None
    if record.get("record") == "feedback":
        return "feedback"
    return "shadow" if record.get("arm") == "shadow" else "interactions"


def note_records(traces: UserTraces, records: Iterable[dict[str, Any]]) -> None:
    """Add the request ids and call inputs of ``records`` (the user's, found elsewhere: the shared sink)."""
    for record in records:
        _note(traces, record)


def _note(traces: UserTraces, record: dict[str, Any]) -> None:
    request_id = record.get("request_id")
    if isinstance(request_id, str) and request_id:
        traces.request_ids.add(request_id)
    inputs = record.get("input")
    interaction = record.get("record", "interaction") == "interaction"
    if interaction and isinstance(inputs, dict) and inputs and inputs not in traces.inputs:
        traces.inputs.append(inputs)


@contextlib.contextmanager
def _exclusive(directory: Path, path: Path) -> Iterator[None]:
    """No writer touches ``path`` in the block: the telemetry lock for the active file, ``flock`` on a rotated one."""
    if path.name == ACTIVE_NAME:
        with locked(directory, fcntl.LOCK_EX):
            yield
        return
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # waits for a compression of this file to finish
        if os.fstat(fd).st_ino != os.stat(path).st_ino:  # compressed (and replaced) while we waited
            raise FileNotFoundError(path)
        yield
    finally:
        os.close(fd)


def _read_lines(path: Path) -> tuple[list[bytes], bool]:
    """The raw lines of a plain or ``.gz`` file, and whether it was read to its end (a truncated ``.gz`` is not)."""
    with open(path, "rb") as fh:
        if not path.name.endswith(".gz"):
            return fh.read().splitlines(keepends=True), True
        lines: list[bytes] = []
        try:
            with gzip.GzipFile(fileobj=fh, mode="rb") as gz:
                lines.extend(gz)
        except (EOFError, gzip.BadGzipFile, OSError):
            return lines, False
        return lines, True


def _parse(raw: bytes) -> dict[str, Any] | None:
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None


def _gzip(data: bytes, name: str, mtime: int) -> bytes:
    buffer = io.BytesIO()
    with gzip.GzipFile(filename=name, mode="wb", fileobj=buffer, compresslevel=6, mtime=mtime) as gz:
        gz.write(data)
    return buffer.getvalue()
