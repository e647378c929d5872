import json
from pathlib import Path
from typing import Any

import typer
from typer.testing import CliRunner

from ratchet.cli import data_cmd
from ratchet.cli.main import RatchetGroup
from ratchet.data.records import ExampleRecord
from ratchet.errors import DataError, UnknownProgramError
from ratchet.examples.classify_intent import DATA as BANKING

runner = CliRunner()
ROWS = [json.loads(line) for line in (BANKING / "train.jsonl").read_text().splitlines()]


def write_jsonl(path: Path, rows: list[dict[str, Any]], extra: bytes = b"") -> Path:
    path.write_bytes(b"".join(json.dumps(r).encode() + b"\n" for r in rows) + extra)
    return path


def tagged(rows: list[dict[str, Any]], signature: str = "classify_intent", **meta: Any) -> list[dict[str, Any]]:
    return [{**r, "_meta": {"signature": signature, **meta}} for r in rows]


def invoke(*args: str):
    return runner.invoke(data_cmd.app, list(args))


def test_validate_writes_accepted_rejected_and_report(tmp_path: Path) -> None:
    rows = tagged(ROWS[:60]) + tagged([ROWS[0], {"text": "where is my card", "intent": "nope"}])
    raw = write_jsonl(tmp_path / "raw.jsonl", rows, extra=b"{not json\n" + b'{"text": "\xff\xfe"}\n')
    result = invoke("validate", "--input", str(raw), "--output", "out")
    assert result.exit_code == 0, result.output
    assert "classify_intent" in result.stdout and "2 unreadable line(s) skipped" in result.stdout

    out = tmp_path / "out"
    accepted = [json.loads(line) for line in (out / "classify_intent.jsonl").read_text().splitlines()]
    rejected = [json.loads(line) for line in (out / "rejected.jsonl").read_text().splitlines()]
    report = json.loads((out / "validation_report.json").read_text())
    assert len(accepted) + len(rejected) == 62 == report["read"]["examples"]
    assert report["read"]["bad_lines"] == 2 and any("invalid UTF-8" in e for e in report["read"]["errors"])
    meta = accepted[0]["_meta"]
    assert meta["id"] and meta["quality"] > 0 and meta["difficulty"] in ("easy", "medium", "hard")
    assert meta["category"] == accepted[0]["intent"] and set(meta["metadata"]["quality_components"]) == {
        "completeness", "clarity", "relevance", "diversity"}
    reasons = {r["_meta"]["metadata"]["rejection_code"]: r["_meta"]["metadata"]["rejection_reason"] for r in rejected}
    assert "exact_duplicate" in reasons and "schema" in reasons and "intent" in reasons["schema"]
    row = report["signatures"]["classify_intent"]
    assert row["accepted"] == len(accepted) and row["rejections"]["schema"] == 1
    assert row["against_dataset"] is None and report["against_dataset"] == "latest"
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temp files left behind


def test_signature_option_fills_missing_signatures_and_json(tmp_path: Path) -> None:
    raw = write_jsonl(tmp_path / "raw.jsonl", ROWS[:10] + tagged([{"text": "table for 2", "people": "2"}],
                                                                  "extract_booking"))
    result = invoke("validate", "--input", str(raw), "--output", "out", "--signature", "classify_intent", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert list(report["signatures"]) == ["classify_intent"]
    assert report["totals"]["examples"] == 10 and report["read"]["bad_lines"] == 1  # the other signature's line
    assert not (tmp_path / "out" / "extract_booking.jsonl").exists()


def test_several_signatures_in_a_directory(tmp_path: Path) -> None:
    (tmp_path / "raw").mkdir()
    write_jsonl(tmp_path / "raw" / "a.jsonl", tagged(ROWS[:20]))
    write_jsonl(tmp_path / "raw" / "b.jsonl", tagged([{"text": "a table for 4 people on Friday", "people": "4"}],
                                                     "extract_booking"))
    result = invoke("validate", "--input", "raw", "--output", "out", "--json")
    assert result.exit_code == 0, result.output
    assert set(json.loads(result.stdout)["signatures"]) == {"classify_intent", "extract_booking"}
    assert (tmp_path / "out" / "extract_booking.jsonl").read_text().count("\n") == 1


def _latest_dataset(home: Path, signature: str, records: list[ExampleRecord]) -> None:
    version = home / "training_data" / signature / "v20260101_000000"
    version.mkdir(parents=True)
    (version / "dataset.json").write_text(json.dumps({"examples": [r.to_json() for r in records]}))
    (home / "training_data" / signature / "latest").symlink_to(version.name)


def test_against_latest_dataset(tmp_path: Path) -> None:
    old = ExampleRecord(values=dict(ROWS[0]), signature="classify_intent", source="git", id="old-one")
    _latest_dataset(tmp_path / ".ratchet", "classify_intent", [old])
    raw = write_jsonl(tmp_path / "raw.jsonl", tagged(ROWS[:5]))
    result = invoke("validate", "--input", str(raw), "--output", "out", "--json")
    report = json.loads(result.stdout)["signatures"]["classify_intent"]
    assert report["accepted"] == 4 and report["seeded"] == 1 and report["against_dataset"].endswith("dataset.json")
    rejected = json.loads((tmp_path / "out" / "rejected.jsonl").read_text())
    assert "old-one" in rejected["_meta"]["metadata"]["rejection_reason"]
    alone = invoke("validate", "--input", str(raw), "--output", "out2", "--against-dataset", "none", "--json")
    assert json.loads(alone.stdout)["signatures"]["classify_intent"]["accepted"] == 5


def test_unknown_signature_is_an_error_and_writes_nothing(tmp_path: Path) -> None:
    raw = write_jsonl(tmp_path / "raw.jsonl", tagged(ROWS[:3]) + tagged(ROWS[3:5], "clasify_intent"))
    result = invoke("validate", "--input", str(raw), "--output", "out")
    assert isinstance(result.exception, UnknownProgramError)
    assert "2 example(s) of unknown signature 'clasify_intent'" in str(result.exception)
    assert "did you mean 'classify_intent'" in str(result.exception)
    assert not (tmp_path / "out").exists()
    assert isinstance(invoke("validate", "--input", str(raw), "--output", "out", "--signature", "nope").exception,
                      UnknownProgramError)


def test_errors_exit_2_with_one_line_under_the_root_group(tmp_path: Path) -> None:
    root = typer.Typer(cls=RatchetGroup)
    root.add_typer(data_cmd.app, name="data")

    @root.callback()
    def _root() -> None:
        pass

    (tmp_path / "broken.json").write_text('{"examples": [ {"text": "a", ]}')
    result = runner.invoke(root, ["data", "validate", "--input", "broken.json", "--output", "out"])
    assert result.exit_code == 2
    assert "invalid JSON at line 1" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_bad_input_files_give_clear_errors(tmp_path: Path) -> None:
    (tmp_path / "latin1.json").write_bytes(b'[{"text": "caf\xe9", "intent": "card_arrival"}]')
    result = invoke("validate", "--input", "latin1.json", "--output", "out", "--signature", "classify_intent")
    assert isinstance(result.exception, DataError) and "not valid UTF-8" in str(result.exception)
    write_jsonl(tmp_path / "junk.jsonl", [], extra=b"\xff\xfe\n{oops\n[1]\n")
    result = invoke("validate", "--input", "junk.jsonl", "--output", "out", "--signature", "classify_intent")
    assert isinstance(result.exception, DataError)
    assert "no readable examples" in str(result.exception) and "3 bad lines" in str(result.exception)
    result = invoke("validate", "--input", "missing.jsonl", "--output", "out")
    assert isinstance(result.exception, DataError) and "no such file" in str(result.exception)
    assert not (tmp_path / "out").exists()
    (tmp_path / "afile").write_text("x")
    write_jsonl(tmp_path / "ok.jsonl", tagged(ROWS[:2]))
    result = invoke("validate", "--input", "ok.jsonl", "--output", "afile")
    assert isinstance(result.exception, DataError) and "is a file" in str(result.exception)


def test_rerun_replaces_outputs_atomically(tmp_path: Path) -> None:
    raw = write_jsonl(tmp_path / "raw.jsonl", tagged(ROWS[:30]))
    assert invoke("validate", "--input", str(raw), "--output", "out").exit_code == 0
    write_jsonl(raw, tagged(ROWS[30:35]))
    assert invoke("validate", "--input", str(raw), "--output", "out").exit_code == 0
    assert (tmp_path / "out" / "classify_intent.jsonl").read_text().count("\n") == 5
    assert (tmp_path / "out" / "rejected.jsonl").read_text() == ""


# -- gate ---------------------------------------------------------------------------------------


def gated_rows(n: int = 30, sources: tuple[str, ...] = ("git", "synthetic"), quality: float = 90.0
               ) -> list[dict[str, Any]]:
    levels = ["easy"] * 3 + ["medium"] * 5 + ["hard"] * 2
    return [{**ROWS[i * 30], "_meta": {"signature": "classify_intent", "source": sources[i % len(sources)],
                                  "quality": quality if i else quality - 30, "difficulty": levels[i % 10],
                                  "id": f"ex{i}"}} for i in range(n)]


def test_gate_passes_and_writes_a_report(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "batch.jsonl", gated_rows(quality=100.0))
    result = invoke("gate", "--input", "batch.jsonl", "--signature", "classify_intent", "--strict",
                    "--report", "gate.json")
    assert result.exit_code == 0, result.output
    assert "passed" in result.stdout and "min_quality" in result.stdout
    report = json.loads((tmp_path / "gate.json").read_text())
    assert report["passed"] and report["strict"] and report["examples"] == 30
    assert {c["name"] for c in report["checks"]} == {"min_quality", "difficulty_distribution", "category_diversity",
                                                     "source_diversity"}


def test_gate_warns_by_default_and_fails_in_strict_mode(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "batch.jsonl", gated_rows(sources=("git",)))
    lenient = invoke("gate", "--input", "batch.jsonl", "--signature", "classify_intent")
    assert lenient.exit_code == 0
    assert "warning" in lenient.stderr and "min_quality" in lenient.stderr and "source_diversity" in lenient.stderr
    strict = invoke("gate", "--input", "batch.jsonl", "--signature", "classify_intent", "--strict", "--json")
    assert strict.exit_code == 1
    document = json.loads(strict.stdout)
    assert not document["passed"] and document["failed"] == ["min_quality", "source_diversity"]
    assert "quality_gates: reject, reason: min_quality: 1 of 30 examples below 70" in strict.stderr
    assert "quality_score=60 < 70" in strict.stderr
    assert "reason: source_diversity: largest source 'git' is 100%" in strict.stderr
    no_strict = invoke("gate", "--input", "batch.jsonl", "--signature", "classify_intent", "--no-strict")
    assert no_strict.exit_code == 0


def test_gate_uses_settings_thresholds(tmp_path: Path) -> None:
    (tmp_path / "ratchet.toml").write_text("[data.gates.classify_intent]\nmin_quality = 50.0\nmax_source_share = 1.0\n")
    write_jsonl(tmp_path / "batch.jsonl", gated_rows(sources=("git",)))
    result = invoke("gate", "--input", "batch.jsonl", "--signature", "classify_intent", "--strict", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["thresholds"]["min_quality"] == 50.0


def test_validate_then_gate_on_the_output_directory(tmp_path: Path) -> None:
    rows = tagged(ROWS[::5], source="telemetry")
    rows[::3] = tagged(ROWS[::5][::3], source="synthetic")
    write_jsonl(tmp_path / "raw.jsonl", rows)
    assert invoke("validate", "--input", "raw.jsonl", "--output", "out").exit_code == 0
    result = invoke("gate", "--input", "out", "--signature", "classify_intent", "--json")
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    count = (tmp_path / "out" / "classify_intent.jsonl").read_text().count("\n")
    assert document["examples"] == count and document["read"]["bad_lines"] == 0
    assert next(c for c in document["checks"] if c["name"] == "category_diversity")["passed"]


def test_gate_errors(tmp_path: Path) -> None:
    result = invoke("gate", "--input", "nowhere", "--signature", "classify_intent")
    assert isinstance(result.exception, DataError) and "no such file" in str(result.exception)
    write_jsonl(tmp_path / "other.jsonl", tagged([{"text": "x", "people": "2"}], "extract_booking"))
    result = invoke("gate", "--input", "other.jsonl", "--signature", "classify_intent")
    assert isinstance(result.exception, DataError) and "no readable examples of 'classify_intent'" in str(
        result.exception)
    assert isinstance(invoke("gate", "--input", "other.jsonl", "--signature", "nope").exception, UnknownProgramError)
