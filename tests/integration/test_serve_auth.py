"""Issue 13, item 1 on the real command: `ratchet serve` bound beyond loopback requires keys made by `ratchet keys`;
turning keys off there is explicit, logged and audited."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from ratchet.audit import read_entries
from ratchet.config import load_settings

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _ratchet(config: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ratchet", "--config", str(config), *args], capture_output=True,
                          text=True, timeout=120, check=True)


def test_non_loopback_bind_requires_keys_from_the_cli(tmp_path: Path, ratchet_server) -> None:
    config = tmp_path / "ratchet.toml"
    config.write_text('home = "state"\n')
    created = json.loads(_ratchet(config, "keys", "create", "--name", "svc", "--role", "predict", "--json").stdout)
    key = created["key"]
    with ratchet_server(config, "--host", "0.0.0.0") as url:
        assert httpx.get(f"{url}/health").status_code == 200  # probes stay public
        body = {"inputs": {"text": "my card was stolen"}}
        anonymous = httpx.post(f"{url}/v1/programs/classify_intent/predict", json=body, timeout=60)
        assert anonymous.status_code == 401 and anonymous.json()["error"] == "unauthorized"
        served = httpx.post(f"{url}/v1/programs/classify_intent/predict", json=body, timeout=60,
                            headers={"Authorization": f"Bearer {key}"})
        assert served.status_code == 200, served.text
        assert httpx.get(f"{url}/metrics", headers={"X-API-Key": key}).status_code == 403  # predict only
        _ratchet(config, "keys", "revoke", "svc")
        listed = json.loads(_ratchet(config, "keys", "list", "--all", "--json").stdout)["keys"]
        assert [(k["name"], k["status"]) for k in listed] == [("svc", "revoked")]
    log = (tmp_path / "server.log").read_text()
    assert "API keys required" in log
    actions = [e["action"] for e in read_entries(load_settings(config).home_dir)]
    assert actions[:1] == ["keys.create"] and "auth.failure" in actions and "keys.revoke" in actions


def test_keys_off_beyond_loopback_is_logged_and_audited(tmp_path: Path, ratchet_server) -> None:
    config = tmp_path / "ratchet.toml"
    config.write_text('home = "state"\n[auth]\nmode = "off"\n')
    with ratchet_server(config, "--host", "0.0.0.0") as url:
        assert httpx.get(f"{url}/v1/programs").status_code == 200
    assert "auth.mode=off while binding 0.0.0.0" in (tmp_path / "server.log").read_text()
    [entry] = read_entries(load_settings(config).home_dir, action="auth.disabled")
    assert entry["target"] == "0.0.0.0" and entry["source"] == "cli"
