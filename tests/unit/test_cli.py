import json
from pathlib import Path

from typer.testing import CliRunner

from ratchet.cli.main import app
from ratchet.config import load_settings

runner = CliRunner()


def test_programs_list_json() -> None:
    result = runner.invoke(app, ["programs", "list", "--json"])
    assert result.exit_code == 0, result.output
    rows = {row["signature"]: row for row in json.loads(result.stdout)}
    assert rows["classify_intent"]["outputs"][0]["name"] == "intent"
    assert rows["extract_booking"]["metric"] == "slot_f1"
    assert rows["classify_intent"]["file"].endswith("classify_intent.py:40")


def test_config_show(tmp_path: Path) -> None:
    (tmp_path / "ratchet.toml").write_text('[lm]\nmodel = "openai/gpt-4o-mini"\napi_key_env = "OPENAI_API_KEY"\n')
    result = runner.invoke(app, ["config", "show", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["config_file"] == str(tmp_path / "ratchet.toml")
    assert data["settings"]["lm"]["api_key_env"] == "OPENAI_API_KEY"
    human = runner.invoke(app, ["config", "show"])
    assert "openai/gpt-4o-mini" in human.stdout


def test_bad_config_exits_2_with_the_key(tmp_path: Path) -> None:
    (tmp_path / "ratchet.toml").write_text("[lm]\nmax_tokens = -1\n")
    result = runner.invoke(app, ["config", "show"])
    assert result.exit_code == 2
    assert "lm.max_tokens" in result.stderr
    assert "ratchet.toml" in result.stderr


def test_init_writes_a_working_workspace(tmp_path: Path) -> None:
    result = runner.invoke(app, ["init", "ws"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "ws" / "ratchet.toml").is_file()
    settings = load_settings(tmp_path / "ws" / "ratchet.toml")
    assert settings.home_dir == tmp_path / "ws" / ".ratchet"
    listing = runner.invoke(app, ["--config", str(tmp_path / "ws" / "ratchet.toml"), "programs", "list", "--json"])
    assert listing.exit_code == 0, listing.output
    assert "triage_ticket" in {row["signature"] for row in json.loads(listing.stdout)}
    again = runner.invoke(app, ["init", "ws"])
    assert again.exit_code == 2
    assert "--force" in again.stderr


def test_unknown_signature_and_bad_input_exit_2() -> None:
    result = runner.invoke(app, ["predict", "classify_intnet", "--input", "text=hi"])
    assert result.exit_code == 2
    assert "did you mean 'classify_intent'" in result.stderr
    result = runner.invoke(app, ["predict", "classify_intent", "--input", "txt=hi"])
    assert result.exit_code == 2
    assert "unknown input field 'txt'" in result.stderr
    result = runner.invoke(app, ["predict", "classify_intent", "--input", "novalue"])
    assert result.exit_code == 2
    assert "expected field=value" in result.stderr


def test_eval_reports_unusable_data(tmp_path: Path) -> None:
    (tmp_path / "bad.jsonl").write_text('{"text": "x", "intent": "nope"}\nnot json\n')
    result = runner.invoke(app, ["eval", "classify_intent", "--data", "bad.jsonl"])
    assert result.exit_code == 2
    assert "no usable examples (2 skipped" in result.stderr


def test_library_output_goes_to_the_log_not_the_terminal(tmp_path: Path, capsys) -> None:
    import sys

    import tqdm

    from ratchet.cli.output import captured_output, print_json, progress_bar

    log = tmp_path / "logs" / "optimize.log"
    with progress_bar() as progress, captured_output(log):
        task = progress.add_task("optimize", total=3, status="")
        print("Bootstrapping set 1/3")  # what DSPy's optimizers print
        for _ in tqdm.tqdm(range(3), file=None):
            progress.advance(task)
        sys.stderr.write("a warning\n")
    print_json({"ok": True})
    out = capsys.readouterr()
    assert json.loads(out.out) == {"ok": True}  # stdout stays one JSON document
    assert "Bootstrapping" not in out.err and "a warning" not in out.err
    written = log.read_text()
    assert "Bootstrapping set 1/3" in written and "a warning" in written and "3/3" in written
