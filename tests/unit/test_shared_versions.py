"""Program versions shared through PostgreSQL: saved on one host, fetched, checked and cached by another."""

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from sqlalchemy import select, update

from ratchet.config import Settings
from ratchet.errors import UnknownVersionError, VersionIntegrityError
from ratchet.evaluation import fewshot_program
from ratchet.programs import load_programs
from ratchet.programs.versions import VersionStore, program_state
from ratchet.rollout.experiments import Experiment, ExperimentStore
from ratchet.serve.state_follower import StateFollower
from ratchet.store.db import StateDB
from ratchet.store.tables import program_versions


@pytest.fixture
def spec():
    return load_programs(Settings()).get("classify_intent")


@pytest.fixture
def db(postgres_url: str):
    with StateDB(postgres_url) as database:
        yield database


def _demos(store: VersionStore, version: str) -> list[str]:
    return [d["text"] for d in json.loads((store.root / "classify_intent" / version / "program.json").read_text())
            .get("demos", [])]


def test_a_version_saved_on_one_host_is_fetched_checked_and_cached_by_another(tmp_path: Path, spec, db) -> None:
    a, b = VersionStore(tmp_path / "a", db), VersionStore(tmp_path / "b", db)
    module = fewshot_program(spec, 4)
    saved = a.save(spec, module, lm="m", adapter="a", scores={"test": 0.5})
    assert not (b.root / "classify_intent" / "v1").exists()
    assert b.exists("classify_intent", "v1")  # fetched now
    assert (b.root / "classify_intent" / "v1" / "program.json").stat().st_mode & 0o777 == 0o600
    assert b.get("classify_intent", "v1").fingerprint == saved.fingerprint
    assert program_state(b.load(spec, "v1")) == program_state(module)
    assert [v.version for v in VersionStore(tmp_path / "c", db).list("classify_intent")] == ["v1"]
    with pytest.raises(UnknownVersionError):
        b.get("classify_intent", "v9")


def test_numbers_are_allocated_across_hosts(tmp_path: Path, spec, db) -> None:
    stores = [VersionStore(tmp_path / name, db) for name in "abcd"]
    with ThreadPoolExecutor(max_workers=8) as pool:  # four hosts, two saves at once on each
        names = list(pool.map(lambda k: stores[k % 4].save(spec, fewshot_program(spec, k), lm="m",
                                                            adapter="a").version, range(1, 9)))
    assert sorted(names, key=lambda v: int(v[1:])) == [f"v{i}" for i in range(1, 9)]
    with db.begin() as conn:
        assert sorted(conn.scalars(select(program_versions.c.version)), key=lambda v: int(v[1:])) == \
            [f"v{i}" for i in range(1, 9)]


def test_a_row_that_does_not_match_its_fingerprint_is_refused(tmp_path: Path, spec, db) -> None:
    VersionStore(tmp_path / "a", db).save(spec, fewshot_program(spec, 3), lm="m", adapter="a")
    with db.begin() as conn:
        state = json.loads(conn.scalar(select(program_versions.c.state)))
        state["demos"] = state["demos"][:1]
        conn.execute(update(program_versions).values(state=json.dumps(state)))
    b = VersionStore(tmp_path / "b", db)
    with pytest.raises(VersionIntegrityError):
        b.get("classify_intent", "v1")
    assert not (b.root / "classify_intent" / "v1").exists()
    assert b.list("classify_intent") == []  # listed without it


def test_removed_demos_reach_every_hosts_cache(tmp_path: Path, spec, db) -> None:
    a, b = VersionStore(tmp_path / "a", db), VersionStore(tmp_path / "b", db)
    a.save(spec, fewshot_program(spec, 4), lm="m", adapter="a")
    assert b.exists("classify_intent", "v1")
    victim = _demos(b, "v1")[0]
    assert b.refresh_cached([("classify_intent", "v1")]) == []
    # The deletion runs on a third host that never cached the version.
    c = VersionStore(tmp_path / "c", db)
    assert c.remove_demos("classify_intent", "v1", lambda d: d.get("text") == victim, edit={"by": "test"}) == 1
    assert b.refresh_cached([("classify_intent", "v1"), ("classify_intent", "base")]) == [("classify_intent", "v1")]
    assert victim not in _demos(b, "v1") and victim in _demos(a, "v1")  # a follows at its next refresh
    assert a.refresh_cached([("classify_intent", "v1")]) == [("classify_intent", "v1")]
    assert victim not in _demos(a, "v1")
    b.load(spec, "v1")  # fingerprint-checked


def test_sqlite_keeps_versions_in_files_only(tmp_path: Path, spec) -> None:
    with StateDB(f"sqlite:///{tmp_path / 'ratchet.db'}") as db:
        store = VersionStore(tmp_path, db)
        assert store.rows is None
        store.save(spec, fewshot_program(spec, 2), lm="m", adapter="a")
        with db.begin() as conn:
            assert conn.scalar(select(program_versions.c.version)) is None
        assert not VersionStore(tmp_path / "other", db).exists("classify_intent", "v1")


def _experiment(candidate: str) -> Experiment:
    return Experiment(experiment_id="exp_shared", signature="classify_intent", baseline_version="base",
                      candidate_version=candidate, status="running", stages=[50], stage_index=0, min_stage_minutes=1,
                      min_stage_requests=1, created_at=0.0, stage_started_at=0.0, salt="s")


def test_the_follower_fetches_a_candidate_and_never_routes_to_one_it_cannot_load(tmp_path: Path, spec, db) -> None:
    registry = load_programs(Settings())
    VersionStore(tmp_path / "cycle", db).save(spec, fewshot_program(spec, 3), lm="m", adapter="a")
    ExperimentStore(db).create(_experiment("v1"), actor="test")
    serving = VersionStore(tmp_path / "serve", db)
    follower = StateFollower(db, registry, serving, tmp_path / "serve" / "routing_config.json", background=False)
    route = follower.current().routing.route("classify_intent")
    assert route.candidate_version == "v1" and route.candidate_share == 0.5
    assert (serving.root / "classify_intent" / "v1" / "metadata.json").is_file()

    # A candidate no host saved: withheld here (all traffic on the baseline), routed once it appears.
    other = tmp_path / "other"
    follower2 = StateFollower(db, registry, VersionStore(other), other / "routing_config.json", background=False)
    assert follower2.current().routing.route("classify_intent").candidate_share == 0.0
    assert follower2.current().routing.route("classify_intent").candidate_version == "v1"
