"""Backups that cannot attack their restorer (issue 13, item 8): data only, Ratchet's own tables, signed manifests.

Against real SQLite and PostgreSQL: the crafted archive of the issue (``\\!`` and ``COPY … TO PROGRAM`` in a SQL
script, hashes recomputed) is refused and runs nothing; a changed row file with recomputed hashes is refused by the
signature; an unknown table file is refused; a round trip keeps every row of every table.
"""

import hashlib
import io
import json
import secrets
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import insert, select

from ratchet.config import Settings
from ratchet.errors import BackupError
from ratchet.ops.archive import MANIFEST
from ratchet.ops.backup import create_backup, restore_backup, verify_backup
from ratchet.ops.rowfiles import ALLOWED
from ratchet.ops.signing import sign_manifest
from ratchet.store.db import StateDB
from ratchet.store.tables import schema_migrations

KEY = "trust-test-key-" + "fedcba9876543210"


def settings_for(tmp_path: Path, name: str, url: str, key: str | None = KEY) -> Settings:
    (tmp_path / name).mkdir(exist_ok=True)
    return Settings(home=tmp_path / name, database_url=url, backup_key=key)


def _value(column, i: int):
    kind = column.type.python_type
    return i if kind is int else i + 0.5 if kind is float else f"{column.name}-{i}"


def fill(url: str, rows: int = 3) -> None:
    """``rows`` rows in every Ratchet table (values by column type)."""
    with StateDB(url) as db, db.begin(write=True) as conn:
        for table in ALLOWED.values():
            if table is not schema_migrations:
                conn.execute(insert(table), [{c.name: _value(c, i) for c in table.c} for i in range(1, rows + 1)])


def dump(url: str) -> dict[str, list[tuple]]:
    with StateDB(url) as db, db.begin() as conn:
        return {name: sorted(tuple(r) for r in conn.execute(select(table)))
                for name, table in ALLOWED.items() if table is not schema_migrations}


def read_archive(path: Path) -> tuple[list[tarfile.TarInfo], dict[str, bytes]]:
    with tarfile.open(path, "r:gz") as tar:
        infos = tar.getmembers()
        return infos, {m.name: tar.extractfile(m).read() for m in infos if m.isfile()}


def forge(archive: Path, out: Path, change: Callable[[dict[str, bytes], dict], None], *,
          sign_with: str | None = None, keep_signature: bool = True) -> None:
    """Rewrite ``archive`` as an attacker would: ``change(files, manifest)``, then recompute every hash and size."""
    infos, files = read_archive(archive)
    manifest = json.loads(files.pop(MANIFEST))
    signature = manifest.pop("signature", None)
    change(files, manifest)
    links = [m for m in manifest["members"] if m["type"] == "symlink"]
    manifest["members"] = [*links, *({"path": n, "type": "file", "size": len(d),
                                      "sha256": hashlib.sha256(d).hexdigest()} for n, d in files.items())]
    if sign_with:
        manifest = sign_manifest(manifest, sign_with)
    elif keep_signature and signature:
        manifest["signature"] = signature
    with tarfile.open(out, "w:gz") as tar:
        for info in infos:
            if info.issym():
                tar.addfile(info)
        for name, data in [*files.items(), (MANIFEST, json.dumps(manifest).encode())]:
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o600
            tar.addfile(info, io.BytesIO(data))


@pytest.fixture
def marker_dir() -> Path:
    """A world-writable place where a command run by psql (as us) or the server (as postgres) could leave a file."""
    path = Path("/tmp") / f"ratchet-restore-probe-{secrets.token_hex(6)}"
    path.mkdir(mode=0o777)
    path.chmod(0o777)
    yield path
    for child in path.iterdir():
        child.unlink()
    path.rmdir()


def test_the_issues_crafted_sql_archive_is_refused_and_runs_nothing(tmp_path: Path, state_db_url: str,
                                                                      marker_dir: Path) -> None:
    source = settings_for(tmp_path, "home", state_db_url)
    fill(state_db_url)
    archive = tmp_path / "good.tar.gz"
    create_backup(source, archive)
    script = (f"\\! touch {marker_dir}/psql-shell\n"
              f"COPY (SELECT 1) TO PROGRAM 'touch {marker_dir}/server-program';\n").encode()

    def legacy(files: dict[str, bytes], manifest: dict) -> None:  # the pre-issue format, as the probe built it
        for name in [n for n in files if n.startswith("database/")]:
            del files[name]
        files["database/ratchet.sql"] = script
        manifest.update(format=1, database={"dialect": "postgresql", "member": "database/ratchet.sql",
                                            "schema": "public"})

    def smuggled(files: dict[str, bytes], manifest: dict) -> None:  # a SQL script next to the row files
        files["database/ratchet.sql"] = script

    target = settings_for(tmp_path, "target", f"sqlite:///{tmp_path / 'target.db'}")
    cases = [("legacy-signed", legacy, {"sign_with": KEY}, r"format 1.*no longer loads"),
             ("legacy-unsigned", legacy, {"keep_signature": False}, r"format 1.*no longer loads"),
             ("smuggled-signed", smuggled, {"sign_with": KEY}, r"unexpected database member 'database/ratchet\.sql'"),
             ("smuggled-unsigned", smuggled, {"keep_signature": False},
              r"unexpected database member 'database/ratchet\.sql'"),
             ("smuggled-resigned-elsewhere", smuggled, {"sign_with": "another-key-0123456789"}, r"another key")]
    for name, change, how, refusal in cases:
        forged = tmp_path / f"{name}.tar.gz"
        forge(archive, forged, change, **how)
        with pytest.raises(BackupError, match=refusal):
            verify_backup(forged, key=KEY, allow_unsigned=True)
        for allow_unsigned in (False, True):
            with pytest.raises(BackupError):
                restore_backup(target, forged, home=tmp_path / f"r-{name}-{allow_unsigned}",
                               allow_unsigned=allow_unsigned)
            assert not (tmp_path / f"r-{name}-{allow_unsigned}").exists()
    assert list(marker_dir.iterdir()) == []  # neither the shell command nor the server's program ran
    assert not (tmp_path / "target.db").exists()


def test_a_changed_row_file_is_refused_by_the_signature(tmp_path: Path, state_db_url: str) -> None:
    source = settings_for(tmp_path, "home", state_db_url)
    fill(state_db_url)
    archive = tmp_path / "good.tar.gz"
    create_backup(source, archive)

    def grant(files: dict[str, bytes], manifest: dict) -> None:
        lines = files["database/experiments.jsonl"].decode().splitlines()
        files["database/experiments.jsonl"] = "\n".join([*lines, lines[-1].replace("-3", "-4")]).encode() + b"\n"
        manifest["database"]["tables"]["experiments"] += 1

    target = settings_for(tmp_path, "target", f"sqlite:///{tmp_path / 'target.db'}")
    forge(archive, tmp_path / "resigned-none.tar.gz", grant)  # hashes recomputed, old signature kept
    with pytest.raises(BackupError, match=r"signature does not match: it was changed after `ratchet backup`"):
        verify_backup(tmp_path / "resigned-none.tar.gz", key=KEY, allow_unsigned=True)
    with pytest.raises(BackupError, match=r"signature does not match"):
        restore_backup(target, tmp_path / "resigned-none.tar.gz", home=tmp_path / "r1", allow_unsigned=True)
    forge(archive, tmp_path / "stripped.tar.gz", grant, keep_signature=False)  # the signature removed
    with pytest.raises(BackupError, match=r"not signed .*--allow-unsigned"):
        restore_backup(target, tmp_path / "stripped.tar.gz", home=tmp_path / "r2")
    assert not (tmp_path / "r1").exists() and not (tmp_path / "r2").exists()
    assert not (tmp_path / "target.db").exists()
    with pytest.raises(BackupError, match=r"signed but RATCHET_BACKUP_KEY is not set"):
        verify_backup(archive, key=None)
    assert verify_backup(archive, key=KEY)["verified"] == "signed"


def test_unknown_table_files_and_bad_rows_are_refused(tmp_path: Path, state_db_url: str) -> None:
    source = settings_for(tmp_path, "home", state_db_url, key=None)  # unsigned: only the allow-list stands guard
    fill(state_db_url)
    archive = tmp_path / "unsigned.tar.gz"
    assert create_backup(source, archive).signed_with is None
    target = settings_for(tmp_path, "target", f"sqlite:///{tmp_path / 'target.db'}", key=None)
    with pytest.raises(BackupError, match=r"not signed"):
        verify_backup(archive)
    assert verify_backup(archive, allow_unsigned=True)["verified"] == "unsigned"

    def extra_table(files: dict[str, bytes], manifest: dict) -> None:
        files["database/pg_authid.jsonl"] = b'{"table": "pg_authid", "columns": ["rolname"]}\n["x"]\n'
        manifest["database"]["tables"]["pg_authid"] = 1

    def bad_value(files: dict[str, bytes], manifest: dict) -> None:
        lines = files["database/feedback.jsonl"].decode().splitlines()
        row = json.loads(lines[1])
        row[1] = {"$where": "1"}
        files["database/feedback.jsonl"] = "\n".join([lines[0], json.dumps(row), *lines[2:]]).encode() + b"\n"

    def extra_column(files: dict[str, bytes], manifest: dict) -> None:
        lines = files["database/feedback.jsonl"].decode().splitlines()
        header = json.loads(lines[0])
        header["columns"][-1] = "created_at; DROP TABLE experiments"
        files["database/feedback.jsonl"] = "\n".join([json.dumps(header), *lines[1:]]).encode() + b"\n"

    for name, change, refusal in [("extra", extra_table, r"unexpected database member 'database/pg_authid\.jsonl'"),
                                  ("value", bad_value, r"feedback\.jsonl: line 2: column 'score' holds dict"),
                                  ("column", extra_column, r"columns 'feedback' does not have")]:
        forged = tmp_path / f"{name}.tar.gz"
        forge(archive, forged, change)
        with pytest.raises(BackupError, match=refusal):
            restore_backup(target, forged, home=tmp_path / f"r-{name}", allow_unsigned=True)
        left = tmp_path / f"r-{name}"
        assert (not left.exists() or not any(left.iterdir())) and not (tmp_path / "target.db").exists()


def test_a_round_trip_keeps_every_row_of_every_table(tmp_path: Path, state_db_url: str) -> None:
    source = settings_for(tmp_path, "home", state_db_url)
    fill(state_db_url, rows=50)
    before = dump(state_db_url)
    assert all(len(rows) == 50 for rows in before.values())
    archive = tmp_path / "b.tar.gz"
    result = create_backup(source, archive)
    assert set(result.database["tables"]) == set(ALLOWED) and result.signed_with

    fresh = tmp_path / "fresh"  # into a fresh home and its SQLite file, whatever the source dialect
    restore_backup(settings_for(tmp_path, "t", f"sqlite:///{tmp_path / 'unused.db'}"), archive, home=fresh)
    assert dump(f"sqlite:///{fresh / 'ratchet.db'}") == before

    with StateDB(state_db_url) as db, db.begin(write=True) as conn:  # the source changes, then is restored over
        conn.execute(ALLOWED["experiment_events"].delete())
        conn.execute(insert(ALLOWED["feedback"]).values(request_id="late", score=1.0, correction=None,
                                                           created_at=1.0))
    with pytest.raises(BackupError, match=r"--force"):
        restore_backup(source, archive)
    restore_backup(source, archive, force=True)  # the configured home and database
    assert dump(state_db_url) == before
    with StateDB(state_db_url) as db, db.begin(write=True) as conn:  # ids continue after the restored ones
        conn.execute(insert(ALLOWED["experiment_events"]).values(experiment_id="e", at=1.0, actor="a", kind="k",
                                                                 to_status="s"))


def test_the_backup_key_comes_only_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from ratchet.config import load_settings
    from ratchet.errors import ConfigError

    (tmp_path / "ratchet.toml").write_text('home = "home"\nbackup_key = "written-in-the-file-0123"\n')
    with pytest.raises(ConfigError, match=r"'backup_key' is a secret: set the environment variable RATCHET_BACKUP_KEY"):
        load_settings(tmp_path / "ratchet.toml")
    (tmp_path / "ratchet.toml").write_text('home = "home"\n')
    monkeypatch.setenv("RATCHET_BACKUP_KEY", KEY)
    assert load_settings(tmp_path / "ratchet.toml").backup_key.get_secret_value() == KEY
