"""End to end: a real `ratchet serve` on the embedded model, load-test traffic with feedback from labels,
and the rollout controller rolling a broken candidate back (in its first stage, and in shadow before any
user saw it) and promoting a better one."""

from __future__ import annotations

import json
import time
import typing
from pathlib import Path

import dspy
import httpx
import pytest

from ratchet.config import load_settings
from ratchet.data.files import load_examples
from ratchet.data.sampling import balanced_demos, seeded_sample
from ratchet.evaluation import attach_demos, training_examples
from ratchet.examples.classify_intent import Intent
from ratchet.loop.rollouts import rollout_controller
from ratchet.programs import load_programs
from ratchet.programs.versions import VersionStore
from ratchet.routing import read_routing
from ratchet.serve.loadtest import run_http

pytestmark = [pytest.mark.integration, pytest.mark.slow]

TEST = Path(__file__).parents[2] / "src" / "ratchet" / "examples" / "data" / "banking77" / "test.jsonl"
CONFIG = """home = "state"
[telemetry]
sampling_rate = 0.0
[serve]
outcome_flush_interval_s = 0.2
routing_check_interval_s = 0.5
[rollout]
stages = [20, 50, 100]
min_stage_minutes = 0.0
min_stage_requests = 10
start_in_shadow = false
shadow_share = 1.0
shadow_min_requests = 20
max_shadow_calls_per_minute = 600
"""


@pytest.fixture(scope="module")
def workspace(tmp_path_factory, ratchet_server):
    root = tmp_path_factory.mktemp("rollout")
    (root / "ratchet.toml").write_text(CONFIG)
    settings = load_settings(root / "ratchet.toml")
    registry = load_programs(settings)
    spec = registry.get("classify_intent")
    store = VersionStore(settings.home_dir)
    demos = balanced_demos(training_examples(spec), 30, spec.label_field, seed=0)
    good = store.save(spec, attach_demos(spec.build(), demos), lm="embedded", adapter="CompletionAdapter",
                      notes="30 balanced demos").version
    labels = list(typing.get_args(Intent))
    wrong = [dspy.Example(text=d.text, intent=labels[(labels.index(d.intent) + 1) % len(labels)]) for d in demos]
    broken = store.save(spec, attach_demos(spec.build(), wrong), lm="embedded", adapter="CompletionAdapter",
                        notes="demos teach the wrong labels").version

    examples = seeded_sample(load_examples(TEST, spec.schema).examples, None, 3)
    with ratchet_server(root / "ratchet.toml", timeout_s=90) as url:
        yield {"settings": settings, "registry": registry, "spec": spec, "url": url, "good": good,
               "broken": broken, "examples": examples}


def drive(workspace, experiment_id: str, *, rounds: int = 12, per_round: int = 20,
          served: list | None = None) -> tuple[str, list[str]]:
    """Send traffic (with feedback from labels) and let the controller decide after each burst."""
    controller = rollout_controller(workspace["settings"], workspace["registry"])
    actions: list[str] = []
    offset = 0
    for _ in range(rounds):
        batch = workspace["examples"][offset:offset + per_round]
        offset += per_round
        report = run_http(workspace["url"], workspace["spec"], batch, queries=len(batch), concurrency=2,
                          feedback_from_labels=True)
        assert report.error_count == 0, report.to_dict()
        if served is not None:
            served.extend(report.versions)  # the versions that answered users
        time.sleep(1.5 if served is not None else 0.6)  # counters flushed (0.2 s); shadow calls finish
        decision = controller.check(experiment_id, actor="test-monitor")
        actions.append(decision.action)
        experiment = controller.store.get(experiment_id)
        if not experiment.live:
            return experiment.status, actions
        time.sleep(0.6)  # the server picks up the new routing within its check interval
    return controller.store.get(experiment_id).status, actions


def test_a_broken_candidate_is_rolled_back_automatically(workspace) -> None:
    controller = rollout_controller(workspace["settings"], workspace["registry"])
    controller.start("classify_intent", workspace["broken"], experiment_id="broken_demos",
                     baseline=workspace["good"])
    status, actions = drive(workspace, "broken_demos")
    assert status == "rolled_back", actions
    experiment = controller.store.get("broken_demos")
    assert experiment.reason.startswith("quality trigger")
    route = read_routing(workspace["settings"].home_dir / "routing_config.json").route("classify_intent")
    assert route is None  # the experiment ended: production serves everything
    alerts = list((workspace["settings"].home_dir / "alerts").glob("alert_warning_*.json"))
    assert alerts, "a rollback writes an alert file"


def test_a_broken_candidate_is_rolled_back_in_shadow_before_anyone_sees_it(workspace) -> None:
    controller = rollout_controller(workspace["settings"], workspace["registry"])
    controller.start("classify_intent", workspace["broken"], experiment_id="broken_shadow",
                     baseline=workspace["good"], shadow=True)
    time.sleep(2)  # the server follows the database every 0.5 s: the previous test's routing is gone
    served: list = []
    status, actions = drive(workspace, "broken_shadow", served=served)
    assert status == "rolled_back", actions
    experiment = controller.store.get("broken_shadow")
    assert experiment.reason.startswith("agreement trigger"), experiment.reason
    assert [e.kind for e in controller.store.events("broken_shadow")] == ["start", "rollback"]  # never a stage
    assert served and workspace["broken"] not in served  # no user was answered by it
    alert = next(a for a in map(json.loads, map(Path.read_text, (workspace["settings"].home_dir / "alerts").glob(
        "alert_warning_*.json"))) if a["details"].get("experiment_id") == "broken_shadow")
    assert alert["details"]["final_traffic_percent"] == 0
    rollback = controller.store.events("broken_shadow")[-1].metrics["metrics"]
    assert rollback["shadow"]["requests"] >= 20 and rollback["agreement"]["rate"] < 0.5


def test_a_better_candidate_is_promoted(workspace) -> None:
    controller = rollout_controller(workspace["settings"], workspace["registry"])
    controller.start("classify_intent", workspace["good"], experiment_id="good_demos", baseline="base")
    status, actions = drive(workspace, "good_demos")
    assert status == "promoted", actions
    assert "advance" in actions
    assert VersionStore(workspace["settings"].home_dir).projected_production("classify_intent") == workspace["good"]
    served = httpx.post(f"{workspace['url']}/v1/programs/classify_intent/predict",
                        json={"inputs": {"text": "my card has not arrived"}}, timeout=30).json()
    deadline = time.monotonic() + 5
    while served["version"] != workspace["good"] and time.monotonic() < deadline:
        time.sleep(0.5)
        served = httpx.post(f"{workspace['url']}/v1/programs/classify_intent/predict",
                            json={"inputs": {"text": "my card has not arrived"}}, timeout=30).json()
    assert served["version"] == workspace["good"]
