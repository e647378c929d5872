"""Git mappers: how a commit becomes an example of a signature.

A mapper is registered per signature and turns one :class:`Commit` into the example's
field values, or skips it::

    @ratchet.git_mapper("classify_commit")
    def conventional_commit(commit: Commit) -> dict | None:
        ...   # {"subject": ..., "type": ...}; None (or raise SkipCommit("reason")) skips the commit

A mapper may also return a :class:`MappedCommit` to add provenance metadata or to set
the example's category or difficulty itself. Ratchet ships the ``classify_commit``
mapper: Conventional Commits subjects, strictly.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ratchet.errors import DataError, RegistryError

__all__ = [
    "CONVENTIONAL_TYPES",
    "Commit",
    "FileChange",
    "GitMapper",
    "MappedCommit",
    "SkipCommit",
    "conventional_commit",
    "get_git_mapper",
    "git_mapper",
    "git_mappers",
    "parse_conventional",
]


@dataclass(frozen=True)
class FileChange:
    """One file of a commit's ``--numstat``; ``added``/``deleted`` are None for a binary file."""

    path: str
    added: int | None
    deleted: int | None

    @property
    def binary(self) -> bool:
        return self.added is None


@dataclass(frozen=True)
class Commit:
    """A commit as ``git log`` shows it. Only the author's name is read: an e-mail address is PII."""

    sha: str
    author: str
    timestamp: datetime
    parents: tuple[str, ...]
    subject: str
    body: str = ""
    files: tuple[FileChange, ...] = ()

    @property
    def message(self) -> str:
        return f"{self.subject}\n\n{self.body}".strip() if self.body.strip() else self.subject.strip()

    @property
    def is_merge(self) -> bool:
        return len(self.parents) > 1

    @property
    def files_changed(self) -> int:
        return len(self.files)

    @property
    def insertions(self) -> int:
        return sum(f.added or 0 for f in self.files)

    @property
    def deletions(self) -> int:
        return sum(f.deleted or 0 for f in self.files)


@dataclass
class MappedCommit:
    """A mapper's full answer: the example's values plus metadata (and optional category/difficulty)."""

    values: dict[str, Any]
    metadata: dict[str, Any] = field(default_factory=dict)
    category: str | None = None
    difficulty: str | None = None


class SkipCommit(Exception):
    """Raised by a mapper to skip a commit; the reason is counted in the collection report."""

    def __init__(self, reason: str, detail: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.detail = detail


GitMapper = Callable[[Commit], "dict[str, Any] | MappedCommit | None"]

_MAPPERS: dict[str, GitMapper] = {}
_LOCK = threading.Lock()


def _source(fn: Any) -> str:
    return f"{getattr(fn, '__module__', '?')}:{getattr(fn, '__qualname__', repr(fn))}"


def git_mapper(signature: str) -> Callable[[GitMapper], GitMapper]:
    """Register the function that turns a commit into an example of ``signature`` (one per signature)."""
    if not isinstance(signature, str) or not signature:
        raise RegistryError(f"git_mapper needs a signature name, got {signature!r}")

    def decorator(fn: GitMapper) -> GitMapper:
        if not callable(fn):
            raise RegistryError(f"git mapper for '{signature}' must be callable, got {fn!r}")
        with _LOCK:
            existing = _MAPPERS.get(signature)
            if existing is not None and _source(existing) != _source(fn):
                raise RegistryError(f"a git mapper for '{signature}' is already registered by {_source(existing)}; "
                                    f"{_source(fn)} cannot register another")
            _MAPPERS[signature] = fn
        return fn

    return decorator


def git_mappers() -> dict[str, GitMapper]:
    """The registered mappers by signature."""
    with _LOCK:
        return dict(_MAPPERS)


def get_git_mapper(signature: str) -> GitMapper:
    """The mapper of ``signature``; a :class:`DataError` naming the registered ones when there is none."""
    with _LOCK:
        mapper = _MAPPERS.get(signature)
        known = ", ".join(sorted(_MAPPERS)) or "none"
    if mapper is None:
        raise DataError(f"no git mapper for signature '{signature}' (registered: {known}); "
                        f"register one with @ratchet.git_mapper({signature!r})")
    return mapper


# -- Conventional Commits (https://www.conventionalcommits.org) ---------------------------------

CONVENTIONAL_TYPES = ("feat", "fix", "docs", "style", "refactor", "perf", "test", "build", "ci", "chore", "revert")
_HEADER = re.compile(r"^(?P<type>[A-Za-z]+)(?:\((?P<scope>[^()\r\n]+)\))?(?P<bang>!)?: (?P<subject>.*)$")
_BREAKING_FOOTER = re.compile(r"^BREAKING[ -]CHANGE: ", re.MULTILINE)


def parse_conventional(subject: str, body: str = "") -> dict[str, Any]:
    """``type(scope)!: subject`` → ``{type, scope, breaking, subject}``; :class:`SkipCommit` when it is not one.

    Strict: the type is one of :data:`CONVENTIONAL_TYPES` (any case, reported lower-case);
    aliases such as ``feature`` or ``bugfix`` are refused (``unknown_type``). ``breaking`` is a
    ``!`` before the colon or a ``BREAKING CHANGE:`` footer.
    """
    match = _HEADER.match(subject.strip())
    if match is None:
        raise SkipCommit("not_conventional", f"{subject[:80]!r} is not 'type(scope): subject'")
    kind = match.group("type").lower()
    if kind not in CONVENTIONAL_TYPES:
        raise SkipCommit("unknown_type", f"{match.group('type')!r} is not one of {', '.join(CONVENTIONAL_TYPES)}")
    text = match.group("subject").strip()
    if not text:
        raise SkipCommit("empty_subject", f"{subject[:80]!r} has nothing after the type")
    scope = match.group("scope")
    return {"type": kind, "scope": scope.strip() if scope else None,
            "breaking": bool(match.group("bang")) or bool(_BREAKING_FOOTER.search(body)), "subject": text}


@git_mapper("classify_commit")
def conventional_commit(commit: Commit) -> MappedCommit:
    """``fix(parser): handle empty input`` → ``{"subject": "handle empty input", "type": "fix"}``."""
    parsed = parse_conventional(commit.subject, commit.body)
    return MappedCommit(values={"subject": parsed["subject"], "type": parsed["type"]},
                        metadata={"scope": parsed["scope"], "breaking": parsed["breaking"]})
