"""The shipped deployment files are valid and use the probes the server really has."""

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

DEPLOY = Path(__file__).parents[2] / "deploy"


@pytest.mark.parametrize("manifest", sorted((DEPLOY / "kubernetes").glob("*.yaml")), ids=lambda p: p.name)
def test_kubernetes_manifests_are_valid(manifest: Path) -> None:
    import kubernetes_validate

    for document in yaml.safe_load_all(manifest.read_text()):
        kubernetes_validate.validate(document, "1.37.0", strict=True)


def test_the_server_deployment_probes_liveness_and_readiness_separately() -> None:
    from ratchet.config import Settings
    from ratchet.serve.app import create_app

    documents = list(yaml.safe_load_all((DEPLOY / "kubernetes" / "serve.yaml").read_text()))
    container = next(d for d in documents if d["kind"] == "Deployment")["spec"]["template"]["spec"]["containers"][0]
    assert container["livenessProbe"]["httpGet"]["path"] == "/health"
    assert container["startupProbe"]["httpGet"]["path"] == "/health"
    assert container["readinessProbe"]["httpGet"]["path"] == "/ready"
    routes = {route.path for route in create_app(Settings()).routes}
    assert {"/health", "/ready"} <= routes


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
@pytest.mark.parametrize("unit", sorted((DEPLOY / "systemd").glob("*.service")), ids=lambda p: p.name)
def test_systemd_units_verify(unit: Path, tmp_path: Path) -> None:
    """`systemd-analyze verify` finds nothing but the paths that exist only once deployed."""
    copy = tmp_path / unit.name
    copy.write_text(unit.read_text())
    done = subprocess.run(["systemd-analyze", "verify", "--man=no", str(copy)], capture_output=True, text=True,
                          timeout=60, check=False)
    problems = [line for line in done.stderr.splitlines()
                if line.strip() and "is not executable: No such file or directory" not in line]
    assert not problems, done.stderr
