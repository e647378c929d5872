"""Program versions: optimized DSPy state per signature, fingerprinted.

Layout under the home directory::

    programs/<signature>/v1/program.json     DSPy JSON state (module.save)
    programs/<signature>/v1/metadata.json    fingerprint, lineage, optimizer, scores
    programs/<signature>/production.json     which version serves by default: a projection of the
    programs/<signature>/production_history.jsonl   state database (:mod:`ratchet.programs.production`)

``base`` is a built-in version of every signature: the registered factory as it
is (no demos, default instructions). It needs no files and is production until
another version is promoted.

With a PostgreSQL state database (several hosts) each saved version is also written to the
database, and a host that lacks one fetches it, checks its fingerprint and caches it here
(:mod:`ratchet.programs.version_rows`); with SQLite the files are all there is.
"""

from __future__ import annotations

import contextlib
import inspect
import json
import logging
import os
import re
import shutil
import uuid
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import dspy

from ratchet.errors import UnknownVersionError, VersionError, VersionIntegrityError
from ratchet.hashing import canonical_json, sha256_hex
from ratchet.programs.registry import ProgramSpec
from ratchet.programs.version_rows import VersionRows
from ratchet.store.atomic import atomic_write_json, fsync_dir
from ratchet.store.db import StateDB
from ratchet.store.jsonl import append_jsonl
from ratchet.store.private import PRIVATE_DIR, create_private, make_private_dir

__all__ = ["BASE_VERSION", "ProgramVersion", "VersionStore", "code_version", "fingerprint", "program_state"]

BASE_VERSION = "base"
log = logging.getLogger(__name__)
_VERSION_DIR = re.compile(r"^v(\d+)$")


def program_state(module: dspy.Module) -> dict[str, Any]:
    """Per-predictor DSPy state without runtime-only keys (lm, traces, train)."""
    state = {}
    for name, predictor in module.named_predictors():
        entry = dict(predictor.dump_state())
        for key in ("lm", "traces", "train"):
            entry.pop(key, None)
        state[name] = entry
    return state


def code_version(spec: ProgramSpec) -> str:
    """A hash of the program's code: the factory source and the signature's fields and types."""
    try:
        source = inspect.getsource(spec.factory)
    except (OSError, TypeError):
        source = spec.source
    fields = [(name, repr(info.annotation)) for name, info in spec.signature.fields.items()]
    return sha256_hex(canonical_json({"factory": source, "fields": fields}))[:16]


def fingerprint(state: dict[str, Any], *, code: str, lm: str, adapter: str, dspy_version: str) -> str:
    """SHA-256 identifying a program version: its state plus what renders its prompt."""
    return sha256_hex(canonical_json({"state": state, "code": code, "lm": lm, "adapter": adapter,
                                      "dspy": dspy_version}))


@dataclass
class ProgramVersion:
    """Metadata of one stored version."""

    signature: str
    version: str
    fingerprint: str
    created: str
    code_version: str
    lm: str
    adapter: str
    dspy_version: str
    parent: str | None = None
    dataset_version: str | None = None
    optimizer: str | None = None
    optimizer_params: dict[str, Any] = field(default_factory=dict)
    scores: dict[str, Any] = field(default_factory=dict)
    notes: str = ""
    edits: list[dict[str, Any]] = field(default_factory=list)  # changes after saving (demos removed on deletion)

    @property
    def number(self) -> int:
        match = _VERSION_DIR.match(self.version)
        return int(match.group(1)) if match else 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ProgramVersion:
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in data.items() if k in known})


class VersionStore:
    """Stored versions of every signature under ``<home>/programs`` (and, with PostgreSQL, in the database)."""

    def __init__(self, home: Path, db: StateDB | None = None) -> None:
        self.root = Path(home) / "programs"
        self.rows = VersionRows(db) if db is not None and VersionRows.shared(db) else None

    def _dir(self, signature: str) -> Path:
        return self.root / signature

    # -- writing ------------------------------------------------------------------------------
    def save(self, spec: ProgramSpec, module: dspy.Module, *, lm: str, adapter: str, parent: str | None = None,
             dataset_version: str | None = None, optimizer: str | None = None,
             optimizer_params: dict[str, Any] | None = None, scores: dict[str, Any] | None = None,
             notes: str = "") -> ProgramVersion:
        """Store ``module``'s state as the next version ``vN`` (atomically: readers never see half of it)."""
        sig_dir = make_private_dir(self._dir(spec.name))
        tmp = sig_dir / f".tmp-{uuid.uuid4().hex}"
        os.mkdir(tmp, PRIVATE_DIR)
        try:
            create_private(tmp / "program.json")  # DSPy writes into it, keeping its mode (demos are user text)
            module.save(str(tmp / "program.json"))
            saved = _read_json(tmp / "program.json")
            whole = dict(saved)
            saved.pop("metadata", None)
            code = code_version(spec)
            meta = ProgramVersion(
                signature=spec.name, version="", fingerprint=fingerprint(
                    _normalise(saved), code=code, lm=lm, adapter=adapter, dspy_version=dspy.__version__),
                created=datetime.now(UTC).isoformat(timespec="seconds"), code_version=code, lm=lm,
                adapter=adapter, dspy_version=dspy.__version__, parent=parent, dataset_version=dataset_version,
                optimizer=optimizer, optimizer_params=dict(optimizer_params or {}), scores=dict(scores or {}),
                notes=notes,
            )
            for _ in range(1000):
                meta.version = f"v{self._next_number(spec.name)}"
                atomic_write_json(tmp / "metadata.json", meta.to_dict())
                if self.rows is not None and not self.rows.claim(spec.name, meta.version, meta.fingerprint,
                                                                 meta.to_dict(), whole):
                    continue  # another host took the number
                try:
                    os.rename(tmp, sig_dir / meta.version)  # fails when another process took the number
                except OSError:
                    if self.rows is not None:
                        self.rows.forget(spec.name, meta.version)
                    continue
                fsync_dir(sig_dir)
                return meta
            raise VersionError(f"could not allocate a version number for '{spec.name}'")
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)

    def write_production_projection(self, signature: str, record: dict[str, Any], *, history: bool = True) -> None:
        """Write ``production.json`` (and append the history file) from a committed database change.

        Only :class:`ratchet.programs.production.ProductionPointers` calls this: the database decides.
        """
        make_private_dir(self._dir(signature))
        atomic_write_json(self._dir(signature) / "production.json", record)
        if history:
            append_jsonl(self._dir(signature) / "production_history.jsonl", [record])

    # -- reading ------------------------------------------------------------------------------
    def projected_production(self, signature: str) -> str:
        """What ``production.json`` says (``base`` without one). The truth is the database's pointer."""
        path = self._dir(signature) / "production.json"
        try:
            return str(_read_json(path)["version"])
        except FileNotFoundError:
            return BASE_VERSION
        except (KeyError, ValueError, TypeError) as exc:
            raise VersionError(f"{path}: unreadable production pointer: {exc}") from None

    def list(self, signature: str) -> list[ProgramVersion]:
        if self.rows is not None:  # every version the hosts share, cached here first
            for version in self.rows.names(signature):
                if not (self._dir(signature) / version / "metadata.json").is_file():
                    try:
                        self._fetch(signature, version)
                    except VersionIntegrityError as exc:  # listed without it; loading it says why
                        log.error("%s", exc)
        sig_dir = self._dir(signature)
        if not sig_dir.is_dir():
            return []
        versions = []
        for entry in sig_dir.iterdir():
            if entry.is_dir() and _VERSION_DIR.match(entry.name):
                try:
                    versions.append(ProgramVersion.from_dict(_read_json(entry / "metadata.json")))
                except (OSError, ValueError, TypeError):
                    continue
        return sorted(versions, key=lambda v: v.number)

    def exists(self, signature: str, version: str) -> bool:
        """Whether ``version`` is here, or could be fetched from the shared database (and now is)."""
        return (version == BASE_VERSION or (self._dir(signature) / version / "metadata.json").is_file()
                or self._fetch(signature, version))

    def get(self, signature: str, version: str) -> ProgramVersion:
        path = self._dir(signature) / version / "metadata.json"
        if not _VERSION_DIR.match(version) or not (path.is_file() or self._fetch(signature, version)):
            known = ", ".join([BASE_VERSION] + [v.version for v in self.list(signature)])
            raise UnknownVersionError(f"signature '{signature}' has no version '{version}' (known: {known})")
        try:
            return ProgramVersion.from_dict(_read_json(path))
        except (OSError, ValueError, TypeError) as exc:
            raise VersionError(f"{path}: unreadable version metadata: {exc}") from None

    def state(self, signature: str, version: str) -> dict[str, Any]:
        """The stored per-predictor state of a version (normalised like :func:`program_state`)."""
        saved = _read_json(self._dir(signature) / version / "program.json")
        saved.pop("metadata", None)
        return _normalise(saved)

    def load(self, spec: ProgramSpec, version: str) -> dspy.Module:
        """A fresh module with ``version``'s state; refuses a file that does not match its fingerprint."""
        module = spec.build()
        if version == BASE_VERSION:
            return module
        meta = self.get(spec.name, version)
        path = self._dir(spec.name) / version / "program.json"
        try:
            state = self.state(spec.name, version)
        except (OSError, ValueError) as exc:
            raise VersionIntegrityError(f"{path}: unreadable program state: {exc}") from None
        actual = fingerprint(state, code=meta.code_version, lm=meta.lm, adapter=meta.adapter,
                             dspy_version=meta.dspy_version)
        if actual != meta.fingerprint:
            raise VersionIntegrityError(
                f"{path}: state does not match the fingerprint recorded for {spec.name} {version} "
                f"({actual[:12]} ≠ {meta.fingerprint[:12]}); refusing to load it"
            )
        module.load(str(path))
        return module

    def remove_demos(self, signature: str, version: str, match: Callable[[dict[str, Any]], bool], *,
                     edit: dict[str, Any]) -> int:
        """Drop the demos ``match`` selects from a stored version (right to deletion); returns how many.

        ``program.json`` is rewritten without them, then ``metadata.json`` with the new fingerprint and
        ``edit`` (plus the time, the count and the old fingerprint) appended to its ``edits``; each atomically.
        A process that already loaded the version keeps the old demos in memory until it loads it again.
        """
        directory = self._dir(signature) / version
        self.get(signature, version)  # fetched first when only the database holds it
        saved = _read_json(directory / "program.json")
        removed = 0
        for entry in ([saved] if "demos" in saved else list(saved.values())):
            demos = entry.get("demos") if isinstance(entry, dict) else None
            if isinstance(demos, list):
                kept = [demo for demo in demos if not (isinstance(demo, dict) and match(demo))]
                removed += len(demos) - len(kept)
                entry["demos"] = kept
        if not removed:
            return 0
        meta = self.get(signature, version)
        mode = (directory / "program.json").stat().st_mode & 0o777
        atomic_write_json(directory / "program.json", saved, mode=mode)
        saved.pop("metadata", None)
        old = meta.fingerprint
        meta.fingerprint = fingerprint(_normalise(saved), code=meta.code_version, lm=meta.lm, adapter=meta.adapter,
                                       dspy_version=meta.dspy_version)
        meta.edits.append({"at": datetime.now(UTC).isoformat(timespec="seconds"), **edit, "demos_removed": removed,
                           "previous_fingerprint": old})
        atomic_write_json(directory / "metadata.json", meta.to_dict())
        if self.rows is not None:
            self.rows.rewrite(signature, version, meta.fingerprint, meta.to_dict(),
                              _read_json(directory / "program.json"))
        return removed

    # -- the shared database (PostgreSQL) ------------------------------------------------------
    def cached(self, signatures: Iterable[str]) -> list[tuple[str, str]]:
        """The (signature, version) pairs stored under this home."""
        pairs = []
        for signature in signatures:
            with contextlib.suppress(OSError):
                pairs += [(signature, e.name) for e in os.scandir(self._dir(signature))
                          if _VERSION_DIR.match(e.name) and e.is_dir()]
        return pairs

    def refresh_cached(self, pairs: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
        """Fetch again every cached version among ``pairs`` whose database fingerprint changed (its demos were
        removed on another host); returns those refetched. Versions not cached here are left alone."""
        if self.rows is None:
            return []
        cached = [(s, v) for s, v in pairs if v != BASE_VERSION and (self._dir(s) / v / "metadata.json").is_file()]
        changed = []
        for (signature, version), recorded in self.rows.fingerprints(cached).items():
            try:
                local = ProgramVersion.from_dict(_read_json(self._dir(signature) / version / "metadata.json"))
            except (OSError, ValueError, TypeError):
                local = None
            if (local is None or local.fingerprint != recorded) and self._fetch(signature, version, replace=True):
                changed.append((signature, version))
        return changed

    def _fetch(self, signature: str, version: str, *, replace: bool = False) -> bool:
        """Copy a version from the database into this home after checking its fingerprint; False when the
        database does not hold it (or is not shared). ``VersionIntegrityError`` when its state does not match."""
        if self.rows is None or not _VERSION_DIR.match(version):
            return False
        row = self.rows.get(signature, version)
        if row is None:
            return False
        meta = ProgramVersion.from_dict(row.metadata)
        state = dict(row.state)
        state.pop("metadata", None)
        actual = fingerprint(_normalise(state), code=meta.code_version, lm=meta.lm, adapter=meta.adapter,
                             dspy_version=meta.dspy_version)
        if not actual == meta.fingerprint == row.fingerprint:
            raise VersionIntegrityError(
                f"the database's {signature} {version} does not match its fingerprint "
                f"({actual[:12]} ≠ {row.fingerprint[:12]}); refusing to cache it")
        sig_dir = make_private_dir(self._dir(signature))
        tmp = sig_dir / f".tmp-{uuid.uuid4().hex}"
        os.mkdir(tmp, PRIVATE_DIR)
        try:
            atomic_write_json(tmp / "program.json", row.state)  # owner-only, like every file written here
            atomic_write_json(tmp / "metadata.json", row.metadata)
            target = sig_dir / version
            old = None
            if replace and target.exists():
                old = sig_dir / f".old-{uuid.uuid4().hex}"
                os.rename(target, old)
            try:
                os.rename(tmp, target)
            except OSError:  # another process of this host cached it meanwhile
                if not (target / "metadata.json").is_file():
                    raise
            fsync_dir(sig_dir)
            if old is not None:
                shutil.rmtree(old, ignore_errors=True)
            return True
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)

    def fingerprint_of(self, spec: ProgramSpec, version: str, *, lm: str, adapter: str) -> str:
        """The fingerprint of a version (computed for ``base``, recorded for stored ones)."""
        if version == BASE_VERSION:
            return fingerprint(program_state(spec.build()), code=code_version(spec), lm=lm, adapter=adapter,
                               dspy_version=dspy.__version__)
        return self.get(spec.name, version).fingerprint

    def local_names(self, signature: str) -> list[str]:
        """Versions of ``signature`` held as files in this home, oldest first (nothing is fetched)."""
        directory = self._dir(signature)
        found = [e.name for e in directory.iterdir() if _VERSION_DIR.match(e.name) and (e / "metadata.json").is_file()
                 ] if directory.is_dir() else []
        return sorted(found, key=lambda name: int(name[1:]))

    def _next_number(self, signature: str) -> int:
        names = [e.name for e in self._dir(signature).iterdir()]
        if self.rows is not None:
            names += self.rows.names(signature)
        numbers = [int(m.group(1)) for name in names if (m := _VERSION_DIR.match(name))]
        return max(numbers, default=0) + 1


def _normalise(saved: dict[str, Any]) -> dict[str, Any]:
    """DSPy saves a bare predictor's state flat and a composite module's state by predictor name."""
    if "signature" in saved and "demos" in saved:
        saved = {"self": saved}
    out = {}
    for name, entry in saved.items():
        entry = dict(entry) if isinstance(entry, dict) else entry
        if isinstance(entry, dict):
            for key in ("lm", "traces", "train"):
                entry.pop(key, None)
        out[name] = entry
    return out


def _read_json(path: Path) -> Any:
    with path.open("rb") as fh:
        return json.loads(fh.read().decode("utf-8"))
