"""`ratchet backup` / `ratchet restore`: a round trip into an empty home (SQLite and PostgreSQL), and damaged or
tampered archives refused before anything changes."""

import gzip
import hashlib
import io
import json
import os
import secrets
import tarfile
from pathlib import Path

import psycopg
import pytest
from sqlalchemy.engine import make_url
from typer.testing import CliRunner

from ratchet.cli.main import app
from ratchet.config import Settings, load_settings
from ratchet.data.datasets import DatasetStore
from ratchet.data.records import ExampleRecord
from ratchet.errors import BackupError
from ratchet.evaluation import fewshot_program
from ratchet.ops.archive import MANIFEST
from ratchet.ops.backup import create_backup, restore_backup, verify_backup
from ratchet.programs import load_programs
from ratchet.programs.versions import VersionStore
from ratchet.rollout import RolloutController
from ratchet.rollout.experiments import ExperimentStore
from ratchet.store.db import StateDB

SIG = "classify_intent"
KEY = "test-backup-key-" + "0123456789abcdef"
BANKING = Path(__file__).parents[2] / "src" / "ratchet" / "examples" / "data" / "banking77" / "train.jsonl"
runner = CliRunner()


@pytest.fixture(autouse=True)
def backup_key(monkeypatch: pytest.MonkeyPatch) -> str:
    """Every backup here is signed (RATCHET_BACKUP_KEY), as in production."""
    monkeypatch.setenv("RATCHET_BACKUP_KEY", KEY)
    return KEY


def tree(root: Path) -> dict[str, str]:
    """Every non-hidden path under root → content hash, link target or 'dir'."""
    out = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if any(part.startswith(".") for part in rel.parts):
            continue
        if path.is_symlink():
            out[str(rel)] = "-> " + os.readlink(path)
        elif path.is_file():
            out[str(rel)] = hashlib.sha256(path.read_bytes()).hexdigest()
        else:
            out[str(rel)] = "dir"
    return out


def config(directory: Path, database_url: str | None = None, home: str = "home") -> Settings:
    directory.mkdir(parents=True, exist_ok=True)
    text = f'home = "{home}"\n' + (f'database_url = "{database_url}"\n' if database_url else "")
    (directory / "ratchet.toml").write_text(text)
    return load_settings(directory / "ratchet.toml")


def build_home(settings: Settings) -> None:
    """Datasets (one version archived), two program versions, an experiment with events, routing, snapshots."""
    registry = load_programs(settings)
    spec = registry.get(SIG)
    rows = [json.loads(line) for line in BANKING.read_text().splitlines()[:12]]
    store = DatasetStore(settings.home_dir, settings.data, registry=registry)
    for i in range(3):
        store.add(SIG, [ExampleRecord(values=r, signature=SIG, source="test", quality=80.0, difficulty="easy")
                        for r in rows[i * 4:(i + 1) * 4]], source="test")
    assert store.archive(SIG, older_than_days=0, keep=1)
    versions = VersionStore(settings.home_dir)
    versions.save(spec, fewshot_program(spec, 2), lm="m", adapter="a")
    versions.save(spec, fewshot_program(spec, 4), lm="m", adapter="a")
    controller = RolloutController(settings, registry)
    controller.start(SIG, "v2", experiment_id="exp_1", baseline="v1", shadow=False)
    controller.pause("exp_1", reason="backup test")
    controller.db.dispose()
    (settings.home_dir / "monitoring_state.json").write_text('{"active": {}}\n')
    (settings.home_dir / "telemetry").mkdir()
    (settings.home_dir / "telemetry" / "interactions.jsonl").write_text('{"x": 1}\n')


def experiments(url: str) -> tuple[list[dict], list[dict]]:
    with StateDB(url) as db:
        store = ExperimentStore(db)
        exps = [e.to_dict() for e in store.list()]
        events = [ev.to_dict() for e in exps for ev in store.events(e["experiment_id"])]
    return exps, events


def assert_same_home(source: Path, restored: Path) -> None:
    for part in ("training_data", "programs", "experiments"):
        assert tree(source / part) == tree(restored / part) and tree(source / part), part
    assert (source / "routing_config.json").read_bytes() == (restored / "routing_config.json").read_bytes()
    assert (restored / "monitoring_state.json").read_text() == '{"active": {}}\n'
    assert not (restored / "telemetry").exists()  # not asked for


def test_backup_and_restore_into_an_empty_home_sqlite(tmp_path: Path) -> None:
    settings = config(tmp_path / "prod")
    build_home(settings)
    archive = tmp_path / "backups" / "ratchet.tar.gz"
    phases = set()
    result = create_backup(settings, archive, progress=lambda phase, done, total: phases.add(phase))
    assert archive.is_file() and result.database["dialect"] == "sqlite" and result.database["format"] == "rows"
    assert result.database["tables"]["experiment_events"] == 2 and result.signed_with
    assert phases == {"backing up"} and not list(archive.parent.glob(".*"))  # no temp files left
    manifest = verify_backup(archive, key=KEY)
    assert manifest["verified"] == "signed"
    names = {m["path"] for m in manifest["members"]}
    assert {"config/ratchet.toml", "database/experiments.jsonl", "routing_config.json",
            "experiments/experiment_exp_1.json", f"training_data/{SIG}/latest"} <= names
    assert any(n.startswith(f"training_data/{SIG}/archive/") for n in names)
    assert manifest["ratchet_version"] and manifest["created"]
    assert all(len(m["sha256"]) == 64 and m["size"] >= 0 for m in manifest["members"] if m["type"] == "file")

    target = tmp_path / "restored"
    restored = restore_backup(config(tmp_path / "other"), archive, home=target)
    assert restored.home == target and restored.database == str(target / "ratchet.db")
    assert_same_home(settings.home_dir, target)
    assert (target / "config" / "ratchet.toml").read_bytes() == settings.config_file.read_bytes()
    source_rows = experiments(f"sqlite:///{settings.home_dir / 'ratchet.db'}")
    assert source_rows == experiments(f"sqlite:///{target / 'ratchet.db'}")
    assert [e["status"] for e in source_rows[0]] == ["paused"] and len(source_rows[1]) == 2
    registry = load_programs(settings)
    restored_store = DatasetStore(target, settings.data, registry=registry)
    source_store = DatasetStore(settings.home_dir, settings.data, registry=registry)
    for info in source_store.list_versions(SIG):  # archived versions too
        assert ([r.to_json() for r in restored_store.load(SIG, info.version).records]
                == [r.to_json() for r in source_store.load(SIG, info.version).records])
    assert VersionStore(target).projected_production(SIG) == VersionStore(settings.home_dir).projected_production(SIG)


@pytest.fixture
def second_schema(postgres_url: str):
    """Another fresh PostgreSQL schema next to the one of ``postgres_url``."""
    url = make_url(postgres_url)
    schema = f"t_{secrets.token_hex(6)}"
    admin = {"host": url.host, "port": url.port, "dbname": url.database, "user": url.username, "autocommit": True}
    with psycopg.connect(**admin) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    try:
        yield url.set(query={"options": f"-csearch_path={schema}"}).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(**admin) as conn:
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


def test_backup_and_restore_postgresql_into_another_schema(tmp_path: Path, postgres_url: str,
                                                           second_schema: str) -> None:
    settings = config(tmp_path / "prod", database_url=postgres_url)
    build_home(settings)
    archive = tmp_path / "ratchet.tar.gz"
    result = create_backup(settings, archive, include_telemetry=True)
    assert result.database["dialect"] == "postgresql" and result.database["tables"]["experiments"] == 1
    source_schema = make_url(postgres_url).query["options"].split("=")[1]
    assert result.database["schema"] == source_schema

    target_settings = config(tmp_path / "dr", database_url=second_schema)
    target = tmp_path / "dr-home"
    restore_backup(target_settings, archive, home=target)
    for part in ("training_data", "programs", "experiments"):
        assert tree(settings.home_dir / part) == tree(target / part)
    assert (target / "telemetry" / "interactions.jsonl").read_text() == '{"x": 1}\n'
    assert experiments(postgres_url) == experiments(second_schema)
    assert experiments(second_schema)[0][0]["experiment_id"] == "exp_1"

    # The schema now has tables: refused without --force, replaced with it.
    with pytest.raises(BackupError, match=r"not empty .*--force"):
        restore_backup(target_settings, archive, home=tmp_path / "dr-home-2")
    assert not (tmp_path / "dr-home-2").exists()
    with StateDB(second_schema) as db, db.begin(write=True) as conn:
        conn.exec_driver_sql("DELETE FROM experiment_events")
    restore_backup(target_settings, archive, home=target, force=True)
    assert experiments(postgres_url) == experiments(second_schema)


def rewrite(archive: Path, out: Path, change) -> None:
    """Copy ``archive`` member by member to ``out``, letting ``change(members)`` alter the (TarInfo, bytes) list."""
    with tarfile.open(archive, "r:gz") as tar:
        members = [(m, tar.extractfile(m).read() if m.isfile() else b"") for m in tar.getmembers()]
    members = change(members)
    with tarfile.open(out, "w:gz") as tar:
        for info, data in members:
            info.size = len(data) if info.isfile() else 0
            tar.addfile(info, io.BytesIO(data) if info.isfile() else None)


def file_info(name: str, data: bytes = b"x") -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    return info, data


@pytest.fixture
def archive(tmp_path: Path) -> Path:
    settings = config(tmp_path / "prod")
    build_home(settings)
    path = tmp_path / "good.tar.gz"
    create_backup(settings, path)
    return path


def test_damaged_or_tampered_archives_are_refused_before_anything_changes(tmp_path: Path, archive: Path) -> None:
    settings = config(tmp_path / "dr")
    target = tmp_path / "target"

    def refused(path: Path, pattern: str) -> None:
        with pytest.raises(BackupError, match=pattern):
            restore_backup(settings, path, home=target)
        assert not target.exists() and not (tmp_path / "evil.txt").exists()

    with tarfile.open(archive, "r:gz") as tar:
        dataset = next(m.name for m in tar.getmembers() if m.name.endswith("/dataset.json"))

    def flip(members):
        out = []
        for info, data in members:
            if info.name == dataset:
                data = bytes([data[0] ^ 0x01]) + data[1:]
            out.append((info, data))
        return out

    rewrite(archive, tmp_path / "flipped.tar.gz", flip)
    refused(tmp_path / "flipped.tar.gz", rf"member '{dataset}' is damaged")

    raw = bytearray(archive.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    (tmp_path / "bitrot.tar.gz").write_bytes(bytes(raw))
    refused(tmp_path / "bitrot.tar.gz", r"damaged|not a readable|truncated")

    (tmp_path / "truncated.tar.gz").write_bytes(archive.read_bytes()[: archive.stat().st_size * 2 // 3])
    refused(tmp_path / "truncated.tar.gz", r"damaged|truncated")

    def escape(members):
        return [*members[:1], file_info("../evil.txt"), *members[1:]]

    rewrite(archive, tmp_path / "escape.tar.gz", escape)
    refused(tmp_path / "escape.tar.gz", r"unsafe archive member '\.\./evil\.txt'")

    rewrite(archive, tmp_path / "absolute.tar.gz", lambda members: [file_info("/tmp/evil.txt"), *members])
    refused(tmp_path / "absolute.tar.gz", r"unsafe archive member '/tmp/evil\.txt'")

    def link(members):
        info = tarfile.TarInfo("training_data/x/latest")
        info.type, info.linkname = tarfile.SYMTYPE, "../../../../etc"
        return [(info, b""), *members]

    rewrite(archive, tmp_path / "link.tar.gz", link)
    refused(tmp_path / "link.tar.gz", r"symlink to '\.\./\.\./\.\./\.\./etc' leaves the home")

    def through_link(members):
        info = tarfile.TarInfo("training_data/x/latest")
        info.type, info.linkname = tarfile.SYMTYPE, "v1"
        return [(info, b""), file_info("training_data/x/latest/evil.txt"), *members]

    rewrite(archive, tmp_path / "through.tar.gz", through_link)
    refused(tmp_path / "through.tar.gz", r"'training_data/x/latest/evil\.txt': it lies under the symlink")

    rewrite(archive, tmp_path / "extra.tar.gz", lambda members: [file_info("programs/extra.json"), *members])
    refused(tmp_path / "extra.tar.gz", r"'programs/extra\.json' is not listed in manifest\.json")

    rewrite(archive, tmp_path / "dropped.tar.gz", lambda members: [m for m in members if m[0].name != dataset])
    refused(tmp_path / "dropped.tar.gz", rf"'{dataset}' is listed in manifest\.json but missing")

    rewrite(archive, tmp_path / "nomanifest.tar.gz", lambda members: [m for m in members if m[0].name != MANIFEST])
    refused(tmp_path / "nomanifest.tar.gz", r"no manifest\.json")

    (tmp_path / "plain.txt").write_text("not an archive")
    refused(tmp_path / "plain.txt", r"not a readable tar\.gz")

    with pytest.raises(BackupError):  # the gzip layer checks its CRC too
        verify_backup(tmp_path / "bitrot.tar.gz", key=KEY)
    assert verify_backup(archive, key=KEY)["format"] == 2


def test_a_non_empty_home_needs_force(tmp_path: Path, archive: Path) -> None:
    settings = config(tmp_path / "dr")
    target = tmp_path / "target"
    (target / "programs" / SIG).mkdir(parents=True)
    (target / "programs" / SIG / "stale.json").write_text("{}")
    (target / "runs").mkdir()
    with pytest.raises(BackupError, match=r"not empty.*--force"):
        restore_backup(settings, archive, home=target)
    assert (target / "programs" / SIG / "stale.json").exists()
    restore_backup(settings, archive, home=target, force=True)
    assert not (target / "programs" / SIG / "stale.json").exists()  # programs/ is replaced as a whole
    assert (target / "runs").is_dir()  # what the backup does not hold is left alone
    assert (target / "programs" / SIG / "v2" / "program.json").is_file()
    assert [name for name in os.listdir(target) if name.startswith(".")] == []  # no staging left behind


def test_backup_and_restore_cli(tmp_path: Path) -> None:
    settings = config(tmp_path / "prod")
    build_home(settings)
    cfg = str(settings.config_file)
    out = tmp_path / "b.tar.gz"
    result = runner.invoke(app, ["--config", cfg, "backup", "--output", str(out), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["path"] == str(out)
    result = runner.invoke(app, ["--config", cfg, "restore", str(out), "--verify-only"])
    assert result.exit_code == 0 and "verified" in result.stdout
    result = runner.invoke(app, ["--config", cfg, "restore", str(out), "--home", str(tmp_path / "r"), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["home"] == str(tmp_path / "r")
    result = runner.invoke(app, ["--config", cfg, "restore", str(out)])  # the live home is not empty
    assert result.exit_code == 2
    assert "not empty" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    with gzip.open(out, "rb") as fh:
        assert fh.read(1)  # a real gzip file


def archive_contents(archive: Path) -> dict[str, bytes]:
    """The whole decompressed tar stream (headers included), every member, and every gzip member decompressed."""
    contents = {"<tar stream>": gzip.decompress(archive.read_bytes())}
    with tarfile.open(archive, "r:gz") as tar:
        for member in tar.getmembers():
            if member.isfile():
                data = tar.extractfile(member).read()
                contents[member.name] = data
                if data[:2] == b"\x1f\x8b":  # dataset archives, gzipped telemetry
                    contents[f"{member.name} (decompressed)"] = gzip.decompress(data)
    return contents


def test_a_backup_never_holds_a_secret(tmp_path: Path, state_db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    password = f"s3cret-{secrets.token_hex(8)}"
    url = make_url(state_db_url)
    postgresql = url.get_backend_name() == "postgresql"
    if postgresql:  # trust auth: the local server accepts any password
        url = url.set(password=password, query={**url.query, "sslpassword": password})
    monkeypatch.setenv("RATCHET_DATABASE_URL", url.render_as_string(hide_password=False))
    monkeypatch.setenv("RATCHET_MONITOR__SMTP_PASSWORD", password)
    monkeypatch.setenv("RATCHET_MONITOR__WEBHOOK_URL", f"https://hooks.example/{password}")
    monkeypatch.setenv("RATCHET_LM__API_BASE", f"https://ratchet:{password}@vllm.internal/v1")
    settings = config(tmp_path / "prod")
    assert password in (settings.database_url or "") or not postgresql  # the environment may carry it
    build_home(settings)
    home = settings.home_dir
    for leftover in (home / ".env", home / "programs" / ".env", home / "secrets.env", tmp_path / "prod" / ".env"):
        leftover.write_text(f"RATCHET_DATABASE_URL={settings.database_url}\nPASSWORD={password}\n")

    archive = tmp_path / "backups" / "ratchet.tar.gz"
    result = runner.invoke(app, ["--config", str(settings.config_file), "backup", "--output", str(archive),
                                 "--include-telemetry", "--json"])
    assert result.exit_code == 0, result.output
    assert password not in result.output
    contents = archive_contents(archive)
    assert {MANIFEST, "config/ratchet.toml", "telemetry/interactions.jsonl"} <= set(contents)
    assert "database/experiments.jsonl" in contents
    assert any(name.endswith(".tar.gz (decompressed)") for name in contents)  # dataset archives were looked into
    leaking = [name for name, data in contents.items() if password.encode() in data or KEY.encode() in data]
    assert leaking == []
    manifest = json.loads(contents[MANIFEST])
    if postgresql:
        assert manifest["database"]["url"].startswith(f"postgresql+psycopg://{url.username}:********@127.0.0.1")
        assert "sslpassword=********" in manifest["database"]["url"]


def test_a_config_file_that_gained_a_password_is_not_backed_up(tmp_path: Path) -> None:
    settings = config(tmp_path / "prod")
    build_home(settings)
    settings.config_file.write_text('home = "home"\ndatabase_url = "postgresql://ratchet:hunter2@db/ratchet"\n')
    archive = tmp_path / "ratchet.tar.gz"
    with pytest.raises(BackupError, match=r"holds a secret.*database_url") as caught:
        create_backup(settings, archive)
    assert "hunter2" not in str(caught.value)
    assert not archive.exists() and not list(tmp_path.glob(".ratchet-backup-*"))
