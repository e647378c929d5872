"""The shipped deployment files are valid and use the routes, ports, keys and settings the code really has."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

DEPLOY = Path(__file__).parents[2] / "deploy"
KUBE = DEPLOY / "kubernetes"
KUBE_VERSION = "1.37.0"
MANIFESTS = sorted(p for p in KUBE.rglob("*.yaml") if p.name != "kustomization.yaml")
NOT_APPLIED = {"secret.example.yaml"}  # created once by the operator: `apply -k` must never overwrite it
REQUIRED_SECRET_ENV = {"RATCHET_DATABASE_URL", "RATCHET_SECRET_KEY"}
MEASURED = Path(__file__).parents[2] / "benchmarks" / "results" / "replica_memory.json"


def _documents(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


def _applied() -> list[dict]:
    kustomization = yaml.safe_load((KUBE / "kustomization.yaml").read_text())
    return [d for name in kustomization["resources"] for d in _documents(KUBE / name)]


def _one(kind: str, name: str) -> dict:
    return next(d for d in _applied() if d["kind"] == kind and d["metadata"]["name"] == name)


def _pod_specs() -> Iterator[tuple[str, dict]]:
    """(``Kind/name``, pod spec) of every workload that is applied."""
    for d in _applied():
        spec = {"Deployment": lambda s: s["template"]["spec"],
                "CronJob": lambda s: s["jobTemplate"]["spec"]["template"]["spec"]}.get(d["kind"])
        if spec:
            yield f"{d['kind']}/{d['metadata']['name']}", spec(d["spec"])


def _containers() -> Iterator[tuple[str, dict, dict]]:
    for name, pod in _pod_specs():
        for container in pod["containers"]:
            yield name, pod, container


def _quantity(text: str) -> float:
    """A memory quantity in MiB (``1536Mi``, ``2Gi``)."""
    units = {"Mi": 1.0, "Gi": 1024.0}
    return float(text[:-2]) * units[text[-2:]]


def _ratchet_toml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    from ratchet.config import load_settings

    for key in [k for k in os.environ if k.startswith("RATCHET_")]:
        monkeypatch.delenv(key)
    path = tmp_path / "ratchet.toml"
    path.write_text(_one("ConfigMap", "ratchet-config")["data"]["ratchet.toml"])
    return load_settings(path)


@pytest.mark.parametrize("manifest", MANIFESTS, ids=lambda p: str(p.relative_to(KUBE)))
def test_kubernetes_manifests_are_valid(manifest: Path) -> None:
    import kubernetes_validate

    documents = _documents(manifest)
    assert documents, f"{manifest.name} holds no object"
    for document in documents:
        kubernetes_validate.validate(document, KUBE_VERSION, strict=True)


def test_the_kustomization_applies_every_manifest_but_the_example_secret() -> None:
    kustomization = yaml.safe_load((KUBE / "kustomization.yaml").read_text())
    assert sorted(kustomization["resources"]) == sorted(p.name for p in MANIFESTS if p.name not in NOT_APPLIED)
    images = {image["name"] for image in kustomization["images"]}
    assert {container["image"] for _, _, container in _containers()} == images == {"ratchet"}


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl not installed (its kustomize renders the set)")
def test_kubectl_kustomize_renders_valid_objects() -> None:
    import kubernetes_validate

    done = subprocess.run(["kubectl", "kustomize", str(KUBE)], capture_output=True, text=True, timeout=60,
                          check=False)
    assert done.returncode == 0, done.stderr
    rendered = [d for d in yaml.safe_load_all(done.stdout) if d]
    assert len(rendered) == len(_applied())
    for document in rendered:
        kubernetes_validate.validate(document, KUBE_VERSION, strict=True)
        assert document["metadata"]["labels"]["app.kubernetes.io/part-of"] == "ratchet"


def test_the_server_probes_real_routes_on_its_port(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from ratchet.config import Settings
    from ratchet.serve.app import create_app

    settings = _ratchet_toml(tmp_path, monkeypatch)
    deployment = _one("Deployment", "ratchet-serve")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    assert ports == {"http": settings.serve.port}
    assert settings.serve.host == "0.0.0.0" and settings.serve.workers == 1
    assert container["startupProbe"]["httpGet"]["path"] == "/health"
    assert container["livenessProbe"]["httpGet"]["path"] == "/health"
    assert container["readinessProbe"]["httpGet"]["path"] == "/ready"
    routes = {route.path for route in create_app(Settings()).routes}
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"]["path"] in routes
        assert container[probe]["httpGet"]["port"] in ports
    startup = container["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 120, "the self-test needs time on a cold node"


def test_the_service_autoscaler_and_budget_select_the_server() -> None:
    deployment = _one("Deployment", "ratchet-serve")
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    container_ports = {p["name"] for p in deployment["spec"]["template"]["spec"]["containers"][0]["ports"]}
    service = _one("Service", "ratchet")
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert {port["targetPort"] for port in service["spec"]["ports"]} <= container_ports
    budget = _one("PodDisruptionBudget", "ratchet-serve")
    assert budget["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    hpa = _one("HorizontalPodAutoscaler", "ratchet-serve")
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "ratchet-serve"}
    assert "replicas" not in deployment["spec"], "the autoscaler owns the count: apply would reset it"
    assert hpa["spec"]["minReplicas"] >= 2 and budget["spec"]["maxUnavailable"] == 1
    assert [m["resource"]["name"] for m in hpa["spec"]["metrics"]] == ["cpu"]


def test_the_controller_is_one_replica_never_two_during_a_rollout() -> None:
    controller = _one("Deployment", "ratchet-controller")
    assert controller["spec"]["replicas"] == 1
    assert controller["spec"]["strategy"] == {"type": "Recreate"}
    assert controller["spec"]["template"]["spec"]["containers"][0]["args"][-2:] == ["controller", "run"]


def test_every_container_sets_resources() -> None:
    for name, _, container in _containers():
        resources = container.get("resources", {})
        assert {"cpu", "memory"} <= resources.get("requests", {}).keys(), name
        assert "memory" in resources.get("limits", {}), name
        assert _quantity(resources["limits"]["memory"]) >= _quantity(resources["requests"]["memory"]), name


def test_the_servers_memory_covers_the_measured_peak_with_headroom() -> None:
    """The request is sized from benchmarks/replica_memory.py (embedded model, the default in config.yaml)."""
    measured = json.loads(MEASURED.read_text())["medians"]["embedded"]
    peak = max(measured["peak_start_mb"], measured["peak_load_mb"], measured["hwm_mb"])
    resources = _one("Deployment", "ratchet-serve")["spec"]["template"]["spec"]["containers"][0]["resources"]
    assert _quantity(resources["requests"]["memory"]) == _quantity(resources["limits"]["memory"])
    assert _quantity(resources["limits"]["memory"]) >= 1.25 * peak


def test_every_pod_reads_the_config_and_secret_that_exist(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = _ratchet_toml(tmp_path, monkeypatch)
    secret = _documents(KUBE / "secret.example.yaml")[0]
    config_map = _one("ConfigMap", "ratchet-config")
    claims = {d["metadata"]["name"] for d in _applied() if d["kind"] == "PersistentVolumeClaim"}
    for name, pod, container in _containers():
        volumes = {v["name"]: v for v in pod["volumes"]}
        mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
        config_path = Path(container["args"][container["args"].index("--config") + 1])
        mount = mounts[str(config_path.parent)]
        assert volumes[mount["name"]]["configMap"]["name"] == config_map["metadata"]["name"], name
        assert config_path.name in config_map["data"], name
        home = volumes[mounts[str(settings.home)]["name"]]
        if name == "Deployment/ratchet-serve":  # its own home: versions and telemetry are in the state database
            assert "emptyDir" in home and settings.telemetry.sink in ("auto", "database"), name
        else:  # the controller and the jobs share datasets, runs and reports
            assert home["persistentVolumeClaim"]["claimName"] in claims, name
        required = set()
        for env in container.get("env", []):
            ref = env.get("valueFrom", {}).get("secretKeyRef")
            if ref:
                assert ref["name"] == secret["metadata"]["name"], name
                assert ref.get("optional") or ref["key"] in secret["stringData"], f"{name}: {ref['key']}"
                required.add(env["name"])
            if env["name"] == "RATCHET_CACHE_DIR":
                assert Path(env["value"]).is_relative_to(settings.home), name
        assert required >= REQUIRED_SECRET_ENV, name
        for source in container.get("envFrom", []):
            assert source["secretRef"]["name"] == secret["metadata"]["name"], name
    assert secret["stringData"].keys() >= REQUIRED_SECRET_ENV


def test_every_pod_runs_non_root_on_a_read_only_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = _ratchet_toml(tmp_path, monkeypatch)
    for name, pod, container in _containers():
        assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] > 0, name
        context = container["securityContext"]
        assert context["readOnlyRootFilesystem"] is True and context["allowPrivilegeEscalation"] is False, name
        assert context["capabilities"]["drop"] == ["ALL"], name
        writable = {m["mountPath"] for m in container["volumeMounts"] if not m.get("readOnly")}
        assert writable == {str(settings.home), "/tmp"}, name


def test_the_cronjobs_keep_the_schedule_settings() -> None:
    from ratchet.config import Settings

    schedule = Settings().schedule
    expected = {"ratchet-cycle": schedule.cycle_cron, "ratchet-checks": schedule.checks_cron,
                "ratchet-cleanup": schedule.cleanup_cron, "ratchet-flywheel": schedule.flywheel_cron,
                "ratchet-eval-regression": schedule.eval_regression_cron}
    jobs = {d["metadata"]["name"]: d["spec"] for d in _applied() if d["kind"] == "CronJob"}
    assert {name: spec["schedule"] for name, spec in jobs.items()} == expected
    assert all(spec["concurrencyPolicy"] == "Forbid" for spec in jobs.values())


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
