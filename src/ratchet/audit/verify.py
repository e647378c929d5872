"""``ratchet audit verify``: walk the whole chain and say where it is broken.

Found, each with the file and line: an edited entry (its content no longer matches its hash),
a removed, inserted or reordered entry (``seq`` jumps or goes back, ``prev_hash`` does not name
the entry before), a truncated file (a last line without its end), an unreadable line, a
deleted daily file (the next file's first entry does not chain to the file before), and a
cut-off end (``head.json`` records a later entry than the log holds). A clock that went back
is only a warning.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ratchet.audit.entry import FIELDS, GENESIS, entry_hash
from ratchet.audit.log import FILE_PATTERN, HEAD_FILENAME, AuditLog

__all__ = ["AuditFile", "AuditProblem", "AuditReport", "verify_audit"]


@dataclass
class AuditProblem:
    """One break of the chain (or, with ``warning``, something odd that breaks nothing)."""

    kind: str  # edited removed inserted truncated unreadable deleted_file cut_off head | warnings: clock stray
    file: str
    line: int | None
    message: str
    warning: bool = False

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line is not None else self.file
        return f"{where}: {self.message}"


@dataclass
class AuditFile:
    """One daily file: its entries and their seq range."""

    name: str
    entries: int = 0
    first_seq: int | None = None
    last_seq: int | None = None


@dataclass
class AuditReport:
    """What ``verify_audit`` found."""

    directory: Path
    files: list[AuditFile] = field(default_factory=list)
    entries: int = 0
    last_seq: int = 0
    last_hash: str = GENESIS
    head: dict[str, Any] | None = None
    problems: list[AuditProblem] = field(default_factory=list)

    @property
    def errors(self) -> list[AuditProblem]:
        return [p for p in self.problems if not p.warning]

    @property
    def ok(self) -> bool:
        return not self.errors

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "directory": str(self.directory), "entries": self.entries, "last_seq": self.last_seq,
                "last_hash": self.last_hash, "head": self.head, "files": [asdict(f) for f in self.files],
                "problems": [{**asdict(p), "text": str(p)} for p in self.problems]}


class _Walk:
    """The state carried from one entry to the next."""

    def __init__(self, report: AuditReport) -> None:
        self.report = report
        self.seq, self.hash, self.ts = 0, GENESIS, 0.0
        self.previous_file: str | None = None
        self.after_bad_line = False
        self.hashes: dict[int, str] = {}

    def problem(self, kind: str, file: str, line: int | None, message: str, *, warning: bool = False) -> None:
        self.report.problems.append(AuditProblem(kind, file, line, message, warning))

    def line(self, summary: AuditFile, number: int, raw: bytes, *, first_of_file: bool) -> None:
        name = summary.name
        if not raw.endswith(b"\n"):
            self.problem("truncated", name, number, "the last line is cut off (no line end): the file was truncated "
                         "or a write was interrupted")
            self.after_bad_line = True
            return
        try:
            entry = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            self.problem("unreadable", name, number, f"not a JSON entry ({exc})")
            self.after_bad_line = True
            return
        if not isinstance(entry, dict) or not isinstance(entry.get("seq"), int) or \
                not isinstance(entry.get("hash"), str) or set(entry) != set(FIELDS):
            self.problem("unreadable", name, number, "not an audit entry (fields missing or unknown)")
            self.after_bad_line = True
            return
        seq = entry["seq"]
        if entry_hash(entry) != entry["hash"]:
            self.problem("edited", name, number, f"entry seq {seq} does not match its hash: it was edited after it "
                         "was written")
        moves_on = self._chain(entry, name, number, first_of_file)
        if isinstance(entry.get("ts"), int | float):
            if entry["ts"] < self.ts:
                self.problem("clock", name, number, f"entry seq {seq} is dated before the entry preceding it "
                             "(the clock went back?)", warning=True)
            self.ts = entry["ts"]
        summary.entries += 1
        summary.first_seq = seq if summary.first_seq is None else summary.first_seq
        summary.last_seq = seq
        self.report.entries += 1
        self.hashes.setdefault(seq, entry["hash"])
        self.after_bad_line = False
        if moves_on:
            self.seq, self.hash = seq, entry["hash"]

    def _chain(self, entry: dict[str, Any], name: str, number: int, first_of_file: bool) -> bool:
        """Report where ``entry`` breaks the chain; whether the chain goes on from it (not from an entry that
        goes back in the sequence: the next one is checked against the entry before it)."""
        seq, expected = entry["seq"], self.seq + 1
        chained = entry["prev_hash"] == self.hash
        if seq == expected and chained:
            return True
        if self.after_bad_line and seq == expected + 1:  # the unreadable line above was the missing entry
            return True
        if seq <= self.seq:
            self.problem("inserted", name, number, f"entry seq {seq} comes after seq {self.seq}: an entry was "
                         "inserted, duplicated or moved (the sequence must rise by one)")
            return False
        if first_of_file and self.previous_file is not None and seq > expected:
            self.problem("deleted_file", name, number, f"the file starts at seq {seq} but {self.previous_file} ends "
                         f"at seq {self.seq}: {_missing(expected, seq - 1)} (a daily file was deleted?)")
        elif seq > expected:
            where = "at the start of the log" if self.previous_file is None and first_of_file else "before it"
            self.problem("removed", name, number, f"{_missing(expected, seq - 1)} {where} (removed)")
        else:
            after = f"the last entry of {self.previous_file}" if first_of_file and self.previous_file \
                else f"entry seq {self.seq}"
            self.problem("removed" if first_of_file else "inserted", name, number,
                         f"entry seq {seq} does not chain to {after} (prev_hash differs): an entry was replaced, "
                         "reordered or removed")
        return True


def _missing(first: int, last: int) -> str:
    return f"entry {first} is missing" if first == last else f"entries {first}–{last} are missing"


def verify_audit(home: Path) -> AuditReport:
    """Check the audit log of ``home`` from its first entry to ``head.json``."""
    log = AuditLog(home)
    report = AuditReport(log.directory)
    walk = _Walk(report)
    for path in log.files():
        summary = AuditFile(path.name)
        report.files.append(summary)
        lines = path.read_bytes().splitlines(keepends=True)
        for number, raw in enumerate(lines, start=1):
            if raw.strip():
                walk.line(summary, number, raw, first_of_file=summary.entries == 0 and not walk.after_bad_line)
        if not lines:
            walk.problem("truncated", path.name, None, "the file is empty: its entries were removed")
        walk.previous_file = path.name
    report.last_seq, report.last_hash = walk.seq, walk.hash
    _check_head(log, report, walk)
    _check_strays(log, walk)
    return report


def _check_head(log: AuditLog, report: AuditReport, walk: _Walk) -> None:
    try:
        head = log.read_head()
    except ValueError as exc:
        walk.problem("head", HEAD_FILENAME, None, str(exc))
        return
    report.head = head
    if head is None:
        if report.entries:
            walk.problem("head", HEAD_FILENAME, None, "missing: whether entries were cut off the end cannot be told")
        return
    if head["seq"] > walk.seq:
        walk.problem("cut_off", HEAD_FILENAME, None, f"records entry seq {head['seq']} ({head.get('file')}) but the "
                     f"log ends at seq {walk.seq}: the newest entries were removed (a truncated or deleted file)")
    elif walk.hashes.get(head["seq"]) != head["hash"]:
        walk.problem("cut_off", HEAD_FILENAME, None, f"records a different entry seq {head['seq']} than the log "
                     "holds: the end of the log was replaced")


def _check_strays(log: AuditLog, walk: _Walk) -> None:
    """Files in the directory that look like a renamed or copied daily file are worth a warning."""
    if not log.directory.is_dir():
        return
    for path in sorted(log.directory.iterdir()):
        if path.name.startswith(".") or path.name == HEAD_FILENAME or FILE_PATTERN.match(path.name):
            continue
        walk.problem("stray", path.name, None, "not a daily audit file (audit-YYYY-MM-DD.jsonl): ignored",
                     warning=True)
