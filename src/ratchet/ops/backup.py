"""``ratchet backup`` and ``ratchet restore``: one verified archive of everything a home cannot regrow.

The archive (see :mod:`ratchet.ops.archive`) holds::

    programs/…                 program versions and production pointers
    training_data/…            dataset versions, their archives and ``latest`` links
    golden/…                   golden dataset versions (same layout)
    experiments/…              experiment snapshots
    secrets/service.key        the generated service secret, when there is one (RATCHET_SECRET_KEY unset): restored
                               request ids and user pseudonyms keep matching, so deletions still find their users
    routing_config.json        the routing state serving processes read
    monitoring_state.json      what is alerting (if present)
    audit/…                    the audit log (copied under its lock, so its files and head agree)
    config/<ratchet.toml>      the config file the settings came from (checked again: it never holds secrets)
    database/<table>.jsonl     the rows of each Ratchet table, one snapshot (data only: no SQL, no database file)
    telemetry/…                only with ``include_telemetry``
    manifest.json              SHA-256 and size of every member, Ratchet version, creation time, and an
                               HMAC-SHA256 signature under ``RATCHET_BACKUP_KEY`` (unsigned without one)

The archive is written atomically and every member is hashed as it streams in; the backup is
then recorded in the audit log (``backup.create``; a refused or failed one too). Verifying and
restoring one (``verify_backup``, ``restore_backup``, ``RestoreResult``) live in
:mod:`ratchet.ops.restore` and are re-exported here, the home of the public API.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ratchet.audit import AUDIT_DIRNAME, AuditLog, audited
from ratchet.config.loading import refuse_file_secrets
from ratchet.errors import BackupError, ConfigError
from ratchet.ops.archive import FORMAT, ArchiveWriter, Progress
from ratchet.ops.pgtools import current_schema
from ratchet.ops.restore import RestoreResult, restore_backup, verify_backup
from ratchet.ops.rowdump import dump_tables
from ratchet.ops.signing import key_id, sign_manifest
from ratchet.routing import ROUTING_FILENAME
from ratchet.store.db import StateDB, normalize_url
from ratchet.store.private import make_private_dir

if TYPE_CHECKING:
    from ratchet.config import Settings

__all__ = ["BackupResult", "RestoreResult", "create_backup", "restore_backup", "verify_backup"]

# secrets: the service key (pseudonyms still match)
_DIRS = ("programs", "training_data", "golden", "experiments", "secrets")
_FILES = (ROUTING_FILENAME, "monitoring_state.json")


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
    signed_with: str | None = None  # the key id of RATCHET_BACKUP_KEY, or None: unsigned

    def to_dict(self) -> dict[str, Any]:
        return {"path": str(self.path), "created": self.created, "members": self.members, "bytes": self.bytes,
                "archive_bytes": self.archive_bytes, "database": self.database, "skipped": self.skipped,
                "signed_with": self.signed_with}


def create_backup(settings: Settings, output: Path, *, include_telemetry: bool = False,
                  progress: Progress | None = None) -> BackupResult:
    """Write one tar.gz archive of ``settings``' home, config and state database to ``output`` (atomically)."""
    with audited(settings, "backup.create", target=str(output), details={"telemetry": include_telemetry}) as note:
        result = _create_backup(settings, output, include_telemetry=include_telemetry, progress=progress)
        note.details.update(members=result.members, bytes=result.bytes,
                            database=result.database["dialect"] if result.database else None)
    return result


def _create_backup(settings: Settings, output: Path, *, include_telemetry: bool, progress: Progress | None
                   ) -> BackupResult:
    from ratchet.version import __version__

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
        members.extend(_walk(AuditLog(home).snapshot(scratch / AUDIT_DIRNAME), AUDIT_DIRNAME, output))
        database, db_files = _snapshot_database(settings, scratch)
        members.extend((name, path, None) for name, path in db_files)
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
            key = settings.backup_key.get_secret_value() if settings.backup_key else None
            manifest = writer.commit({
                "format": FORMAT, "ratchet_version": __version__, "created": created, "source_home": str(home),
                "config_file": config[0] if config else None,
                "database": database, "telemetry": include_telemetry,
            }, sign=(lambda body: sign_manifest(body, key)) if key else None)
        except BaseException:
            writer.abort()
            raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    files = [m for m in manifest["members"] if m["type"] == "file"]
    return BackupResult(path=output, created=created, members=len(manifest["members"]),
                        bytes=sum(m["size"] for m in files), archive_bytes=output.stat().st_size, database=database,
                        skipped=skipped, signed_with=key_id(key) if key else None)


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


def _snapshot_database(settings: Settings, scratch: Path) -> tuple[dict[str, Any] | None, list[tuple[str, Path]]]:
    """The state database's rows as row files in ``scratch``: its manifest entry and (member, file) pairs."""
    from ratchet.store.db import database_url

    url = normalize_url(database_url(settings))
    sqlite = url.get_backend_name() == "sqlite"
    if sqlite and not Path(url.database or "").is_file():
        return None, []
    entry: dict[str, Any] = {"format": "rows", "dialect": url.get_backend_name()}
    with StateDB(url, auto_migrate=False) as db:
        if not sqlite:
            entry.update(schema=current_schema(db), url=db.url)
        tables, versions, files = dump_tables(db, scratch)
    entry.update(tables=tables, schema_versions=versions)
    return entry, files
