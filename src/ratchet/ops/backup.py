"""``ratchet backup`` and ``ratchet restore``: one verified archive of everything a home cannot regrow.

The archive (see :mod:`ratchet.ops.archive`) holds::

    programs/…                 program versions and production pointers
    training_data/…            dataset versions, their archives and ``latest`` links
    experiments/…              experiment snapshots
    routing_config.json        the routing state serving processes read
    monitoring_state.json      what is alerting (if present)
    config/<ratchet.toml>      the config file the settings came from (checked again: it never holds secrets)
    database/ratchet.db        a consistent SQLite snapshot (online backup API), or
    database/ratchet.sql       a pg_dump of the PostgreSQL schema
    telemetry/…                only with ``include_telemetry``
    manifest.json              SHA-256 and size of every member, Ratchet version, creation time

A restore verifies every member before it writes anything, refuses a non-empty target
(home, SQLite file or PostgreSQL schema) unless forced, unpacks into a staging directory
inside the target home (verifying again), restores the database, then moves each part into
place. Stop Ratchet's processes on the target before restoring over a live home.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sqlite3
import tempfile
import tomllib
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from sqlalchemy.engine import URL

from ratchet.config.loading import refuse_file_secrets
from ratchet.errors import BackupError, ConfigError
from ratchet.ops.archive import FORMAT, ArchiveWriter, Progress, scan_archive
from ratchet.ops.pgtools import current_schema, dump_schema, find_pg_tool, relation_count, restore_dump, retarget_dump
from ratchet.routing import ROUTING_FILENAME
from ratchet.store.atomic import atomic_write_text, fsync_dir
from ratchet.store.db import StateDB, masked_url, normalize_url
from ratchet.store.private import PRIVATE_DIR, create_private, make_private_dir

if TYPE_CHECKING:
    from ratchet.config import Settings

__all__ = ["BackupResult", "RestoreResult", "create_backup", "restore_backup", "verify_backup"]

_DIRS = ("programs", "training_data", "experiments")
_FILES = (ROUTING_FILENAME, "monitoring_state.json")
_SQLITE_MEMBER = "database/ratchet.db"
_SQL_MEMBER = "database/ratchet.sql"


@dataclass
class BackupResult:
    """What ``create_backup`` wrote."""

    path: Path
    created: str
    members: int
    bytes: int  # uncompressed
    archive_bytes: int
    database: dict[str, Any] | None
    skipped: list[str] = field(default_factory=list)  # files that vanished while the backup ran

    def to_dict(self) -> dict[str, Any]:
        return {"path": str(self.path), "created": self.created, "members": self.members, "bytes": self.bytes,
                "archive_bytes": self.archive_bytes, "database": self.database, "skipped": self.skipped}


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

    def to_dict(self) -> dict[str, Any]:
        return {"home": str(self.home), "members": self.members, "bytes": self.bytes,
                "backup_created": self.backup_created, "backup_version": self.backup_version,
                "database": self.database, "config_file": str(self.config_file) if self.config_file else None,
                "forced": self.forced}


# -- backup --------------------------------------------------------------------------------------------


def create_backup(settings: Settings, output: Path, *, include_telemetry: bool = False,
                  progress: Progress | None = None) -> BackupResult:
    """Write one tar.gz archive of ``settings``' home, config and state database to ``output`` (atomically)."""
    from ratchet import __version__

    home = settings.home_dir.resolve()
    if not home.is_dir():
        raise BackupError(f"home {home} does not exist: nothing to back up")
    output = Path(output).expanduser().resolve()
    if output.is_dir():
        raise BackupError(f"--output {output} is a directory: give a file name such as ratchet-backup.tar.gz")
    members = list(_home_members(home, include_telemetry=include_telemetry, exclude=output))
    make_private_dir(output.parent)
    scratch = Path(tempfile.mkdtemp(prefix=".ratchet-backup-", dir=output.parent))  # owner-only
    try:
        config = _checked_config(settings)
        database, db_file = _snapshot_database(settings, scratch)
        if db_file is not None:
            members.append((database["member"], db_file, None))
        total = sum(_size(path) for _, path, link in members if link is None) + (len(config[1]) if config else 0)
        done = [0]

        def on_bytes(n: int) -> None:
            done[0] += n
            if progress is not None:
                progress("backing up", done[0], total)

        writer = ArchiveWriter(output, on_bytes=on_bytes)
        skipped = []
        try:
            for arcname, path, link in members:
                if link is not None:
                    writer.add_symlink(arcname, link)
                    continue
                try:
                    writer.add_file(arcname, path)
                except FileNotFoundError:  # e.g. a dataset version archived meanwhile (its archive is listed)
                    skipped.append(arcname)
            if config is not None:
                writer.add_bytes(*config)
            created = datetime.now(UTC).isoformat(timespec="seconds")
            manifest = writer.commit({
                "format": FORMAT, "ratchet_version": __version__, "created": created, "source_home": str(home),
                "config_file": config[0] if config else None,
                "database": database, "telemetry": include_telemetry,
            })
        except BaseException:
            writer.abort()
            raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    files = [m for m in manifest["members"] if m["type"] == "file"]
    return BackupResult(path=output, created=created, members=len(manifest["members"]),
                        bytes=sum(m["size"] for m in files), archive_bytes=output.stat().st_size, database=database,
                        skipped=skipped)


def _checked_config(settings: Settings) -> tuple[str, bytes] | None:
    """The config file as ``(member name, content)``, checked to hold no secret (it may have changed since loading)."""
    if settings.config_file is None or not Path(settings.config_file).is_file():
        return None
    path = Path(settings.config_file).resolve()
    try:
        data = path.read_bytes()
        refuse_file_secrets(tomllib.loads(data.decode("utf-8")), path)
    except ConfigError as exc:
        raise BackupError(f"not backing up a config file that holds a secret: {exc}") from None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise BackupError(f"{path}: cannot read the config file (changed since it was loaded?): {exc}") from None
    return f"config/{path.name}", data


def _home_members(home: Path, *, include_telemetry: bool, exclude: Path) -> Iterator[tuple[str, Path, str | None]]:
    """(member name, path, symlink target or None) of every file to back up, in a stable order."""
    dirs = (*_DIRS, "telemetry") if include_telemetry else _DIRS
    for name in dirs:
        if (home / name).is_dir() and not (home / name).is_symlink():
            yield from _walk(home / name, name, exclude)
    for name in _FILES:
        if (home / name).is_file():
            yield name, home / name, None


def _walk(directory: Path, prefix: str, exclude: Path) -> Iterator[tuple[str, Path, str | None]]:
    """Files and symlinks under ``directory``; hidden names (locks, temp files of interrupted writes) are skipped."""
    try:
        entries = sorted(os.scandir(directory), key=lambda e: e.name)
    except FileNotFoundError:
        return
    for entry in entries:
        if entry.name.startswith("."):
            continue
        path, arcname = Path(entry.path), f"{prefix}/{entry.name}"
        if path == exclude:
            continue
        if entry.is_symlink():
            yield arcname, path, os.readlink(path)
        elif entry.is_dir():
            yield from _walk(path, arcname, exclude)
        elif entry.is_file():
            yield arcname, path, None


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _snapshot_database(settings: Settings, scratch: Path) -> tuple[dict[str, Any] | None, Path | None]:
    """A consistent copy of the state database in ``scratch``: its manifest entry and file (None, None if none)."""
    from ratchet.store.db import database_url

    url = normalize_url(database_url(settings))
    if url.get_backend_name() == "sqlite":
        source = Path(url.database or "")
        if not source.is_file():
            return None, None
        target = scratch / "ratchet.db"
        _sqlite_snapshot(source, target)
        return {"dialect": "sqlite", "member": _SQLITE_MEMBER}, target
    with StateDB(url, auto_migrate=False) as db:
        schema = current_schema(db)
        masked = db.url
    target = scratch / "ratchet.sql"
    create_private(target)  # pg_dump writes into it, keeping its mode
    dump_schema(url.render_as_string(hide_password=False), schema, target)
    return {"dialect": "postgresql", "member": _SQL_MEMBER, "schema": schema, "url": masked}, target


def _sqlite_snapshot(source: Path, target: Path) -> None:
    """SQLite's online backup API: one consistent snapshot, even while other processes write (WAL)."""
    try:
        src = sqlite3.connect(f"file:{quote(str(source))}?mode=rw", uri=True, timeout=30)
        try:
            create_private(target)  # archived with its mode, and restored with it
            dst = sqlite3.connect(target)
            try:
                src.backup(dst)
                dst.execute("PRAGMA journal_mode = DELETE")  # one self-contained file, no -wal to carry along
                _quick_check(dst, source)
            finally:
                dst.close()
        finally:
            src.close()
    except sqlite3.Error as exc:
        raise BackupError(f"{source}: cannot snapshot the SQLite database: {exc}") from None


def _quick_check(conn: sqlite3.Connection, where: Path) -> None:
    result = conn.execute("PRAGMA quick_check").fetchone()
    if not result or result[0] != "ok":
        raise BackupError(f"{where}: SQLite integrity check failed: {result[0] if result else 'no answer'}")


# -- restore -------------------------------------------------------------------------------------------


def verify_backup(archive: Path, *, progress: Progress | None = None) -> dict[str, Any]:
    """Check every member of ``archive`` against its manifest (nothing is written); return the manifest."""
    return scan_archive(Path(archive), progress=progress)


@dataclass
class _Target:
    dialect: str
    url: URL
    sqlite_path: Path | None = None
    schema: str | None = None


def restore_backup(settings: Settings, archive: Path, *, home: Path | None = None, force: bool = False,
                   progress: Progress | None = None) -> RestoreResult:
    """Restore ``archive`` into ``home`` (default: the configured home) and the configured state database.

    Every member is verified first; a non-empty target home, SQLite file or PostgreSQL schema is
    refused unless ``force``. With ``home``, a SQLite database goes to ``<home>/ratchet.db``.
    """
    archive = Path(archive).expanduser()
    manifest = scan_archive(archive, progress=progress, phase="verifying")
    target_home = (Path(home).expanduser() if home is not None else settings.home_dir).resolve()
    db_info = manifest.get("database")
    target = _database_target(settings, target_home, home_given=home is not None) if db_info else None
    _preflight(target_home, target, db_info, force=force)
    make_private_dir(target_home)
    staging = target_home / f".restore-{uuid.uuid4().hex[:12]}"
    os.mkdir(staging, PRIVATE_DIR)
    try:
        scan_archive(archive, extract_to=staging, progress=progress, phase="restoring")
        if db_info and target is not None:
            _restore_database(staging / db_info["member"], db_info, target, force=force)
        shutil.rmtree(staging / "database", ignore_errors=True)
        _move_into_place(staging, target_home)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    config = manifest.get("config_file")
    files = [m for m in manifest["members"] if m.get("type") == "file"]
    return RestoreResult(
        home=target_home, members=len(manifest["members"]), bytes=sum(int(m.get("size", 0)) for m in files),
        backup_created=manifest.get("created"), backup_version=manifest.get("ratchet_version"),
        database=_describe(target),
        config_file=target_home / config if config else None, forced=force,
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
    if db_info.get("dialect") != target.dialect:
        raise BackupError(f"the backup holds a {db_info.get('dialect')} database but the target is {target.dialect}: "
                          "restore with a configuration of the same kind (database_url)")
    if target.dialect == "sqlite":
        assert target.sqlite_path is not None
        if not force and target.sqlite_path.is_file() and target.sqlite_path.stat().st_size > 0:
            raise BackupError(f"target database {target.sqlite_path} exists: pass --force to replace it")
        return
    find_pg_tool("psql")
    with StateDB(target.url, auto_migrate=False) as db:
        schema = current_schema(db)
        count = relation_count(db, schema)
        where = f"{db.url} (schema {schema})"
    target.schema = schema
    if count and not force:
        raise BackupError(f"target database {where} is not empty ({count} tables, views or sequences): "
                          "restore into an empty schema or pass --force to replace them")


def _restore_database(staged: Path, db_info: dict[str, Any], target: _Target, *, force: bool) -> None:
    if target.dialect == "sqlite":
        assert target.sqlite_path is not None
        try:
            conn = sqlite3.connect(f"file:{quote(str(staged))}?mode=ro", uri=True)
            try:
                _quick_check(conn, staged)
            finally:
                conn.close()
        except sqlite3.Error as exc:
            raise BackupError(f"{db_info['member']}: not a usable SQLite database: {exc}") from None
        _place_file(staged, target.sqlite_path)
        return
    assert target.schema is not None
    sql = staged.read_text(encoding="utf-8")
    script = staged.with_name("restore.sql")
    atomic_write_text(script, retarget_dump(sql, str(db_info.get("schema") or "public"), target.schema, force=force))
    restore_dump(target.url.render_as_string(hide_password=False), script)


def _place_file(staged: Path, target: Path) -> None:
    """Replace ``target`` with ``staged`` (and drop a stale WAL that would otherwise be replayed onto it)."""
    make_private_dir(target.parent)
    tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        os.rename(staged, tmp)
    except OSError:  # another file system
        create_private(tmp)  # copyfile keeps the mode of a file it overwrites
        shutil.copyfile(staged, tmp)
    for suffix in ("-wal", "-shm", "-journal"):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(f"{target}{suffix}")
    os.replace(tmp, target)
    fsync_dir(target.parent)


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
