"""The shipped Prometheus rules and Grafana dashboard: valid, tested, and only over metrics Ratchet exports."""

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from ratchet.loop.supervisor import FAMILIES as CONTROLLER_FAMILIES
from ratchet.monitor.annotation_metrics import FAMILIES as ANNOTATION_FAMILIES
from ratchet.monitor.canary.exposition import FAMILIES as CANARY_FAMILIES
from ratchet.monitor.drift.exposition import FAMILIES as DRIFT_FAMILIES
from ratchet.monitor.golden_metrics import FAMILIES as GOLDEN_FAMILIES
from ratchet.serve import metrics

DEPLOY = Path(__file__).parents[2] / "deploy"
ALERTS = DEPLOY / "prometheus" / "alerts.yml"
ALERTS_TEST = DEPLOY / "prometheus" / "alerts_test.yml"
DASHBOARD = DEPLOY / "grafana" / "ratchet.json"
METRIC = re.compile(r"\b((?:dspy|ratchet)_[A-Za-z0-9_]+)\b")
SEED_ALERTS = {"DSPyHighErrorRate": ("critical", "5m"), "DSPyHighLatency": ("critical", "10m"),
               "DSPyElevatedLatency": ("warning", "15m"), "DSPyHighCost": ("warning", "30m")}


def exported() -> dict[str, set[str]]:
    """Family name → the series names Prometheus sees, for every metric in ratchet.serve.metrics and the drift and
    canary, annotation and golden gauges (written by the drift and annotation checks, canary runs and the eval
    regression, exposed by `ratchet serve` from <home>/metrics)."""
    suffixes = {"counter": ("_total", "_created"), "histogram": ("_bucket", "_sum", "_count", "_created"),
                "gauge": ("",), "summary": ("_sum", "_count", "_created")}
    families = {}
    for name in metrics.__all__:
        collector = getattr(metrics, name)
        if not hasattr(collector, "describe"):
            continue
        for family in collector.describe():
            families[family.name] = {family.name + s for s in suffixes[family.type]}
    for name in (*DRIFT_FAMILIES, *CANARY_FAMILIES, *ANNOTATION_FAMILIES, *GOLDEN_FAMILIES):
        families[name] = {name}
    for name, (kind, _help, _labels) in CONTROLLER_FAMILIES.items():  # written by `ratchet controller`
        families[name] = {name + s for s in suffixes[kind] if s != "_created"}
    return families


def series_names() -> set[str]:
    return {name for names in exported().values() for name in names}


def _promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.skip("promtool not installed (Debian: apt-get install prometheus; `make test` installs it)")
    return path


def test_promtool_checks_the_rules() -> None:
    done = subprocess.run([_promtool(), "check", "rules", str(ALERTS)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


def test_promtool_rule_unit_tests_pass() -> None:
    done = subprocess.run([_promtool(), "test", "rules", str(ALERTS_TEST)], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


def test_prometheus_config_is_valid() -> None:
    done = subprocess.run([_promtool(), "check", "config", str(DEPLOY / "prometheus" / "prometheus.yml")],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


def test_rules_keep_the_seed_alerts_and_use_real_metric_names() -> None:
    rules = {rule["alert"]: rule for group in yaml.safe_load(ALERTS.read_text())["groups"]
             for rule in group["rules"]}
    for name, (severity, duration) in SEED_ALERTS.items():
        assert rules[name]["labels"]["severity"] == severity
        assert rules[name]["for"] == duration
    assert 'quantile="' not in ALERTS.read_text()  # a histogram has no quantile label
    assert "histogram_quantile(0.95" in rules["DSPyHighLatency"]["expr"]
    known = series_names()
    for name, rule in rules.items():
        used = set(METRIC.findall(rule["expr"]))
        assert used, name
        assert used <= known, f"{name} uses {used - known}"
    tested = set(re.findall(r"alertname: (\w+)", ALERTS_TEST.read_text()))
    assert set(rules) <= tested, f"rules without a unit test: {set(rules) - tested}"


def test_dashboard_is_a_grafana_model_over_exported_metrics() -> None:
    board = json.loads(DASHBOARD.read_text())
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    assert board["uid"] and board["title"] and isinstance(board["schemaVersion"], int)
    panels = board["panels"]
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids))
    known = series_names()
    used: set[str] = set()
    for panel in panels:
        assert {"h", "w", "x", "y"} <= set(panel["gridPos"]) and panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24
        if panel["type"] == "row":
            continue
        assert panel["datasource"]["uid"] == "${datasource}"
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            names = set(METRIC.findall(target["expr"]))
            assert names, f"{panel['title']}: {target['expr']}"
            assert names <= known, f"{panel['title']} uses {names - known}"
            assert target["expr"].count("(") == target["expr"].count(")")
            used |= names
    families_shown = {family for family, names in exported().items() if names & used}
    assert families_shown == set(exported()), f"metrics without a panel: {set(exported()) - families_shown}"
    rows = [p["title"] for p in panels if p["type"] == "row"]
    assert len(rows) >= 5
    assert any("histogram_quantile(0.99" in t["expr"] for p in panels for t in p.get("targets", []))
