import json
import os
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from ratchet.cli import dataset_cmd
from ratchet.cli.main import RatchetGroup
from ratchet.errors import DataError, UnknownProgramError

SIG = "classify_intent"
TRAIN = Path(__file__).parents[2] / "src" / "ratchet" / "examples" / "data" / "banking77" / "train.jsonl"
runner = CliRunner()


def invoke(*args: str) -> object:
    return runner.invoke(dataset_cmd.app, [str(a) for a in args])


def rows(start: int, stop: int) -> list[str]:
    return TRAIN.read_text().splitlines()[start:stop]


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    a, b, c = tmp_path / "a.jsonl", tmp_path / "in" / "b.jsonl", tmp_path / "in" / "c.jsonl"
    b.parent.mkdir()
    a.write_text("\n".join(rows(0, 100)) + "\n")
    b.write_bytes(("\n".join(rows(80, 150)) + "\n").encode() + b'not json\n{"text": "bad \xff", "intent": "x"}\n'
                  + b'{"text": "no label"}\n{"text": "' + b"y" * 30_000 + b'", "intent": "age_limit"}\n')
    c.write_text("\n".join(rows(150, 160)) + "\n")
    return {"a": a, "b": b, "c": c, "dir": b.parent}


def test_create_add_list_load_diff_archive(tmp_path: Path, files: dict[str, Path]) -> None:
    created = invoke("create", "--signature", SIG, "--examples", files["a"], "--source", "git_mining",
                     "--notes", "first", "--json")
    assert created.exit_code == 0, created.output
    first = json.loads(created.stdout)
    assert first["added"] == 100 and first["parent"] is None and first["read"]["skipped_lines"] == 0

    added = invoke("add", "-s", SIG, "--examples", files["dir"], "--source", "synthetic", "--json")
    assert added.exit_code == 0, added.output
    second = json.loads(added.stdout)
    assert second["parent"] == first["version"]
    assert second["added"] == 60 and second["skipped_duplicates"] == 20 and second["example_count"] == 160
    assert second["read"]["skipped_lines"] == 2  # invalid JSON, invalid UTF-8
    reasons = [r["reason"] for r in second["rejections"]]
    assert second["rejected"] == 2
    assert any("missing output field 'intent'" in r for r in reasons)
    assert any("max_field_chars" in r for r in reasons)

    human = invoke("add", "-s", SIG, "--examples", files["b"], "--source", "x")
    assert human.exit_code != 0 and isinstance(human.exception, DataError)  # all duplicates or rejected
    assert "nothing stored" in str(human.exception)

    listed = invoke("list", "--signature", SIG, "--json")
    versions = json.loads(listed.stdout)["versions"]
    assert [(v["version"], v["latest"], v["example_count"]) for v in versions] == [
        (first["version"], False, 100), (second["version"], True, 160)]
    table = invoke("list", "--signature", SIG)
    assert "latest" in table.stdout and "synthetic 60" in table.stdout.replace("\n", " ")

    summary = json.loads(invoke("load", "-s", SIG, "--split", "test", "--json").stdout)
    assert summary["version"] == second["version"] and summary["examples"] == summary["split_counts"]["test"]
    out = tmp_path / "export" / "train.jsonl"
    exported = invoke("load", "-s", SIG, "--version", first["version"], "--split", "train", "--output", out)
    assert exported.exit_code == 0, exported.output
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert lines and all(line["_meta"]["split"] == "train" for line in lines)
    assert "wrote" in exported.stdout and "examples" in exported.stdout

    diffed = invoke("diff", "-s", SIG, first["version"], "latest", "--json")
    diff = json.loads(diffed.stdout)
    assert diff["counts"]["added"] == 60 and diff["counts"]["removed"] == 0
    assert diff["distributions"]["sources"]["synthetic"]["change"] == 60
    readable = invoke("diff", "-s", SIG, first["version"], "latest")
    assert "+60" in readable.stdout and "added (5 of 60)" in readable.stdout

    dry = json.loads(invoke("archive", "-s", SIG, "--older-than-days", "0", "--keep", "1", "--dry-run",
                            "--json").stdout)
    assert [v["version"] for v in dry["archived"]] == [first["version"]]
    assert (tmp_path / ".ratchet" / "training_data" / SIG / first["version"]).is_dir()
    done = invoke("archive", "-s", SIG, "--older-than-days", "0", "--keep", "1")
    assert done.exit_code == 0 and "archived" in done.stdout
    assert "archived" in invoke("list", "-s", SIG).stdout
    assert "nothing to archive" in invoke("archive", "-s", SIG).stdout
    restored = json.loads(invoke("load", "-s", SIG, "--version", first["version"], "--json").stdout)
    assert restored["examples"] == 100


def test_examples_take_several_paths_like_a_shell_glob(files: dict[str, Path]) -> None:
    result = invoke("create", "-s", SIG, "--examples", files["a"], files["c"], "--source", "git", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["added"] == 110


def test_human_output_reports_skips_and_rejections(files: dict[str, Path]) -> None:
    invoke("create", "-s", SIG, "--examples", files["a"], "--source", "git")
    result = invoke("add", "-s", SIG, "--examples", files["b"], "--source", "synthetic")
    assert result.exit_code == 0, result.output
    text = " ".join(result.stdout.split())
    assert "+50 new" in text and "20 skipped" in text
    assert "2 unreadable line(s) skipped" in text and "invalid UTF-8" in text
    assert "2 rejected" in text and "missing output field 'intent'" in text


@pytest.fixture
def root() -> typer.Typer:
    """The sub-app under the real root group, as `ratchet dataset` will be wired."""
    app = typer.Typer(cls=RatchetGroup)

    @app.callback()
    def _root() -> None:
        pass

    app.add_typer(dataset_cmd.app, name="dataset")
    return app


def test_errors_are_one_line_and_exit_2(tmp_path: Path, files: dict[str, Path], root: typer.Typer) -> None:
    def run(*args: object) -> object:
        return runner.invoke(root, ["dataset", *[str(a) for a in args]])

    assert run("create", "-s", SIG, "-e", files["a"], "--source", "git").exit_code == 0
    store = tmp_path / ".ratchet" / "training_data" / SIG
    latest = os.readlink(store / "latest")
    cases = [
        (("list", "-s", "../x"), "invalid signature name '../x'"),
        (("create", "-s", "../x", "-e", files["a"], "--source", "s"), "invalid signature name"),
        (("load", "-s", "nope"), "unknown signature 'nope'"),
        (("load", "-s", SIG, "--version", "../../etc"), "invalid dataset version"),
        (("load", "-s", SIG, "--output", store / latest / "x.jsonl"), "refusing to write inside the dataset store"),
        (("load", "-s", SIG, "--output", store / "latest" / "dataset.json"), "refusing to write inside"),
        (("load", "-s", SIG, "--split", "holdout"), "unknown split"),
        (("create", "-s", SIG, "-e", tmp_path / "missing.jsonl", "--source", "s"), "no such file"),
        (("diff", "-s", SIG, latest, "v20000101_000000"), "no dataset version 'v20000101_000000'"),
    ]
    for args, message in cases:
        result = run(*args)
        assert result.exit_code == 2, (args, result.output)
        assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(b'not json\n{"text": "\xff\xfe", "intent": "age_limit"}\n')
    result = run("create", "-s", SIG, "-e", bad, "--source", "s")
    assert result.exit_code == 2 and "no readable examples" in result.stderr and "2 bad lines" in result.stderr
    assert os.readlink(store / "latest") == latest and len([p for p in store.iterdir() if p.name[0] == "v"]) == 1
    assert isinstance(invoke("load", "-s", "nope").exception, UnknownProgramError)
