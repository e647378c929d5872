"""Secrets stay secret: credentials in URLs are masked wherever a URL is shown."""

import json

import pytest
from typer.testing import CliRunner

from ratchet.cli.main import app
from ratchet.config import MASK, mask_secrets, mask_url, mask_urls_in_text, url_credentials
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


def test_state_db_url_and_errors_never_show_the_password() -> None:
    db = StateDB(f"postgresql://ratchet:{PASSWORD}@db.invalid/ratchet?sslpassword={PASSWORD}&sslmode=require")
    assert db.url == f"postgresql+psycopg://ratchet:{MASK}@db.invalid/ratchet?sslmode=require&sslpassword={MASK}"
    assert PASSWORD not in repr(db)
    for bad in (f"postgresql://u:{PASSWORD}@h:port{PASSWORD}/db", f"not a url {PASSWORD}"):
        with pytest.raises(ConfigError) as caught:
            normalize_url(bad)
        assert PASSWORD not in str(caught.value)
