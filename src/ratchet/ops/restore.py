"""``ratchet restore``: a backup archive verified, then put back into a home and its state database.

A restore verifies every member and the manifest's signature (``RATCHET_BACKUP_KEY``; an unsigned
archive only with ``allow_unsigned``) before it writes anything, refuses a non-empty target
(home, SQLite file or PostgreSQL schema) unless forced, unpacks into a staging directory
inside the target home (verifying again), loads the database's rows (data only:
:mod:`ratchet.ops.rowload`; no SQL from the archive runs), then moves each part into place.
Stop Ratchet's processes on the target before restoring over a live home. What an archive
holds: :mod:`ratchet.ops.backup`, which re-exports this module's public names.

The audit log is append-only, so a home's own log is never replaced: the archive's copy is
restored only into a home without one. Every restore is recorded in the target home's log
(``restore.apply``), as is one refused or failed over a home that already holds something.

Deletions survive restores: the user data deletions the (kept) audit log records are applied again
to what was restored (:func:`ratchet.privacy.reapply_deletions`), so an older backup does not
bring a deleted user's records back. ``RestoreResult.deletions`` says how many, and whether any failed.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy.engine import URL
from sqlalchemy.exc import SQLAlchemyError

from ratchet.audit import AUDIT_DIRNAME, audited
from ratchet.errors import BackupError
from ratchet.ops.archive import Progress, scan_archive
from ratchet.ops.pgtools import current_schema, relation_count
from ratchet.ops.rowload import load_tables
from ratchet.ops.sqlitetools import place_file
from ratchet.ops.trust import check_manifest
from ratchet.privacy import reapply_deletions
from ratchet.store.atomic import fsync_dir
from ratchet.store.db import StateDB, masked_url, normalize_url
from ratchet.store.private import PRIVATE_DIR, make_private_dir

if TYPE_CHECKING:
    from ratchet.config import Settings

__all__ = ["RestoreResult", "restore_backup", "verify_backup"]

log = logging.getLogger(__name__)


@dataclass
class RestoreResult:
    """What ``restore_backup`` restored, and from which backup."""

    home: Path
    members: int
    bytes: int
    backup_created: str | None
    backup_version: str | None
    database: str | None  # where the database went (a masked URL), or None when the archive had none
    config_file: Path | None
    forced: bool
    signature: str = "signed"  # or "unsigned" (restored with allow_unsigned)
    deletions: dict[str, Any] | None = None  # recorded deletions applied again: reapplied (users), failed (steps)

    def to_dict(self) -> dict[str, Any]:
        return {"home": str(self.home), "members": self.members, "bytes": self.bytes,
                "backup_created": self.backup_created, "backup_version": self.backup_version,
                "database": self.database, "config_file": str(self.config_file) if self.config_file else None,
                "forced": self.forced, "signature": self.signature, "deletions": self.deletions}


def verify_backup(archive: Path, *, key: str | None = None, allow_unsigned: bool = False,
                  progress: Progress | None = None) -> dict[str, Any]:
    """Check every member of ``archive`` against its manifest and the manifest's signature under ``key``
    (nothing is written); return the manifest, with ``"signed"`` or ``"unsigned"`` as ``verified``."""
    manifest = scan_archive(Path(archive), progress=progress)
    status = _trusted(archive, manifest, key, allow_unsigned=allow_unsigned)
    return {**manifest, "verified": status}


def _trusted(archive: Path, manifest: dict[str, Any], key: str | None, *, allow_unsigned: bool) -> str:
    try:
        return check_manifest(manifest, key, allow_unsigned=allow_unsigned)
    except BackupError as exc:
        raise BackupError(f"{archive}: {exc}") from None


def _key(settings: Settings) -> str | None:
    return settings.backup_key.get_secret_value() if settings.backup_key else None


@dataclass
class _Target:
    dialect: str
    url: URL
    sqlite_path: Path | None = None
    schema: str | None = None


def restore_backup(settings: Settings, archive: Path, *, home: Path | None = None, force: bool = False,
                   allow_unsigned: bool = False, progress: Progress | None = None) -> RestoreResult:
    """Restore ``archive`` into ``home`` (default: the configured home) and the configured state database.

    Every member is verified first; a non-empty target home, SQLite file or PostgreSQL schema is
    refused unless ``force``; an unsigned archive unless ``allow_unsigned``. With ``home``, a SQLite
    database goes to ``<home>/ratchet.db``.
    """
    archive = Path(archive).expanduser()
    target_home = (Path(home).expanduser() if home is not None else settings.home_dir).resolve()
    populated = target_home.is_dir() and any(os.scandir(target_home))
    with audited(target_home, "restore.apply", target=str(archive), details={"forced": force}) as note:
        note.skip = not populated  # a failed restore into an empty home leaves it empty, so it can be retried
        result = _restore(settings, archive, target_home, home_given=home is not None, force=force,
                          allow_unsigned=allow_unsigned, progress=progress)
        note.skip = False
        note.details.update(backup_created=result.backup_created, members=result.members, bytes=result.bytes,
                            signature=result.signature)
    result.deletions = _reapply_deletions(settings, result, home_given=home is not None)
    return result


def _reapply_deletions(settings: Settings, result: RestoreResult, *, home_given: bool) -> dict[str, Any]:
    """Apply every recorded user data deletion again to the restored home and database."""
    update: dict[str, Any] = {"home": result.home}
    if home_given and not (settings.database_url and normalize_url(settings.database_url).get_backend_name()
                           == "postgresql"):
        update["database_url"] = None  # the restored SQLite file is <home>/ratchet.db
    try:
        report = reapply_deletions(settings.model_copy(update=update))
    except Exception as exc:  # the restore itself stands: say so, and how to finish
        log.exception("re-applying recorded deletions after the restore failed")
        return {"reapplied": 0, "status": "failed", "failed": [f"{type(exc).__name__}: {exc}"[:300]]}
    if report is None:
        return {"reapplied": 0, "status": "ok", "failed": []}
    return {"reapplied": report.users, "status": report.status,
            "failed": [s.step for s in report.steps if s.status == "failed"]}


def _restore(settings: Settings, archive: Path, target_home: Path, *, home_given: bool, force: bool,
             allow_unsigned: bool, progress: Progress | None) -> RestoreResult:
    manifest = scan_archive(archive, progress=progress, phase="verifying")
    status = _trusted(archive, manifest, _key(settings), allow_unsigned=allow_unsigned)
    db_info = manifest.get("database")
    target = _database_target(settings, target_home, home_given=home_given) if db_info else None
    _preflight(target_home, target, db_info, force=force)
    make_private_dir(target_home)
    staging = target_home / f".restore-{uuid.uuid4().hex[:12]}"
    os.mkdir(staging, PRIVATE_DIR)
    try:
        if scan_archive(archive, extract_to=staging, progress=progress, phase="restoring") != manifest:
            raise BackupError(f"{archive}: the archive changed while it was being restored")
        if db_info and target is not None:
            _restore_database(staging, db_info, target, force=force)
        shutil.rmtree(staging / "database", ignore_errors=True)
        if (target_home / AUDIT_DIRNAME).is_dir():  # the home's own log goes on: never rewound to the backup's
            shutil.rmtree(staging / AUDIT_DIRNAME, ignore_errors=True)
        _move_into_place(staging, target_home)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    config = manifest.get("config_file")
    files = [m for m in manifest["members"] if m.get("type") == "file"]
    return RestoreResult(
        home=target_home, members=len(manifest["members"]), bytes=sum(int(m.get("size", 0)) for m in files),
        backup_created=manifest.get("created"), backup_version=manifest.get("ratchet_version"),
        database=_describe(target),
        config_file=target_home / config if config else None, forced=force, signature=status,
    )


def _describe(target: _Target | None) -> str | None:
    if target is None:
        return None
    if target.sqlite_path is not None:
        return str(target.sqlite_path)
    return f"{masked_url(target.url)} (schema {target.schema})"


def _database_target(settings: Settings, home: Path, *, home_given: bool) -> _Target:
    configured = normalize_url(settings.database_url) if settings.database_url else None
    if configured is not None and configured.get_backend_name() == "postgresql":
        return _Target("postgresql", configured)
    if configured is not None and not home_given:
        path = Path(configured.database or "").expanduser()
    else:
        path = home / "ratchet.db"
    return _Target("sqlite", normalize_url(f"sqlite:///{path}"), sqlite_path=path)


def _preflight(home: Path, target: _Target | None, db_info: dict[str, Any] | None, *, force: bool) -> None:
    """Everything that can refuse the restore, checked before anything is written."""
    if home.exists() and not home.is_dir():
        raise BackupError(f"target home {home} is not a directory")
    if not force and home.is_dir() and any(os.scandir(home)):
        raise BackupError(f"target home {home} is not empty: restore into an empty directory (--home DIR) "
                          "or pass --force to replace what the backup holds")
    if target is None or db_info is None:
        return
    if target.dialect == "sqlite":
        assert target.sqlite_path is not None
        if not force and target.sqlite_path.is_file() and target.sqlite_path.stat().st_size > 0:
            raise BackupError(f"target database {target.sqlite_path} exists: pass --force to replace it")
        return
    with StateDB(target.url, auto_migrate=False) as db:
        schema = current_schema(db)
        count = relation_count(db, schema)
        where = f"{db.url} (schema {schema})"
    target.schema = schema
    if count and not force:
        raise BackupError(f"target database {where} is not empty ({count} tables, views or sequences): "
                          "restore into an empty schema or pass --force to replace them")


def _restore_database(staged: Path, db_info: dict[str, Any], target: _Target, *, force: bool) -> None:
    """Load the row files under ``staged`` (the extracted archive) into a new SQLite file or the PostgreSQL schema."""
    tables = db_info["tables"]
    try:
        if target.dialect == "sqlite":
            assert target.sqlite_path is not None
            built = staged / "database" / "restored.db"
            with StateDB(f"sqlite:///{built}") as db:
                load_tables(db, staged, tables, replace=False)
            place_file(built, target.sqlite_path)
            return
        with StateDB(target.url) as db:
            load_tables(db, staged, tables, replace=force)
    except SQLAlchemyError as exc:
        raise BackupError(f"the backup's rows could not be loaded (nothing was changed): "
                          f"{getattr(exc, 'orig', None) or exc}") from None


def _move_into_place(staging: Path, home: Path) -> None:
    """Rename each staged top-level entry into ``home``; what it replaces is removed only once all moved."""
    old = staging / ".replaced"
    moved: list[tuple[Path, Path | None, bool]] = []  # destination, what it replaced (moved aside), placed yet
    try:
        for entry in sorted(p for p in staging.iterdir() if p != old):
            dest = home / entry.name
            aside = None
            if dest.exists() or dest.is_symlink():
                make_private_dir(old)
                aside = old / entry.name
                os.rename(dest, aside)
            moved.append((dest, aside, False))
            os.rename(entry, dest)
            moved[-1] = (dest, aside, True)
    except OSError as exc:
        for dest, aside, placed in reversed(moved):  # put back what was there
            with contextlib.suppress(OSError):
                if placed and dest.is_dir() and not dest.is_symlink():
                    shutil.rmtree(dest)
                elif placed:
                    dest.unlink()
                if aside is not None:
                    os.rename(aside, dest)
        raise BackupError(f"cannot move restored files into {home}: {exc}") from None
    fsync_dir(home)
