import json
import threading
from pathlib import Path

import dspy
import pytest

from ratchet.config import Settings
from ratchet.errors import UnknownVersionError, VersionIntegrityError
from ratchet.evaluation import fewshot_program
from ratchet.programs import load_programs
from ratchet.programs.versions import BASE_VERSION, VersionStore, program_state


@pytest.fixture
def spec():
    return load_programs(Settings()).get("classify_intent")


def test_save_load_round_trip(tmp_path: Path, spec) -> None:
    store = VersionStore(tmp_path)
    module = fewshot_program(spec, 6)
    saved = store.save(spec, module, lm="llamacpp/x", adapter="CompletionAdapter", parent=BASE_VERSION,
                       dataset_version="v20261125_120000", optimizer="labeled", optimizer_params={"k": 6},
                       scores={"test": 0.61})
    assert saved.version == "v1"
    assert (tmp_path / "programs" / "classify_intent" / "v1" / "program.json").is_file()
    loaded = store.load(spec, "v1")
    assert program_state(loaded) == program_state(module)
    assert [d["intent"] for d in loaded.demos] == [d["intent"] for d in module.demos]
    meta = store.get("classify_intent", "v1")
    assert meta.optimizer_params == {"k": 6} and meta.parent == "base" and meta.scores == {"test": 0.61}
    assert meta.dspy_version == dspy.__version__


def test_versions_are_numbered_and_concurrent_saves_do_not_clash(tmp_path: Path, spec) -> None:
    store = VersionStore(tmp_path)
    names: list[str] = []
    lock = threading.Lock()

    def save(k: int) -> None:
        version = store.save(spec, fewshot_program(spec, k), lm="m", adapter="a").version
        with lock:
            names.append(version)

    threads = [threading.Thread(target=save, args=(k,)) for k in range(1, 9)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(names, key=lambda v: int(v[1:])) == [f"v{i}" for i in range(1, 9)]
    assert [v.version for v in store.list("classify_intent")] == [f"v{i}" for i in range(1, 9)]
    assert not [p for p in (tmp_path / "programs" / "classify_intent").iterdir() if p.name.startswith(".tmp")]


def test_a_modified_file_is_refused(tmp_path: Path, spec) -> None:
    store = VersionStore(tmp_path)
    store.save(spec, fewshot_program(spec, 3), lm="m", adapter="a")
    path = tmp_path / "programs" / "classify_intent" / "v1" / "program.json"
    state = json.loads(path.read_text())
    state["demos"][0]["intent"] = "age_limit" if state["demos"][0]["intent"] != "age_limit" else "atm_support"
    path.write_text(json.dumps(state))
    with pytest.raises(VersionIntegrityError, match="does not match the fingerprint"):
        store.load(spec, "v1")
    path.write_text("{broken")
    with pytest.raises(VersionIntegrityError, match="unreadable"):
        store.load(spec, "v1")


def test_production_pointer(tmp_path: Path, spec) -> None:
    """The database decides; production.json (and its history) is the projection written from it."""
    from ratchet.errors import ConcurrentChangeError
    from ratchet.programs.production import ProductionPointers
    from ratchet.store.db import StateDB

    store = VersionStore(tmp_path)
    pointers = ProductionPointers(StateDB(f"sqlite:///{tmp_path / 'ratchet.db'}"), store)
    assert pointers.get("classify_intent") == BASE_VERSION and store.projected_production("classify_intent") == "base"
    assert store.load(spec, BASE_VERSION).demos == []
    store.save(spec, fewshot_program(spec, 2), lm="m", adapter="a")
    pointers.set("classify_intent", "v1", actor="operator", reason="manual", expected="base")
    assert pointers.get("classify_intent") == "v1" and store.projected_production("classify_intent") == "v1"
    history = (tmp_path / "programs" / "classify_intent" / "production_history.jsonl").read_text().splitlines()
    assert json.loads(history[-1])["previous"] == "base"
    with pytest.raises(UnknownVersionError, match="no version 'v9'"):
        pointers.set("classify_intent", "v9", actor="operator", reason="x")
    with pytest.raises(ConcurrentChangeError, match="is v1, not base"):  # a stale view changes nothing
        pointers.set("classify_intent", "base", actor="operator", reason="x", expected="base")
    assert pointers.get("classify_intent") == "v1"
    assert [(c.from_version, c.to_version) for c in pointers.history("classify_intent")] == [("base", "v1")]
    with pytest.raises(UnknownVersionError):
        store.load(spec, "../../etc")


def test_a_home_from_before_the_table_keeps_its_production_version(tmp_path: Path, spec) -> None:
    from ratchet.programs.production import ProductionPointers
    from ratchet.store.db import StateDB

    store = VersionStore(tmp_path)
    store.save(spec, fewshot_program(spec, 2), lm="m", adapter="a")
    store.write_production_projection("classify_intent", {"version": "v1"})  # what an older Ratchet wrote
    pointers = ProductionPointers(StateDB(f"sqlite:///{tmp_path / 'ratchet.db'}"), store)
    assert pointers.get("classify_intent") == "v1" and pointers.all() == {}
    pointers.set("classify_intent", "base", actor="operator", reason="x", expected="v1")
    assert pointers.all() == {"classify_intent": "base"}


def test_fingerprint_of_base_depends_on_lm_and_adapter(tmp_path: Path, spec) -> None:
    store = VersionStore(tmp_path)
    a = store.fingerprint_of(spec, BASE_VERSION, lm="m1", adapter="CompletionAdapter")
    assert a == store.fingerprint_of(spec, BASE_VERSION, lm="m1", adapter="CompletionAdapter")
    assert a != store.fingerprint_of(spec, BASE_VERSION, lm="m2", adapter="CompletionAdapter")
    assert a != store.fingerprint_of(spec, BASE_VERSION, lm="m1", adapter="ChatAdapter")
