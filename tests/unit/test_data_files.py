import gzip
import json
from pathlib import Path

import dspy
import pytest

from ratchet.data import balanced_demos, load_examples, seeded_sample
from ratchet.errors import DataError
from ratchet.examples.classify_intent import ClassifyIntent
from ratchet.programs.schema import ProgramSchema
from ratchet.store import append_jsonl, read_jsonl

SCHEMA = ProgramSchema.from_signature(ClassifyIntent)


def test_jsonl_bad_lines_are_skipped_and_counted(tmp_path: Path) -> None:
    path = tmp_path / "data.jsonl"
    path.write_bytes(
        b'{"text": "where is my card", "intent": "card_arrival"}\n'
        b"not json\n"
        b"\n"
        b'[1, 2]\n'
        b'{"text": "bad \xff utf8", "intent": "card_arrival"}\n'
        b'{"text": "pin", "intent": "pin_blocked", "id": 7}\n'
        b'{"text": "x", "intent": "no_such_intent"}\n'
        b'{"intent": "pin_blocked"}\n'
        b'{"text": "torn'
    )
    loaded = load_examples(path, SCHEMA)
    assert [e.text for e in loaded.examples] == ["where is my card", "pin"]
    assert loaded.skipped == 6
    assert any("invalid UTF-8" in e for e in loaded.errors)
    assert any("output field 'intent'" in e for e in loaded.errors)
    assert any("missing input field 'text'" in e for e in loaded.errors)
    assert set(loaded.examples[0].inputs().keys()) == {"text"}


def test_json_csv_and_gzip(tmp_path: Path) -> None:
    rows = [{"text": "a", "intent": "age_limit"}, {"text": "b", "intent": "atm_support"}]
    (tmp_path / "d.json").write_text(json.dumps({"examples": rows}))
    (tmp_path / "d.csv").write_text("text,intent\na,age_limit\nb,atm_support\n")
    with gzip.open(tmp_path / "d.jsonl.gz", "wt") as fh:
        fh.write("\n".join(json.dumps(r) for r in rows) + "\n")
    for name in ("d.json", "d.csv", "d.jsonl.gz"):
        assert [e.intent for e in load_examples(tmp_path / name, SCHEMA).examples] == ["age_limit", "atm_support"]


def test_unreadable_files_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no such file"):
        load_examples(tmp_path / "missing.jsonl", SCHEMA)
    (tmp_path / "bad.json").write_text("{oops")
    with pytest.raises(DataError, match="invalid JSON at line 1"):
        load_examples(tmp_path / "bad.json", SCHEMA)
    (tmp_path / "d.txt").write_text("x")
    with pytest.raises(DataError, match="unsupported file type"):
        load_examples(tmp_path / "d.txt", SCHEMA)


def test_append_jsonl_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "log.jsonl"
    append_jsonl(path, [{"a": 1}, {"b": "é"}])
    append_jsonl(path, [])
    append_jsonl(path, [{"c": None}])
    records, stats = read_jsonl(path)
    assert records == [{"a": 1}, {"b": "é"}, {"c": None}]
    assert stats.bad_lines == 0


def test_balanced_demos_cover_every_class_before_repeating() -> None:
    trainset = [dspy.Example(text=str(i), intent="a") for i in range(50)]
    trainset += [dspy.Example(text=str(i), intent="b") for i in range(3)]
    trainset += [dspy.Example(text=str(i), intent="c") for i in range(10)]
    demos = balanced_demos(trainset, 9, "intent", seed=1)
    counts = {label: sum(d.intent == label for d in demos) for label in "abc"}
    assert counts == {"a": 3, "b": 3, "c": 3}
    assert balanced_demos(trainset, 9, "intent", seed=1) == demos
    assert len(balanced_demos(trainset, 100, "intent")) == 63
    assert balanced_demos(trainset, 0, "intent") == []
    assert len(balanced_demos(trainset, 5, None)) == 5


def test_seeded_sample_is_stable() -> None:
    assert seeded_sample(range(10), 3, seed=4) == seeded_sample(range(10), 3, seed=4)
    assert sorted(seeded_sample(range(10), None)) == list(range(10))
