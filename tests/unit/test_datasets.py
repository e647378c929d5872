import hashlib
import json
import multiprocessing
import os
import signal
import stat
import tarfile
import time
from pathlib import Path

import pytest

from ratchet.config import Settings
from ratchet.config.settings import DataSettings
from ratchet.data.datasets import LATEST, DatasetStore, assign_split, dataset_statistics
from ratchet.data.records import ExampleRecord, read_batch
from ratchet.errors import DataError, UnknownProgramError
from ratchet.programs import load_programs

SIG = "classify_intent"
BIG = 60_000  # examples in the batch the crash test kills (about 2 s of validation on a busy 2-core machine)
BANKING = Path(__file__).parents[2] / "src" / "ratchet" / "examples" / "data" / "banking77"


def banking(split: str = "train", start: int = 0, stop: int | None = None, source: str = "") -> list[ExampleRecord]:
    """Banking77 rows as records, with deterministic quality scores and difficulties."""
    rows = [json.loads(line) for line in (BANKING / f"{split}.jsonl").read_text().splitlines()][start:stop]
    return [ExampleRecord(values=row, signature=SIG, source=source, quality=float(50 + (i * 7) % 50),
                          difficulty=("easy", "medium", "hard")[i % 3]) for i, row in enumerate(rows, start)]


def make_store(home: Path, **data: object) -> DatasetStore:
    settings = Settings()
    return DatasetStore(home, DataSettings(**data), registry=load_programs(settings))


def snapshot(root: Path) -> dict[str, str]:
    """Every path under root → content hash (or link target / 'dir')."""
    out = {}
    for path in sorted(root.rglob("*")):
        rel = str(path.relative_to(root))
        if path.is_symlink():
            out[rel] = "-> " + os.readlink(path)
        elif path.is_dir():
            out[rel] = "dir"
        else:
            out[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def check_complete(sig_dir: Path) -> str:
    """``latest`` points at a complete, self-consistent version; returns its name."""
    target = os.readlink(sig_dir / LATEST)
    version = sig_dir / target
    meta = json.loads((version / "metadata.json").read_text())
    raw = (version / "dataset.json").read_bytes()
    dataset = json.loads(raw)
    provenance = (version / "provenance.jsonl").read_text().splitlines()
    assert meta["version"] == dataset["version"] == target
    assert meta["example_count"] == len(dataset["examples"]) == len(provenance)
    assert meta["content_sha256"] == hashlib.sha256(raw).hexdigest()
    return target


@pytest.fixture
def store(tmp_path: Path) -> DatasetStore:
    return make_store(tmp_path / "home")


# --- layout, metadata, provenance ------------------------------------------------------------

def test_layout_and_metadata_follow_the_seed(store: DatasetStore) -> None:
    records = banking(stop=200)
    records[0].source = "manual_curation"  # a record naming its source keeps it
    result = store.create(SIG, records, source="git_mining", notes="Monthly collection Nov 2025")
    sig_dir = store.root / SIG
    assert result.added == 200 and result.parent is None and result.rejected == []
    assert (sig_dir / LATEST).is_symlink() and os.readlink(sig_dir / LATEST) == result.version
    assert sorted(p.name for p in (sig_dir / result.version).iterdir()) == [
        "dataset.json", "metadata.json", "provenance.jsonl"]
    assert result.version.startswith("v") and len(result.version) == len("v20251104_120000")

    meta = json.loads((sig_dir / "latest" / "metadata.json").read_text())
    assert {"version", "signature", "created", "parent", "notes", "sources", "example_count", "split_counts",
            "content_sha256", "statistics"} <= set(meta)
    assert meta["notes"] == "Monthly collection Nov 2025" and meta["parent"] is None
    assert meta["sources"] == ["git_mining", "manual_curation"]
    stats = meta["statistics"]
    assert stats == dataset_statistics(store.load(SIG).records)
    scores = sorted(r.quality for r in records)
    assert stats["quality_scores"]["count"] == 200
    assert stats["quality_scores"]["mean"] == round(sum(scores) / 200, 2)
    assert stats["quality_scores"]["min"] == scores[0] and stats["quality_scores"]["max"] == scores[-1]
    assert stats["quality_scores"]["p10"] == scores[19]
    assert stats["difficulty"] == {"easy": 67, "medium": 67, "hard": 66}
    assert stats["sources"] == {"git_mining": 199, "manual_curation": 1}
    assert sum(stats["categories"].values()) == 200 and "card_arrival" in stats["categories"]
    assert sum(meta["split_counts"].values()) == 200 and set(meta["split_counts"]) == {"train", "dev", "test"}

    dataset = json.loads((sig_dir / "latest" / "dataset.json").read_text())
    assert dataset["signature"] == SIG and dataset["version"] == result.version
    first = ExampleRecord.from_json(dataset["examples"][0])
    assert first.values == records[0].values and first.source == "manual_curation" and len(first.id) == 16
    lines = [json.loads(line) for line in (sig_dir / "latest" / "provenance.jsonl").read_text().splitlines()]
    assert len(lines) == 200
    assert {"example_id", "source", "timestamp", "quality_score", "split"} <= set(lines[0])
    assert [line["example_id"] for line in lines] == [e["_meta"]["id"] for e in dataset["examples"]]
    check_complete(sig_dir)
    assert {stat.S_IMODE(p.stat().st_mode) for p in (sig_dir / result.version).iterdir()} == {0o400}


# --- add, immutability, list, load, diff ------------------------------------------------------

def test_add_appends_skips_duplicates_and_leaves_the_old_version_unchanged(store: DatasetStore) -> None:
    v1 = store.create(SIG, banking(stop=300), source="git_mining")
    before = snapshot(store.root / SIG / v1.version)
    v2 = store.add(SIG, banking(start=250, stop=400), source="synthetic", notes="more")
    assert snapshot(store.root / SIG / v1.version) == before
    assert v2.parent == v1.version and v2.version > v1.version
    assert v2.added == 100 and v2.skipped_duplicates == 50 and v2.example_count == 400
    assert os.readlink(store.root / SIG / LATEST) == v2.version
    loaded = store.load(SIG)
    assert loaded.version == v2.version and len(loaded) == 400
    assert [r.source for r in loaded.records].count("synthetic") == 100
    assert loaded.metadata["operation"] == {"kind": "add", "source": "synthetic", "added": 100,
                                            "skipped_duplicates": 50, "rejected": 0}
    infos = store.list_versions(SIG)
    assert [(i.version, i.latest, i.archived) for i in infos] == [(v1.version, False, False),
                                                                  (v2.version, True, False)]
    assert infos[1].sources == {"git_mining": 300, "synthetic": 100} and infos[1].example_count == 400
    assert store.latest_version(SIG) == v2.version
    assert len(store.load(SIG, v1.version)) == 300


def test_add_without_a_version_creates_the_first(store: DatasetStore) -> None:
    result = store.add(SIG, banking(stop=5), source="manual")
    assert result.parent is None and store.latest_version(SIG) == result.version


def test_load_split_and_dspy_examples(store: DatasetStore) -> None:
    store.create(SIG, banking(), source="git_mining")
    full = store.load(SIG)
    parts = {split: store.load(SIG, split=split) for split in ("train", "dev", "test")}
    assert sum(len(p) for p in parts.values()) == len(full)
    assert all(r.split == "test" for r in parts["test"].records) and parts["test"].split == "test"
    examples = full.to_examples(load_programs(Settings()).get(SIG).schema, "train")
    assert len(examples) == len(parts["train"]) and set(examples[0].inputs().keys()) == {"text"}
    with pytest.raises(DataError, match="unknown split"):
        store.load(SIG, split="validation")


def test_diff_reports_ids_counts_quality_and_distributions(store: DatasetStore) -> None:
    v1 = store.create(SIG, banking(stop=300), source="git_mining")
    relabelled = banking(stop=1)[0]
    relabelled.values["intent"] = "atm_support"
    v2 = store.create(SIG, [relabelled, *banking(start=100, stop=400, source="synthetic")], source="synthetic")
    diff = store.diff(SIG, v1.version, v2.version)
    assert diff.counts == {"old": 300, "new": 301, "added": 100, "removed": 99, "changed": 1, "common": 201}
    assert len(diff.added) == 100 and len(diff.removed) == 99 and len(diff.examples_added) == 5
    assert diff.quality_mean["change"] == round(diff.quality_mean["new"] - diff.quality_mean["old"], 2)
    assert diff.distributions["sources"]["synthetic"] == {"old": 0, "new": 301, "change": 301}
    assert diff.distributions["sources"]["git_mining"]["change"] == -300
    assert set(diff.distributions) == {"difficulty", "sources", "categories", "splits"}
    assert store.diff(SIG, v2.version, LATEST).counts["added"] == 0


# --- splits -------------------------------------------------------------------------------------

def test_splits_are_stable_across_versions_and_never_leave_test(tmp_path: Path) -> None:
    store = make_store(tmp_path / "home")
    schema = load_programs(Settings()).get(SIG).schema
    v1 = store.create(SIG, banking(stop=600), source="a")
    first = {r.id: r.split for r in store.load(SIG, v1.version).records}
    shares = {s: list(first.values()).count(s) / len(first) for s in ("train", "dev", "test")}
    assert abs(shares["train"] - 0.6) < 0.07 and abs(shares["test"] - 0.2) < 0.07
    store.add(SIG, banking(start=500), source="b")
    second = store.load(SIG).records
    assert all(first[r.id] == r.split for r in second if r.id in first)
    assert all(r.split == assign_split(r.inputs(schema), store.settings.split_ratios) for r in second)
    # A record arriving with split=train keeps its hashed split; a test example stays in test.
    moved = next(r for r in banking(stop=600) if first[r.ensure_id(schema)] == "test")
    moved.split = "train"
    store.create(SIG, [moved, *banking(stop=50)], source="c")
    assert {r.id: r.split for r in store.load(SIG).records}[moved.id] == "test"
    # Re-creating under new ratios keeps the splits the latest version gave those inputs.
    skewed = make_store(tmp_path / "home", split_ratios={"train": 0.98, "dev": 0.01, "test": 0.01})
    skewed.create(SIG, banking(stop=50), source="d")
    assert all(first[r.id] == r.split for r in skewed.load(SIG).records)


# --- bad input ------------------------------------------------------------------------------------

def test_bad_examples_are_rejected_with_reasons(store: DatasetStore) -> None:
    good = banking(stop=3)

    def rec(values: dict, **kw: object) -> ExampleRecord:
        return ExampleRecord(values=values, signature=kw.pop("signature", SIG), source="x", **kw)

    bad = [
        rec({"text": "where is my card"}),                                   # missing output
        rec({"text": 42, "intent": "card_arrival"}),                         # mistyped input
        rec({"text": "hi", "intent": "not_an_intent"}),                      # not one of the choices
        rec({"text": "x" * 25_000, "intent": "card_arrival"}),               # oversized
        rec({"text": "hi", "intent": "card_arrival", "txt": "typo"}),        # unknown field
        rec({"text": "hi", "intent": "card_arrival"}, signature="extract_booking"),
        rec({"text": "nan quality", "intent": "card_arrival"}, quality=float("nan")),
        rec({"text": "lone \ud800 surrogate", "intent": "card_arrival"}),
        rec({"text": "odd metadata", "intent": "card_arrival"}, metadata={"when": object()}),
    ]
    result = store.create(SIG, [*good, *bad], source="x")
    assert result.added == 3 and len(result.rejected) == len(bad)
    reasons = [r.reason for r in result.rejected]
    assert [r.index for r in result.rejected] == list(range(4, 4 + len(bad)))
    assert "missing output field 'intent'" in reasons[0]
    assert "input field 'text'" in reasons[1]
    assert "output field 'intent'" in reasons[2]
    assert "25000 characters" in reasons[3] and "max_field_chars" in reasons[3]
    assert "unknown field 'txt'" in reasons[4]
    assert "extract_booking" in reasons[5]
    assert "JSON" in reasons[6]
    assert "UTF-8" in reasons[7]
    assert "JSON-serialisable" in reasons[8]
    assert len(store.load(SIG)) == 3
    json.dumps(result.to_dict())  # reportable as-is


def test_nothing_acceptable_stores_nothing(store: DatasetStore) -> None:
    store.create(SIG, banking(stop=10), source="x")
    before = snapshot(store.root)
    with pytest.raises(DataError, match=r"no acceptable examples.*missing output field"):
        store.add(SIG, [ExampleRecord(values={"text": "?"}, signature=SIG, source="x")], source="x")
    with pytest.raises(DataError, match="already in"):
        store.add(SIG, banking(stop=10), source="x")
    with pytest.raises(DataError, match="none given"):
        store.create(SIG, [], source="x")
    with pytest.raises(DataError, match="source"):
        store.create(SIG, banking(stop=3), source=" ")
    assert snapshot(store.root) == before


def test_malformed_and_non_utf8_lines_are_skipped_by_the_reader(tmp_path: Path, store: DatasetStore) -> None:
    path = tmp_path / "batch.jsonl"
    path.write_bytes(b'{"text": "where is my card", "intent": "card_arrival"}\nnot json\n'
                     b'{"text": "bad \xff utf8", "intent": "card_arrival"}\n{"text": "torn')
    from ratchet.store.jsonl import JsonlReadStats

    stats = JsonlReadStats()
    records = read_batch(path, signature=SIG, source="file", stats=stats)
    assert stats.bad_lines == 3 and any("invalid UTF-8" in e for e in stats.errors)
    assert store.create(SIG, records, source="file").added == 1


def test_names_and_paths_are_checked(store: DatasetStore, tmp_path: Path) -> None:
    v1 = store.create(SIG, banking(stop=10), source="x")
    before = snapshot(store.root)
    for name in ("../x", "a/b", "", "classify_intent/../..", ".."):
        with pytest.raises(DataError, match="invalid signature name"):
            store.create(name, banking(stop=1), source="x")
        with pytest.raises(DataError, match="invalid signature name"):
            store.load(name)
    with pytest.raises(UnknownProgramError, match="unknown signature 'nope'"):
        store.create("nope", banking(stop=1), source="x")
    with pytest.raises(UnknownProgramError):
        store.list_versions("nope")
    for version in ("../v1", "v1", f"{v1.version}/../..", "latest2"):
        with pytest.raises(DataError, match="invalid dataset version"):
            store.load(SIG, version)
    with pytest.raises(DataError, match=r"no dataset version 'v20000101_000000' \(known: v"):
        store.load(SIG, "v20000101_000000")
    for inside in (store.root / SIG / v1.version / "out.jsonl", store.root / SIG / "latest" / "dataset.json",
                   store.root / SIG / "x.jsonl", store.root):
        with pytest.raises(DataError, match="refusing to write inside the dataset store"):
            store.export(SIG, inside)
    assert snapshot(store.root) == before
    with pytest.raises(DataError, match="no dataset versions of 'extract_booking'"):
        store.load("extract_booking")
    assert store.export(SIG, tmp_path / "out.jsonl", split=None) == 10
    assert len(read_batch(tmp_path / "out.jsonl")) == 10


def test_a_tampered_dataset_is_refused(store: DatasetStore) -> None:
    v1 = store.create(SIG, banking(stop=10), source="x")
    path = store.root / SIG / v1.version / "dataset.json"
    os.chmod(path, 0o644)
    path.write_text(path.read_text().replace("card", "cord"))
    with pytest.raises(DataError, match="content_sha256"):
        store.load(SIG)


# --- archive, sweep ----------------------------------------------------------------------------

def test_archive_keeps_latest_and_newest_and_load_restores(store: DatasetStore) -> None:
    versions = [store.create(SIG, banking(start=i * 10, stop=i * 10 + 10), source="x").version for i in range(4)]
    sig_dir = store.root / SIG
    assert store.archive(SIG) == []  # nothing is 90 days old
    planned = store.archive(SIG, older_than_days=0, keep=2, dry_run=True)
    assert [i.version for i in planned] == versions[:2]
    assert all((sig_dir / v).is_dir() for v in versions)
    done = store.archive(SIG, older_than_days=0, keep=2)
    assert [i.version for i in done] == versions[:2]
    assert not (sig_dir / versions[0]).exists() and (sig_dir / "archive" / f"{versions[0]}.tar.gz").is_file()
    with tarfile.open(sig_dir / "archive" / f"{versions[0]}.tar.gz") as tar:
        assert tar.getnames() == [f"{versions[0]}/metadata.json", f"{versions[0]}/dataset.json",
                                  f"{versions[0]}/provenance.jsonl"]
    infos = store.list_versions(SIG)
    assert [(i.version, i.archived) for i in infos] == [(v, n < 2) for n, v in enumerate(versions)]
    assert infos[0].example_count == 10
    # keep=0 still never archives the version latest points at
    assert [i.version for i in store.archive(SIG, older_than_days=0, keep=0)] == [versions[2]]
    assert os.readlink(sig_dir / LATEST) == versions[3] and (sig_dir / versions[3]).is_dir()
    restored = store.load(SIG, versions[0])
    assert len(restored) == 10 and (sig_dir / versions[0] / "metadata.json").is_file()
    check_complete(sig_dir)
    assert not [p for p in sig_dir.iterdir() if p.name.startswith(".tmp-")]


def test_a_creation_time_without_a_zone_is_read_as_utc(store: DatasetStore) -> None:
    """A hand-edited or foreign metadata.json ("2020-01-01T00:00:00", no zone) must not break archiving."""
    versions = [store.create(SIG, banking(start=i * 10, stop=i * 10 + 10), source="x").version for i in range(2)]
    meta_path = store.root / SIG / versions[0] / "metadata.json"
    metadata = json.loads(meta_path.read_text())
    metadata["created"] = "2020-01-01T00:00:00"
    os.chmod(meta_path, 0o600)
    meta_path.write_text(json.dumps(metadata))
    assert [i.version for i in store.archive(SIG, older_than_days=30, keep=0)] == [versions[0]]


def test_sweep_removes_only_stale_temp_dirs(store: DatasetStore) -> None:
    store.create(SIG, banking(stop=3), source="x")
    sig_dir = store.root / SIG
    stale, fresh = sig_dir / ".tmp-stale", sig_dir / ".tmp-fresh"
    for path in (stale, fresh):
        path.mkdir()
        (path / "dataset.json").write_text("{")
    torn = sig_dir / "archive" / ".v20200101_000000.tar.gz.k3j2.tmp"  # an archive write cut short
    torn.parent.mkdir()
    torn.write_bytes(b"\x1f\x8b")
    for path in (stale, torn):
        os.utime(path, (time.time() - 7200, time.time() - 7200))
    assert store.sweep_temp() == [stale, torn]
    assert fresh.is_dir() and len(store.list_versions(SIG)) == 1
    assert store.sweep_temp(max_age_s=0, signature=SIG) == [fresh]


# --- concurrency and crashes ---------------------------------------------------------------------

def _create_in_process(home: str, source: str, barrier, queue) -> None:
    store = make_store(Path(home))
    records = banking(stop=200)
    barrier.wait()
    queue.put([store.create(SIG, records, source=source).version for _ in range(3)])


def test_processes_creating_at_once_get_distinct_versions(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("spawn")
    barrier, queue = ctx.Barrier(2), ctx.Queue()
    home = str(tmp_path / "home")
    processes = [ctx.Process(target=_create_in_process, args=(home, f"p{i}", barrier, queue)) for i in range(2)]
    for process in processes:
        process.start()
    results = [queue.get(timeout=60) for _ in processes]
    for process in processes:
        process.join(30)
    assert [p.exitcode for p in processes] == [0, 0]
    created = [v for result in results for v in result]
    assert len(set(created)) == 6
    sig_dir = tmp_path / "home" / "training_data" / SIG
    assert check_complete(sig_dir) == max(created, key=lambda v: (v[:16], int(v[17:] or 0)))
    assert len(make_store(tmp_path / "home").list_versions(SIG)) == 6


def _create_big(home: str, ready) -> None:
    store = make_store(Path(home))
    records = [ExampleRecord(values={"text": f"message number {i}", "intent": "card_arrival"}, signature=SIG,
                             source="", timestamp="2026-01-01T00:00:00+00:00") for i in range(BIG)]
    ready.set()
    store.create(SIG, records, source="bulk")


def _wait_for(process, sig_dir: Path, stage: str, before: set[str]) -> None:
    """Poll until the child reaches ``stage``: a new temp dir with files in it, or a new version dir."""
    def has_files(path: Path) -> bool:
        try:
            return path.name.startswith(".tmp-") and not path.is_symlink() and any(path.iterdir())
        except OSError:  # renamed away meanwhile
            return False

    deadline = time.monotonic() + 30
    while process.is_alive() and time.monotonic() < deadline:
        new = [p for p in sig_dir.iterdir() if p.name not in before]
        if stage == "files" and any(has_files(p) for p in new):
            return
        if stage == "version" and any(p.name.startswith("v") for p in new):
            return
        time.sleep(0.002)


@pytest.mark.slow
def test_sigkill_during_create_leaves_latest_complete(tmp_path: Path) -> None:
    home = tmp_path / "home"
    store = make_store(home)
    first = store.create(SIG, banking(stop=10), source="seed").version
    sig_dir = home / "training_data" / SIG
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["pytest", "ratchet.examples", "ratchet.data.datasets", "ratchet.programs"])
    killed = 0
    # Kill while validating (fixed delays), while the temp version is being written, and right after the
    # version directory is renamed into place (before or just after latest is switched).
    for stage, delay in (("start", 0.05), ("start", 0.8), ("files", 0.0), ("files", 0.03), ("version", 0.0)):
        ready = ctx.Event()
        process = ctx.Process(target=_create_big, args=(str(home), ready))
        before = {p.name for p in sig_dir.iterdir()}
        process.start()
        assert ready.wait(60)
        if stage != "start":
            _wait_for(process, sig_dir, stage, before)
        time.sleep(delay)
        if process.is_alive():
            os.kill(process.pid, signal.SIGKILL)
        process.join(30)
        killed += process.exitcode == -signal.SIGKILL
        latest = check_complete(sig_dir)
        assert latest >= first
        assert store.load(SIG).version == latest
    assert killed >= 3
    assert [p for p in sig_dir.iterdir() if p.name.startswith(".tmp-")]  # leftovers of the killed writers...
    store.sweep_temp(max_age_s=0)
    assert not [p for p in sig_dir.iterdir() if p.name.startswith(".tmp-")]  # ...are swept
    after = store.create(SIG, banking(stop=20), source="after")
    assert check_complete(sig_dir) == after.version and len(store.load(SIG)) == 20
