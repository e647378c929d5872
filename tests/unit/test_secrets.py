"""Secrets stay secret: credentials in URLs are masked wherever a URL is shown, and refused in ratchet.toml."""

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ratchet.cli.main import app
from ratchet.config import MASK, load_settings, mask_secrets, mask_url, mask_urls_in_text, url_credentials
from ratchet.errors import ConfigError
from ratchet.store.db import StateDB, normalize_url

runner = CliRunner()
PASSWORD = "s3cret-Pw"


@pytest.mark.parametrize(("url", "masked"), [
    ("postgresql+psycopg://ratchet:s3cret-Pw@db/ratchet", f"postgresql+psycopg://ratchet:{MASK}@db/ratchet"),
    ("postgresql://u:s3cret-Pw@db:5432/x?sslmode=require&options=-csearch_path%3Dr",
     f"postgresql://u:{MASK}@db:5432/x?sslmode=require&options=-csearch_path%3Dr"),
    ("postgresql://u@db/x?password=s3cret-Pw&sslpassword=s3cret-Pw&sslkey=/k.pem",
     f"postgresql://u@db/x?password={MASK}&sslpassword={MASK}&sslkey=/k.pem"),
    ("https://api.example.com/v1?api_key=s3cret-Pw&token=s3cret-Pw&tokenizer=bpe&debug",
     f"https://api.example.com/v1?api_key={MASK}&token={MASK}&tokenizer=bpe&debug"),
    ("postgresql://u:s3cret@Pw@db/x", f"postgresql://u:{MASK}@db/x"),  # unencoded "@": masked whole
    ("postgresql://u:s3cret/Pw@db/x", f"postgresql://u:{MASK}@db/x"),  # SQLAlchemy reads "s3cret/Pw"
    ("https://u:s3cret-Pw@[::1]:8000/v1#top", f"https://u:{MASK}@[::1]:8000/v1#top"),
])
def test_mask_url_hides_the_password_and_keeps_the_rest(url: str, masked: str) -> None:
    assert mask_url(url) == masked
    assert PASSWORD not in mask_url(url) and "s3cret" not in mask_url(url)
    assert url_credentials(url)


@pytest.mark.parametrize("url", ["sqlite:////var/lib/ratchet/ratchet.db", "postgresql://ratchet@db/ratchet",
                                 "postgresql://ratchet:@db/ratchet", "http://127.0.0.1:8000/v1", "local",
                                 "/a/path:with@colon", "https://h/v1?sslcert=/c.pem&keyfile=x"])
def test_urls_without_credentials_are_unchanged(url: str) -> None:
    assert mask_url(url) == url
    assert url_credentials(url) == []


def test_credentials_are_named_never_shown() -> None:
    found = url_credentials("postgresql://u:pw@h/db?sslpassword=x&sslmode=require")
    assert found == ["password", "query parameter 'sslpassword'"]


def test_urls_inside_text_and_json_are_masked() -> None:
    text = f"connection to postgresql://u:{PASSWORD}@h/db failed; retry https://x/y?token={PASSWORD}."
    assert PASSWORD not in mask_urls_in_text(text)
    assert mask_urls_in_text(text).startswith(f"connection to postgresql://u:{MASK}@h/db failed")
    data = {"database_url": f"postgresql://u:{PASSWORD}@h/db", "lm": {"prompt": {"api_base": f"https://u:{PASSWORD}@h"}},
            "programs": [f"https://u:{PASSWORD}@h/x"], "smtp_password": PASSWORD, "port": 5}
    masked = mask_secrets(data)
    assert PASSWORD not in json.dumps(masked)
    assert masked["database_url"] == f"postgresql://u:{MASK}@h/db"
    assert masked["port"] == 5


def test_config_show_masks_a_password_in_the_database_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RATCHET_DATABASE_URL", f"postgresql+psycopg://ratchet:{PASSWORD}@db/ratchet?sslmode=require")
    monkeypatch.setenv("RATCHET_LM__API_BASE", f"https://proxy.internal/v1?api_key={PASSWORD}")
    as_json = runner.invoke(app, ["config", "show", "--json"])
    assert as_json.exit_code == 0, as_json.output
    settings = json.loads(as_json.stdout)["settings"]
    assert settings["database_url"] == f"postgresql+psycopg://ratchet:{MASK}@db/ratchet?sslmode=require"
    assert settings["lm"]["api_base"] == f"https://proxy.internal/v1?api_key={MASK}"
    human = runner.invoke(app, ["config", "show"])
    assert human.exit_code == 0, human.output
    assert "ratchet:********@db/ratchet" in human.stdout
    for output in (as_json.output, human.output):
        assert PASSWORD not in output


@pytest.mark.parametrize(("toml", "key", "env"), [
    (f'database_url = "postgresql+psycopg://ratchet:{PASSWORD}@db/ratchet"\n', "database_url",
     "RATCHET_DATABASE_URL"),
    (f'database_url = "postgresql://ratchet@db/ratchet?password={PASSWORD}"\n', "database_url",
     "RATCHET_DATABASE_URL"),
    (f'database_url = "postgresql://ratchet:{PASSWORD}?x@db/ratchet"\n', "database_url", "RATCHET_DATABASE_URL"),
    (f'[lm]\nmodel = "openai/m"\napi_base = "https://u:{PASSWORD}@vllm.internal/v1"\n', "lm.api_base",
     "RATCHET_LM__API_BASE"),
    (f'[lm.prompt]\nmodel = "openai/m"\napi_base = "https://vllm/v1?api_key={PASSWORD}"\n', "lm.prompt.api_base",
     "RATCHET_LM__PROMPT__API_BASE"),
])
def test_a_password_in_ratchet_toml_is_refused(tmp_path: Path, toml: str, key: str, env: str) -> None:
    (tmp_path / "ratchet.toml").write_text(toml)
    with pytest.raises(ConfigError) as caught:
        load_settings()
    message = str(caught.value)
    assert f"key '{key}'" in message and str(tmp_path / "ratchet.toml") in message and env in message
    assert PASSWORD not in message
    if key == "database_url":
        assert "PGPASSWORD" in message and "~/.pgpass" in message
    result = runner.invoke(app, ["config", "show"])
    assert result.exit_code == 2 and PASSWORD not in result.output


def test_the_environment_may_carry_the_password(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "ratchet.toml").write_text('database_url = "postgresql+psycopg://ratchet@db/ratchet"\n'
                                           '[telemetry.redact_patterns]\ndsn = "postgres://[^:]+:[^@]+@"\n')
    assert load_settings().database_url == "postgresql+psycopg://ratchet@db/ratchet"  # PGPASSWORD / ~/.pgpass
    monkeypatch.setenv("RATCHET_DATABASE_URL", f"postgresql+psycopg://ratchet:{PASSWORD}@db/ratchet")
    assert load_settings().database_url == f"postgresql+psycopg://ratchet:{PASSWORD}@db/ratchet"


def test_a_bad_value_is_reported_without_echoing_a_secret(tmp_path: Path) -> None:
    (tmp_path / "ratchet.toml").write_text(f'[serve]\nport = "http://u:{PASSWORD}@host"\n')
    with pytest.raises(ConfigError, match=r"serve\.port") as caught:
        load_settings()
    assert PASSWORD not in str(caught.value)


def test_state_db_url_and_errors_never_show_the_password() -> None:
    db = StateDB(f"postgresql://ratchet:{PASSWORD}@db.invalid/ratchet?sslpassword={PASSWORD}&sslmode=require")
    assert db.url == f"postgresql+psycopg://ratchet:{MASK}@db.invalid/ratchet?sslmode=require&sslpassword={MASK}"
    assert PASSWORD not in repr(db)
    for bad in (f"postgresql://u:{PASSWORD}@h:port{PASSWORD}/db", f"not a url {PASSWORD}"):
        with pytest.raises(ConfigError) as caught:
            normalize_url(bad)
        assert PASSWORD not in str(caught.value)
