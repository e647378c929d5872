"""Issue 13, item 2: feedback that cannot be forged. Only request ids the service issued are accepted, only from keys
with the feedback role; a later score is a recorded revision; 1,000 forged or replayed posts change neither the
collected dataset nor the rollout decision (real uvicorn server, real state database)."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from test_http_api import _wait_ready, intent_responder, running

from ratchet.auth import create_key
from ratchet.config import Settings
from ratchet.data.collect.telemetry import TelemetryCollector
from ratchet.evaluation import fewshot_program
from ratchet.lm import CompletionAdapter, LMBundle
from ratchet.programs.versions import VersionStore
from ratchet.rollout import RolloutController
from ratchet.serve import Runtime
from ratchet.store.feedback import feedback_history
from ratchet.store.outcomes import read_arm_stats

SIG = "classify_intent"
PREDICT = f"/v1/programs/{SIG}/predict"


@pytest.fixture
def served(tmp_path: Path, free_port, scripted_lm) -> Iterator[tuple[str, Runtime, dict[str, str]]]:
    settings = Settings(home=tmp_path / "home")
    settings.auth.mode = "required"
    settings.telemetry.sampling_rate = 1.0
    settings.rollout.start_in_shadow = False
    settings.limits.requests_per_minute = 0  # 1,000 posts in a second from one key: forgery is the subject, not rate
    lm, _engine = scripted_lm(intent_responder)
    runtime = Runtime(settings, lms=LMBundle.for_lm(lm, CompletionAdapter()))
    spec = runtime.registry.get(SIG)
    store = VersionStore(settings.home_dir)
    store.save(spec, fewshot_program(spec, 2), lm="m", adapter="a")  # v1
    store.save(spec, fewshot_program(spec, 3), lm="m", adapter="a")  # v2
    RolloutController(settings, runtime.registry, db=runtime.db).start(SIG, "v2", experiment_id="exp_1",
                                                                       baseline="v1")
    runtime.follower.refresh()
    keys = {name: create_key(runtime.db, name, roles, created_by="test")[0]
            for name, roles in {"app": ["predict", "feedback"], "reader": ["read"],
                                "attacker": ["predict", "feedback"]}.items()}
    try:
        with running(runtime, free_port()) as url:
            assert _wait_ready(url).status_code == 200
            yield url, runtime, keys
    finally:
        runtime.close()


def _post(client: httpx.Client, path: str, body: dict, key: str | None = None) -> httpx.Response:
    return client.post(path, json=body, headers={"X-API-Key": key} if key else {})


def _snapshot(runtime: Runtime, out: Path) -> tuple[dict, tuple, list]:
    runtime.flush()
    controller = RolloutController(runtime.settings, runtime.registry, db=runtime.db)
    decision = controller.evaluate(controller.store.get("exp_1"))
    stats = {f"{v}/{a}": (s.quality_count, s.quality_mean)
             for (v, a), s in read_arm_stats(runtime.db, SIG, experiment_id="exp_1").items()}
    logs = sorted(runtime.telemetry.directory.rglob("*.jsonl"))
    TelemetryCollector(logs, runtime.registry, signature=SIG).collect(out)
    examples = [json.loads(line) for line in (out / f"{SIG}.jsonl").read_text().splitlines()]
    labels = sorted((e["text"], e["intent"]) for e in examples)
    # the decision and every trigger's verdict and numbers (not its wording, which names the stage's elapsed time)
    verdict = (decision.action, [(c.trigger, c.fired, round(c.estimate, 6), round(c.low, 6), round(c.high, 6),
                                  c.n_candidate, c.n_baseline) for c in decision.checks])
    return stats, verdict, labels


def test_forged_and_replayed_feedback_changes_nothing(served, tmp_path: Path) -> None:
    url, runtime, keys = served
    rng = random.Random(13)
    with httpx.Client(base_url=url, timeout=30) as client:
        served_ids = []
        for i in range(60):
            text = f"my card was stolen ({i})" if i % 2 else f"when will my card arrive ({i})"
            response = _post(client, PREDICT, {"inputs": {"text": text}, "request_id": f"client-{i}"}, keys["app"])
            assert response.status_code == 200
            served_ids.append(response.json()["request_id"])
        legit = []
        for i, request_id in enumerate(served_ids):
            body = {"request_id": request_id, "score": 1.0 if i % 3 else 0.0}
            if i % 5 == 0:
                body["correction"] = {"intent": "lost_or_stolen_card" if i % 2 else "card_arrival"}
            assert _post(client, "/v1/feedback", body, keys["app"]).status_code == 202
            legit.append(body)
        before = _snapshot(runtime, tmp_path / "before")
        assert before[2], "the legitimate feedback collects examples"

        statuses: dict[int, int] = {}

        def count(response: httpx.Response) -> None:
            statuses[response.status_code] = statuses.get(response.status_code, 0) + 1

        poison = {"score": 0.0, "correction": {"intent": "card_arrival"}}
        for i in range(250):  # no key at all, for real request ids
            count(_post(client, "/v1/feedback", {**poison, "request_id": served_ids[i % 60]}))
        for i in range(150):  # a key without the feedback role
            count(_post(client, "/v1/feedback", {**poison, "request_id": served_ids[i % 60]}, keys["reader"]))
        for i in range(300):  # a feedback key, but ids the service never issued
            real = served_ids[i % 60]
            forged = rng.choice([f"client-{i % 60}", f"r{rng.getrandbits(144):036x}",
                                 real[:-1] + ("0" if real[-1] != "0" else "1"), real.upper(), real + "0"])
            count(_post(client, "/v1/feedback", {**poison, "request_id": forged}, keys["attacker"]))
        for i in range(300):  # captured legitimate posts, replayed verbatim
            count(_post(client, "/v1/feedback", legit[i % 60], keys["app"]))
        assert sum(statuses.values()) == 1000
        assert statuses == {401: 250, 403: 150, 404: 300, 202: 300}, statuses

        after = _snapshot(runtime, tmp_path / "after")
    assert after == before  # the same quality per arm, the same decision, the same labelled examples
    history = feedback_history(runtime.db, served_ids[0])
    assert [h["revision"] for h in history] == list(range(1, 7))  # 1 original + 5 replays: recorded, not silent
    assert {h["principal"] for h in history} == {f"key:app/{keys['app'].split('_')[1]}"}


def test_a_revision_says_who_and_when(served) -> None:
    url, runtime, keys = served
    with httpx.Client(base_url=url, timeout=30) as client:
        request_id = _post(client, PREDICT, {"inputs": {"text": "stolen"}}, keys["app"]).json()["request_id"]
        first = _post(client, "/v1/feedback", {"request_id": request_id, "score": 0.2}, keys["app"]).json()
        second = _post(client, "/v1/feedback", {"request_id": request_id, "score": 0.9}, keys["attacker"]).json()
    assert (first["revision"], second["revision"]) == (1, 2)
    history = feedback_history(runtime.db, request_id)
    assert [(h["score"], h["principal"].split("/")[0]) for h in history] == [(0.2, "key:app"), (0.9, "key:attacker")]
    assert history[0]["created_at"] <= history[1]["created_at"]


def test_one_key_contributes_a_bounded_share_of_quality(served) -> None:
    url, runtime, keys = served
    with httpx.Client(base_url=url, timeout=30) as client:
        ids = [_post(client, PREDICT, {"inputs": {"text": f"stolen {i}"}}, keys["app"]).json()["request_id"]
               for i in range(30)]
        for request_id in ids:
            _post(client, "/v1/feedback", {"request_id": request_id, "score": 0.0}, keys["attacker"])
    runtime.flush()
    unbounded = read_arm_stats(runtime.db, SIG, experiment_id="exp_1")
    bounded = read_arm_stats(runtime.db, SIG, experiment_id="exp_1", feedback_per_key=5)
    assert sum(s.quality_count for s in unbounded.values()) == 30
    assert all(s.quality_count <= 5 for s in bounded.values())
    assert sum(s.quality_count for s in bounded.values()) == sum(min(s.quality_count, 5) for s in unbounded.values())


def test_an_idempotent_retry_gets_the_same_issued_id_and_arm(served) -> None:
    """A client's request_id is an idempotency key of its key: never the stored id, never another key's request."""
    url, _runtime, keys = served
    with httpx.Client(base_url=url, timeout=30) as client:
        answers = [_post(client, PREDICT, {"inputs": {"text": "x"}, "request_id": "same-key"}, keys["app"]).json()
                   for _ in range(4)]
        other = _post(client, PREDICT, {"inputs": {"text": "x"}, "request_id": "same-key"}, keys["attacker"]).json()
    assert len({(a["request_id"], a["arm"]) for a in answers}) == 1
    assert answers[0]["request_id"] != "same-key" and other["request_id"] != answers[0]["request_id"]
