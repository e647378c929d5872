"""A bad time budget is refused with a clear message before anything runs (flag and config file alike)."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from ratchet.cli.main import app


@pytest.mark.parametrize("command", [["optimize", "--signature"], ["cycle", "--signatures"]])
def test_a_budget_below_six_seconds_on_the_command_line_is_refused(command: list[str], tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, [*command, "classify_intent", "--budget-minutes", "0"])
    assert result.exit_code == 2
    assert "--budget-minutes" in result.output and "0.1" in result.output
    assert not (tmp_path / ".ratchet" / "runs").exists()  # nothing started


def test_a_negative_budget_in_the_config_file_names_the_key_and_the_file(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "ratchet.toml").write_text("[optimize]\nbudget_minutes = -5\n")
    result = CliRunner().invoke(app, ["optimize", "--signature", "classify_intent"])
    assert result.exit_code != 0
    assert "optimize.budget_minutes" in result.output and "ratchet.toml" in result.output
    assert "Traceback" not in result.output
