from pathlib import Path

import pytest

from ratchet.cli.config_cmd import masked_config
from ratchet.config import MASK, Settings, load_settings, mask_secrets
from ratchet.errors import ConfigError

TEMPLATE = Path(__file__).parents[2] / "src" / "ratchet" / "templates" / "ratchet.toml"


def test_defaults_without_a_config_file(tmp_path: Path) -> None:
    settings = load_settings()
    assert settings.config_file is None
    assert settings.lm.model == "local"
    assert settings.telemetry.sampling_rate == 0.10
    assert settings.home_dir == tmp_path / ".ratchet"
    assert settings.programs == ["ratchet.examples"]


def test_reads_ratchet_toml_in_the_working_directory(tmp_path: Path) -> None:
    (tmp_path / "ratchet.toml").write_text('home = "state"\n[lm]\nmodel = "openai/gpt-4o-mini"\nmax_tokens = 64\n')
    settings = load_settings()
    assert settings.config_file == tmp_path / "ratchet.toml"
    assert settings.lm.model == "openai/gpt-4o-mini"
    assert settings.lm.max_tokens == 64
    assert settings.home_dir == tmp_path / "state"


def test_relative_paths_resolve_against_the_config_file(tmp_path: Path) -> None:
    conf = tmp_path / "etc" / "ratchet.toml"
    conf.parent.mkdir()
    conf.write_text('home = "data"\n\n[lm.local]\nmodel_path = "models/other.gguf"\n')
    settings = load_settings(conf)
    assert settings.home_dir == tmp_path / "etc" / "data"
    assert settings.lm.local.model_path == tmp_path / "etc" / "models" / "other.gguf"


def test_config_env_variable_selects_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    conf = tmp_path / "other.toml"
    conf.write_text("[lm]\ntemperature = 0.5\n")
    monkeypatch.setenv("RATCHET_CONFIG", str(conf))
    assert load_settings().lm.temperature == 0.5


def test_environment_overrides_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "ratchet.toml").write_text("[lm]\nmax_tokens = 64\n[telemetry]\nsampling_rate = 0.2\n")
    monkeypatch.setenv("RATCHET_LM__MAX_TOKENS", "32")
    settings = load_settings()
    assert settings.lm.max_tokens == 32
    assert settings.telemetry.sampling_rate == 0.2


def test_bad_value_names_the_file_the_key_and_what_was_expected(tmp_path: Path) -> None:
    (tmp_path / "ratchet.toml").write_text('[lm]\ntemperature = "hot"\n')
    with pytest.raises(ConfigError) as err:
        load_settings()
    message = str(err.value)
    assert str(tmp_path / "ratchet.toml") in message
    assert "lm.temperature" in message
    assert "valid number" in message
    assert "'hot'" in message


def test_out_of_range_value(tmp_path: Path) -> None:
    (tmp_path / "ratchet.toml").write_text("[telemetry]\nsampling_rate = 1.5\n")
    with pytest.raises(ConfigError, match=r"telemetry.sampling_rate.*less than or equal to 1"):
        load_settings()


def test_unknown_key_is_reported(tmp_path: Path) -> None:
    (tmp_path / "ratchet.toml").write_text("[lm]\ntemprature = 0.1\n")
    with pytest.raises(ConfigError, match=r"unknown key 'lm.temprature'"):
        load_settings()


def test_bad_environment_value_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RATCHET_LM__MAX_TOKENS", "many")
    with pytest.raises(ConfigError, match=r"environment variable RATCHET_LM__MAX_TOKENS: key 'lm.max_tokens'"):
        load_settings()


def test_invalid_toml_and_missing_file(tmp_path: Path) -> None:
    (tmp_path / "ratchet.toml").write_text("[lm\nmodel = 1\n")
    with pytest.raises(ConfigError, match="invalid TOML"):
        load_settings()
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path / "missing.toml")


def test_per_signature_sampling_rates_are_checked(tmp_path: Path) -> None:
    (tmp_path / "ratchet.toml").write_text("[telemetry.per_signature]\nclassify_intent = 2.0\n")
    with pytest.raises(ConfigError, match="classify_intent"):
        load_settings()


def test_request_ids_are_kept_at_least_as_long_as_they_take_feedback(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "ratchet.toml").write_text("[serve]\nrequest_index_days = 30\n")
    with pytest.raises(ConfigError) as err:
        load_settings()
    assert str(err.value) == (f"{tmp_path / 'ratchet.toml'}: retention.request_index_days (7) is shorter than "
                              "serve.request_index_days (30): cleanup would delete request ids that can still "
                              "receive feedback, which then matches no arm")
    monkeypatch.setenv("RATCHET_RETENTION__REQUEST_INDEX_DAYS", "30")
    settings = load_settings()
    assert (settings.serve.request_index_days, settings.retention.request_index_days) == (30, 30)


def test_the_init_template_documents_the_defaults() -> None:
    import tomllib

    data = tomllib.loads(TEMPLATE.read_text())
    data.pop("programs")
    templated = Settings(**data).model_dump()
    defaults = Settings().model_dump()
    assert templated == defaults


def test_secrets_are_masked_but_variable_names_stay() -> None:
    data = {"lm": {"model": "local", "api_key_env": "OPENAI_API_KEY"},
            "alerts": {"smtp_password": "hunter2", "slack_webhook_url": "https://hooks/x", "smtp_port": 587,
                       "headers": [{"api_key": "k"}]}}
    masked = mask_secrets(data)
    assert masked["lm"] == {"model": "local", "api_key_env": "OPENAI_API_KEY"}
    assert masked["alerts"]["smtp_password"] == MASK
    assert masked["alerts"]["slack_webhook_url"] == MASK
    assert masked["alerts"]["smtp_port"] == 587
    assert masked["alerts"]["headers"] == [{"api_key": MASK}]
    assert data["alerts"]["smtp_password"] == "hunter2"  # the input is not modified


def test_masked_config_resolves_home(tmp_path: Path) -> None:
    assert masked_config(Settings())["home"] == str(tmp_path / ".ratchet")


def test_invalid_redaction_pattern_is_caught_at_load(tmp_path: Path) -> None:
    (tmp_path / "ratchet.toml").write_text('[telemetry.redact_patterns]\nemployee_id = "EMP-(\\\\d{6}"\n')
    with pytest.raises(ConfigError, match=r"telemetry.redact_patterns.*employee_id.*not a valid regular expression"):
        load_settings()
