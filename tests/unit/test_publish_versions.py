"""``ratchet programs publish``: versions saved with SQLite go to PostgreSQL once, checked, never clobbered."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ratchet.audit import read_entries
from ratchet.config import Settings
from ratchet.errors import ConfigError
from ratchet.evaluation import fewshot_program
from ratchet.programs import load_programs
from ratchet.programs.publish import publish_versions
from ratchet.programs.versions import VersionStore, program_state
from ratchet.store.db import StateDB

SIG = "classify_intent"


@pytest.fixture
def spec():
    return load_programs(Settings()).get(SIG)


def _files_only(home: Path, spec, count: int) -> VersionStore:
    """A home whose versions were saved before the move to PostgreSQL (no database rows)."""
    store = VersionStore(home)
    for k in range(2, 2 + count):
        store.save(spec, fewshot_program(spec, k), lm="m", adapter="a")
    return store


def test_local_versions_are_published_once_and_another_host_serves_them(tmp_path: Path, spec, postgres_url) -> None:
    _files_only(tmp_path / "a", spec, 3)
    with StateDB(postgres_url) as db:
        first = publish_versions(VersionStore(tmp_path / "a", db), [SIG])
        assert [(p.version, p.outcome) for p in first] == [("v1", "published"), ("v2", "published"),
                                                           ("v3", "published")]
        again = publish_versions(VersionStore(tmp_path / "a", db), [SIG])
        assert {p.outcome for p in again} == {"already"}
        other = VersionStore(tmp_path / "b", db)
        assert [v.version for v in other.list(SIG)] == ["v1", "v2", "v3"]
        assert program_state(other.load(spec, "v3")) == program_state(fewshot_program(spec, 4))
        assert other.save(spec, fewshot_program(spec, 7), lm="m", adapter="a").version == "v4"  # numbers continue


def test_a_damaged_version_is_not_shared_and_a_taken_number_is_not_overwritten(tmp_path: Path, spec,
                                                                                postgres_url) -> None:
    local = _files_only(tmp_path / "a", spec, 2)
    program = local.root / SIG / "v1" / "program.json"
    data = json.loads(program.read_text())
    data["demos"] = data["demos"][:1]  # edited by hand: no longer what its fingerprint says
    program.write_text(json.dumps(data))
    with StateDB(postgres_url) as db:
        VersionStore(tmp_path / "b", db).save(spec, fewshot_program(spec, 9), lm="m", adapter="a")  # b's v1
        VersionStore(tmp_path / "b", db).save(spec, fewshot_program(spec, 8), lm="m", adapter="a")  # b's v2
        done = {p.version: p for p in publish_versions(VersionStore(tmp_path / "a", db), [SIG])}
        assert done["v1"].outcome == "damaged" and "fingerprint" in done["v1"].detail
        assert done["v2"].outcome == "conflict" and "left as it is" in done["v2"].detail
        fetched = VersionStore(tmp_path / "c", db)
        assert program_state(fetched.load(spec, "v2")) == program_state(fewshot_program(spec, 8))  # b's, intact


def test_sqlite_has_nothing_to_publish(tmp_path: Path, spec) -> None:
    with StateDB(f"sqlite:///{tmp_path / 'state.db'}") as db, pytest.raises(ConfigError, match="PostgreSQL"):
        publish_versions(VersionStore(tmp_path / "a", db), [SIG])


def test_the_command_publishes_audits_and_exits_1_on_a_conflict(tmp_path: Path, spec, postgres_url) -> None:
    _files_only(tmp_path / "home", spec, 2)
    (tmp_path / "ratchet.toml").write_text(f'home = "home"\ndatabase_url = "{postgres_url}"\n')
    env = {k: v for k, v in os.environ.items() if not k.startswith("RATCHET_")}

    def run() -> tuple[int, dict]:
        done = subprocess.run([sys.executable, "-m", "ratchet", "programs", "publish", SIG, "--json"], cwd=tmp_path,
                              env=env, capture_output=True, text=True, timeout=120, check=False)
        return done.returncode, json.loads(done.stdout)

    code, report = run()
    assert code == 0 and report["published"] == 2, report
    with StateDB(postgres_url) as db:  # another host saves v3 with other demos; here v3 is then saved too
        VersionStore(tmp_path / "other", db).save(spec, fewshot_program(spec, 6), lm="m", adapter="a")
    VersionStore(tmp_path / "home").save(spec, fewshot_program(spec, 5), lm="m", adapter="a")
    code, report = run()
    assert code == 1 and report["already"] == 2 and report["conflict"] == 1, report
    entries = read_entries(tmp_path / "home", action="programs.publish")
    assert [e["details"]["published"] for e in entries] == [2, 0]
