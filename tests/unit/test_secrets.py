"""The service secret: from the environment, else one generated key file every process agrees on."""

from __future__ import annotations

import stat
import threading

import pytest

from ratchet.config import Settings
from ratchet.errors import ConfigError
from ratchet.store.secrets import SECRET_FILE, derived_key, service_secret


def test_generated_once_owner_only_and_shared_by_racing_processes(tmp_path):
    settings = Settings(home=tmp_path / "home")
    seen: list[bytes] = []
    threads = [threading.Thread(target=lambda: seen.append(service_secret(settings))) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(seen)) == 1 and len(seen[0]) == 64
    path = tmp_path / "home" / SECRET_FILE
    assert stat.S_IMODE(path.stat().st_mode) & 0o077 == 0
    assert [p.name for p in path.parent.iterdir()] == ["service.key"]  # no staged leftovers


def test_environment_wins_and_purposes_get_different_keys(tmp_path):
    settings = Settings(home=tmp_path, secret_key="x" * 32)
    assert service_secret(settings) == b"x" * 32
    assert not (tmp_path / SECRET_FILE).exists()
    assert derived_key(settings, "request-ids") != derived_key(settings, "user-pseudonyms")
    assert derived_key(settings, "request-ids") == derived_key(Settings(home=tmp_path, secret_key="x" * 32),
                                                               "request-ids")


def test_short_secret_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="RATCHET_SECRET_KEY is too short"):
        service_secret(Settings(home=tmp_path, secret_key="short"))
