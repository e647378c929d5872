"""What a verified archive's manifest must also satisfy before anything is restored from it.

:func:`~ratchet.ops.archive.scan_archive` proves the members match the manifest; this proves the
manifest is the one ``ratchet backup`` wrote (its signature, :mod:`ratchet.ops.signing`) and that
its database part is data Ratchet reads itself: row files of allow-listed tables only
(:mod:`ratchet.ops.rowfiles`), from a schema this Ratchet knows.
"""

from __future__ import annotations

from typing import Any

from ratchet.errors import BackupError
from ratchet.ops.archive import LEGACY_FORMAT
from ratchet.ops.rowfiles import ALLOWED, DIRECTORY, member_name, table_of_member
from ratchet.ops.rowload import check_schema_versions
from ratchet.ops.signing import check_signature

__all__ = ["check_manifest"]


def check_manifest(manifest: dict[str, Any], key: str | None, *, allow_unsigned: bool = False) -> str:
    """``"signed"`` or ``"unsigned"`` for a trustworthy ``manifest``; ``BackupError`` naming what is wrong."""
    status = check_signature(manifest, key, allow_unsigned=allow_unsigned)
    database = manifest.get("database")
    if database is not None and not isinstance(database, dict):
        raise BackupError("the manifest's database entry is malformed")
    if manifest.get("format") == LEGACY_FORMAT and database:
        raise BackupError(
            f"the archive was written by Ratchet {manifest.get('ratchet_version')} (backup format {LEGACY_FORMAT}): "
            f"its database is a {database.get('dialect')} file or SQL script, which this Ratchet no longer loads "
            "because it can carry commands. Restore it with the version that wrote it, then take a new backup")
    members = [m.get("path") for m in manifest["members"] if str(m.get("path", "")).startswith(f"{DIRECTORY}/")]
    if database is None:
        if members:
            raise BackupError(f"the archive holds {members[0]!r} but its manifest lists no database")
        return status
    tables = database.get("tables")
    if (database.get("format") != "rows" or not isinstance(tables, dict)
            or any(not isinstance(n, int) or isinstance(n, bool) or n < 0 for n in tables.values())):
        raise BackupError("the manifest's database entry is not a data-only row backup")
    for name in members:
        if table_of_member(name).name not in tables:
            raise BackupError(f"the archive holds {name!r} but its manifest does not list that table")
    for name in tables:
        if name not in ALLOWED:
            raise BackupError(f"the manifest lists table {name!r}, which is not one of Ratchet's")
        if member_name(name) not in members:
            raise BackupError(f"the manifest lists table {name!r} but the archive has no {member_name(name)}")
    versions = database.get("schema_versions")
    if not isinstance(versions, list):
        raise BackupError("the manifest's database entry has no schema_versions")
    check_schema_versions(versions)
    return status
