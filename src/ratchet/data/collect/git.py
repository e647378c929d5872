"""Git mining: commits, newest first, become examples through the signature's mapper (seed 001).

``git log --numstat`` is read as a stream and stopped once the target is reached. Each
commit is, in order: skipped when it is a merge (unless merges are included) or its message
is shorter than the minimum; mapped (:mod:`ratchet.data.collect.mappers`; a mapper may skip
it with a reason); validated against the program's schema; then dropped when it repeats a
kept example:

- *duplicate*: the same normalised input text (case-folded, punctuation and spacing removed);
- *near duplicate*: word-token Jaccard similarity ≥ 0.9 with an already kept example.

Difficulty comes from the size of the change (binary files count as files with no lines)::

    easy    ≤ 2 files changed and ≤ 30 lines added + deleted
    hard    ≥ 10 files changed or ≥ 300 lines added + deleted
    medium  everything in between

Provenance: sha, author *name* (never the e-mail: PII), timestamp, files changed,
insertions, deletions, plus what the mapper adds (scope, breaking).
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from ratchet.data.collect.base import CollectionReport, Collector, ProgressFn, plural
from ratchet.data.collect.mappers import Commit, FileChange, MappedCommit, SkipCommit, get_git_mapper
from ratchet.data.records import ExampleRecord
from ratchet.errors import DataError, InputValidationError
from ratchet.programs.registry import ProgramRegistry

__all__ = ["GitCollector", "NearDuplicateFilter", "change_difficulty", "check_repository", "iter_commits"]

_FORMAT = "%x1e%H%x1f%an%x1f%aI%x1f%P%x1f%s%x1f%b%x1f"
_RS, _US = b"\x1e", "\x1f"
_NOT_A_WORD = re.compile(r"[\W_]+")


def change_difficulty(files_changed: int, lines_changed: int) -> str:
    """``easy`` (≤ 2 files and ≤ 30 lines), ``hard`` (≥ 10 files or ≥ 300 lines), else ``medium``."""
    if files_changed >= 10 or lines_changed >= 300:
        return "hard"
    if files_changed <= 2 and lines_changed <= 30:
        return "easy"
    return "medium"


def _git(repo: Path, *args: str) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, check=False,
                              env=_env())
    except FileNotFoundError:
        raise DataError("git is not installed (collect git runs `git log`)") from None


def _env() -> dict[str, str]:
    return {**os.environ, "GIT_PAGER": "cat", "LC_ALL": "C"}


def _commit_count(repo: Path) -> int:
    done = _git(repo, "rev-list", "--count", "HEAD")
    return int(done.stdout.strip()) if done.returncode == 0 and done.stdout.strip().isdigit() else 0


def check_repository(repo: Path) -> bool:
    """Check that ``repo`` is a git repository; True when it has at least one commit."""
    repo = Path(repo)
    if not repo.is_dir():
        raise DataError(f"{repo}: no such directory (--repo-path must be a git repository)")
    probe = _git(repo, "rev-parse", "--git-dir")
    if probe.returncode != 0:
        reason = (probe.stderr.strip().splitlines() or ["git rev-parse failed"])[-1]
        raise DataError(f"{repo} is not a git repository ({reason.removeprefix('fatal: ')})")
    return _git(repo, "rev-parse", "--verify", "--quiet", "HEAD").returncode == 0


def iter_commits(repo: Path, *, since: datetime | None = None) -> Iterator[Commit]:
    """Commits reachable from HEAD, newest first, with their ``--numstat``; stops ``git`` when closed early."""
    args = ["git", "-C", str(repo), "-c", "log.showSignature=false", "log", "--no-color", "--encoding=UTF-8",
            "--numstat", f"--format={_FORMAT}"]
    if since is not None:
        args.append(f"--since={since.isoformat(timespec='seconds')}")
    with tempfile.TemporaryFile() as errors:
        try:
            proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=errors, env=_env())
        except FileNotFoundError:
            raise DataError("git is not installed (collect git runs `git log`)") from None
        finished = False
        try:
            assert proc.stdout is not None
            chunk: list[bytes] = []
            for line in proc.stdout:
                if line.startswith(_RS) and chunk:
                    yield _parse(b"".join(chunk))
                    chunk = []
                chunk.append(line)
            if chunk:
                yield _parse(b"".join(chunk))
            finished = True
        finally:
            if not finished:
                proc.kill()
            proc.stdout.close()  # type: ignore[union-attr]
            code = proc.wait()
        if finished and code != 0:
            errors.seek(0)
            message = errors.read().decode("utf-8", "replace").strip().splitlines() or [f"exit code {code}"]
            raise DataError(f"git log failed in {repo}: {message[-1]}")


def _parse(raw: bytes) -> Commit:
    text = raw.decode("utf-8", "replace").lstrip("\x1e")
    parts = text.split(_US, 6)
    if len(parts) < 7:
        raise DataError(f"unexpected git log output: {text[:80]!r}")
    sha, author, date, parents, subject, body, tail = parts
    files = []
    for line in tail.splitlines():
        fields = line.split("\t", 2)
        if len(fields) != 3:
            continue
        added, deleted, path = fields
        binary = added == "-" or deleted == "-"  # numstat shows binary files as "-\t-\tpath"
        files.append(FileChange(path=path, added=None if binary else int(added),
                                deleted=None if binary else int(deleted)))
    return Commit(sha=sha, author=author, timestamp=datetime.fromisoformat(date), parents=tuple(parents.split()),
                  subject=subject, body=body.strip(), files=tuple(files))


class NearDuplicateFilter:
    """Exact (normalised text) and near (word-token Jaccard ≥ ``threshold``) duplicates of kept texts."""

    def __init__(self, threshold: float = 0.9) -> None:
        self.threshold = threshold
        self._exact: set[str] = set()
        self._tokens: list[frozenset[str]] = []

    @staticmethod
    def normalise(text: str) -> str:
        return _NOT_A_WORD.sub(" ", text.casefold()).strip()

    def check(self, text: str) -> str | None:
        """``"duplicate"``, ``"near_duplicate"`` or None (new: remember it)."""
        norm = self.normalise(text)
        if norm in self._exact:
            return "duplicate"
        tokens = frozenset(norm.split())
        if tokens:
            for other in self._tokens:
                small, large = sorted((len(tokens), len(other)))
                if small < self.threshold * large:
                    continue  # Jaccard ≤ |small| / |large|: cannot reach the threshold
                if len(tokens & other) / len(tokens | other) >= self.threshold:
                    return "near_duplicate"
            self._tokens.append(tokens)
        self._exact.add(norm)
        return None


class GitCollector(Collector):
    """Mine a repository's history for examples of one signature (default ``classify_commit``)."""

    source = "git"

    def __init__(self, repo_path: Path, registry: ProgramRegistry, *, signature: str = "classify_commit",
                 target: int = 30, since_days: float | None = 90, include_merges: bool = False,
                 min_message_length: int = 10, near_duplicate_threshold: float = 0.9,
                 now: datetime | None = None) -> None:
        if target < 1:
            raise DataError(f"target must be at least 1, got {target}")
        self.repo_path = Path(repo_path)
        self.spec = registry.get(signature)
        self.mapper = get_git_mapper(signature)
        self.signature = signature
        self.target = target
        self.since_days = since_days
        self.include_merges = include_merges
        self.min_message_length = min_message_length
        self.near_duplicate_threshold = near_duplicate_threshold
        self.since = None if since_days is None else (now or datetime.now(UTC)) - timedelta(days=since_days)
        self.has_commits = check_repository(self.repo_path)

    def parameters(self) -> dict[str, Any]:
        since = None if self.since is None else self.since.isoformat(timespec="seconds")
        return {"repo_path": str(self.repo_path.resolve()), "signature": self.signature, "target": self.target,
                "since_days": self.since_days, "since": since,
                "include_merges": self.include_merges, "min_commit_message_length": self.min_message_length,
                "near_duplicate_threshold": self.near_duplicate_threshold}

    def run(self, report: CollectionReport, progress: ProgressFn) -> dict[str, list[ExampleRecord]]:
        kept: list[ExampleRecord] = []
        seen = NearDuplicateFilter(self.near_duplicate_threshold)
        by_category: Counter[str] = Counter()
        by_difficulty: Counter[str] = Counter()
        progress(0, self.target, "")
        commits = iter_commits(self.repo_path, since=self.since) if self.has_commits else iter(())
        try:
            for commit in commits:
                report.examined += 1
                example = self._example(commit, seen, report)
                if example is None:
                    continue
                kept.append(example)
                by_category[str(example.category)] += 1
                by_difficulty[str(example.difficulty)] += 1
                progress(len(kept), self.target, f"{plural(report.examined, 'commit')} read")
                if len(kept) >= self.target:
                    break
        finally:
            close = getattr(commits, "close", None)
            if close is not None:
                close()
        report.counts.update(commits_read=report.examined, by_category=dict(by_category.most_common()),
                             by_difficulty={d: by_difficulty[d] for d in ("easy", "medium", "hard")})
        window = f"in the last {self.since_days:g} days" if self.since_days is not None else "in the history"
        if len(kept) >= self.target:
            report.stopped = f"target reached after {plural(report.examined, 'commit')}"
        elif not self.has_commits:
            report.stopped = "the repository has no commits"
        else:
            report.stopped = f"history exhausted: {plural(report.examined, 'commit')} {window}"
        self._hint(report, len(kept))
        return {self.signature: kept}

    def _example(self, commit: Commit, seen: NearDuplicateFilter, report: CollectionReport) -> ExampleRecord | None:
        short = commit.sha[:10]
        if commit.is_merge and not self.include_merges:
            report.skip("merge_commit")
            return None
        if len(commit.message) < self.min_message_length:
            report.skip("short_message")
            return None
        try:
            mapped = self.mapper(commit)
        except SkipCommit as skip:
            report.skip(skip.reason, None if skip.detail is None else f"{short}: {skip.detail}")
            return None
        except Exception as exc:  # a user's mapper: report it, do not stop mining
            report.skip("mapper_error", f"{short}: {type(exc).__name__}: {exc}")
            return None
        if mapped is None:
            report.skip("skipped_by_mapper")
            return None
        if isinstance(mapped, dict):
            mapped = MappedCommit(values=mapped)
        schema = self.spec.schema
        try:
            unknown = set(mapped.values) - set(schema.input_names) - set(schema.output_names)
            if unknown:
                raise InputValidationError(f"unknown field(s) {', '.join(sorted(unknown))}")
            inputs = schema.validate_inputs({k: v for k, v in mapped.values.items() if k in schema.input_names})
            outputs = schema.validate_outputs({k: v for k, v in mapped.values.items() if k in schema.output_names})
            if any(isinstance(v, str) and not v.strip() for v in inputs.values()):
                raise InputValidationError("an input field is empty")
        except InputValidationError as exc:
            report.skip("invalid_example", f"{short}: {exc}")
            return None
        verdict = seen.check(" ".join(str(v) for v in inputs.values()))
        if verdict is not None:
            report.skip(verdict)
            return None
        values = {**inputs, **outputs}
        example = ExampleRecord(
            values=values, signature=self.signature, source=self.source,
            timestamp=commit.timestamp.astimezone(UTC).isoformat(timespec="seconds"),
            difficulty=mapped.difficulty or change_difficulty(commit.files_changed,
                                                              commit.insertions + commit.deletions),
            category=mapped.category or self.spec.category(values),
            metadata={"sha": commit.sha, "author": commit.author, "timestamp": commit.timestamp.isoformat(),
                      "files_changed": commit.files_changed, "insertions": commit.insertions,
                      "deletions": commit.deletions, **mapped.metadata},
        )
        example.ensure_id(schema)
        return example

    def _hint(self, report: CollectionReport, collected: int) -> None:
        if collected >= self.target:
            return
        skipped = report.skipped
        window = f" since {self.since.date().isoformat()}" if self.since is not None else ""
        report.hints.append(f"short of the target by {self.target - collected}: the history{window} "
                            f"gave {plural(collected, 'usable commit')}")
        unconventional = skipped["not_conventional"] + skipped["unknown_type"] + skipped["empty_subject"]
        if unconventional:
            report.hints.append(f"{unconventional} of {plural(report.examined, 'commit')} are not Conventional Commits "
                                f"('type(scope): subject' with a standard type): mine another repository or top up "
                                f"with `ratchet collect synthetic`")
        total = _commit_count(self.repo_path) if self.has_commits else 0
        if self.since_days is not None and total > report.examined:
            report.hints.append(f"{total - report.examined} older commits: look further back, e.g. "
                                f"--since-days {self.since_days * 4:g}")
        elif total:
            report.hints.append(f"the whole history ({plural(total, 'commit')}) was read")
        if skipped["short_message"]:
            report.hints.append(f"{plural(skipped['short_message'], 'commit')} had messages shorter than "
                                f"--min-commit-message-length {self.min_message_length}")
        if skipped["merge_commit"]:
            report.hints.append(f"{plural(skipped['merge_commit'], 'merge commit')} skipped "
                                "(--include-merge-commits keeps them)")
