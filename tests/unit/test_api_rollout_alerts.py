"""Promotions and rollbacks asked over the HTTP API are announced on the alert channels (the whole server)."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient
from test_http_api import intent_responder

from ratchet.auth import create_key
from ratchet.config import Settings
from ratchet.console.server import create_server
from ratchet.evaluation import fewshot_program
from ratchet.lm import CompletionAdapter, LMBundle
from ratchet.monitor.alert_board import read_alert_board
from ratchet.programs.versions import VersionStore
from ratchet.rollout import RolloutController
from ratchet.serve import Runtime
from ratchet.serve.app import create_app

SIG = "classify_intent"


def test_an_api_promotion_and_rollback_send_their_alerts(tmp_path: Path, scripted_lm) -> None:
    settings = Settings(home=tmp_path / "home")
    settings.auth.mode = "required"
    settings.rollout.start_in_shadow = False
    lm, _engine = scripted_lm(intent_responder)
    runtime = Runtime(settings, lms=LMBundle.for_lm(lm, CompletionAdapter()))
    try:
        spec = runtime.registry.get(SIG)
        versions = VersionStore(settings.home_dir)
        for k in (2, 3, 4):
            versions.save(spec, fewshot_program(spec, k), lm="m", adapter="a")
        controller = RolloutController(settings, runtime.registry, db=runtime.db)
        operator = {"X-API-Key": create_key(runtime.db, "oncall", ["operator"], created_by="test")[0]}
        controller.start(SIG, "v2", experiment_id="e1", baseline="v1")
        with TestClient(create_server(runtime=runtime)) as client:
            assert client.post("/v1/experiments/e1/promote", headers=operator).status_code == 200
            assert read_alert_board(settings).recent[0]["title"] == "A/B Test Promoted"
            controller.start(SIG, "v3", experiment_id="e2", baseline="v2")
            rolled = client.post("/v1/experiments/e2/rollback", json={"reason": "answers look off"}, headers=operator)
            assert rolled.status_code == 200
        sent = read_alert_board(settings).recent[0]
        assert sent["title"] == "A/B Test Rolled Back" and sent["details"]["reason"] == "answers look off"
        assert len(read_alert_board(settings).recent) == 2
        controller.start(SIG, "v1", experiment_id="e3", baseline="v3")
        with TestClient(create_app(runtime=runtime)) as api_only:  # the API alone has no alert sender
            assert api_only.post("/v1/experiments/e3/promote", headers=operator).status_code == 200
        assert len(read_alert_board(settings).recent) == 2
    finally:
        runtime.close()
