"""The console's annotation screen and triage page over a real state database, queue and report files."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient

from ratchet.annotate import create_tasks, get_task
from ratchet.audit import read_entries
from ratchet.auth import create_key
from ratchet.config import Settings
from ratchet.console import create_console_app
from ratchet.flywheel import parse_week, run_triage
from ratchet.store.db import StateDB

SIG = "classify_intent"
WEEK = "2026-W48"


@pytest.fixture
def console(tmp_path: Any) -> Iterator[tuple[TestClient, StateDB, Settings]]:
    settings = Settings(home=tmp_path / "home")
    settings.auth.mode = "required"
    with TestClient(create_console_app(settings)) as client, StateDB.connect(settings) as db:
        yield client, db, settings


def _csrf(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, html
    return match.group(1)


def _login(client: TestClient, db: StateDB, name: str, role: str) -> None:
    key, _ = create_key(db, name, [role], created_by="test")
    token = _csrf(client.get("/ui/login").text)
    done = client.post("/ui/login", data={"key": key, "csrf_token": token}, follow_redirects=False)
    assert done.status_code == 303, done.text


def _queue(db: StateDB) -> list[str]:
    return create_tasks(db, SIG, [
        {"request_id": f"r{i}", "inputs": {"text": text}, "output": {"intent": "card_arrival"}, "cluster": "c1",
         "cluster_label": "card, pin", "priority": 10 - i}
        for i, text in enumerate(["my card has not arrived", "my PIN is blocked", "<script>alert(1)</script>"])],
        week=WEEK, double_share=0.0).created


def test_an_annotator_answers_with_label_buttons_accept_and_reject(console) -> None:
    client, db, settings = console
    ids = _queue(db)
    _login(client, db, "ann", "annotate")
    first = client.get("/ui/annotate")
    assert first.status_code == 200 and ids[0] in first.text and "my card has not arrived" in first.text
    assert 'name="set:intent" value="pin_blocked"' in first.text and 'data-key="1"' in first.text
    assert 'data-key="a"' in first.text and 'data-key="r"' in first.text and 'data-key="s"' in first.text
    token = _csrf(first.text)
    accepted = client.post(f"/ui/annotate/{ids[0]}", data={"csrf_token": token, "action": "accept"},
                           follow_redirects=False)
    assert accepted.status_code == 303 and accepted.headers["location"] == "/ui/annotate?done=accept"
    second = client.get("/ui/annotate?done=accept")
    assert "accept recorded" in second.text and ids[1] in second.text
    corrected = client.post(f"/ui/annotate/{ids[1]}", data={"csrf_token": token, "set:intent": "pin_blocked"},
                            follow_redirects=False)
    assert corrected.status_code == 303
    third = client.get("/ui/annotate")
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in third.text and "<script>alert(1)" not in third.text
    no_reason = client.post(f"/ui/annotate/{ids[2]}", data={"csrf_token": token, "action": "reject"})
    assert no_reason.status_code == 409 and "needs a reason" in no_reason.text
    rejected = client.post(f"/ui/annotate/{ids[2]}", data={"csrf_token": token, "action": "reject",
                                                            "reason": "not a question"}, follow_redirects=False)
    assert rejected.status_code == 303
    assert [get_task(db, i).status for i in ids] == ["done", "done", "done"]
    assert "No task waits for you" in client.get("/ui/annotate").text
    entries = read_entries(settings.home_dir, action="annotation.submit")
    assert [e["details"].get("kind") for e in entries if e["outcome"] == "ok"] == ["accept", "correct", "reject"]
    assert all(e["actor"].startswith("key:ann/") and e["source"] == "http" for e in entries)


def test_bad_answers_and_foreign_requests_are_refused(console) -> None:
    client, db, _ = console
    ids = _queue(db)
    _login(client, db, "ann", "annotate")
    token = _csrf(client.get("/ui/annotate").text)
    bad = client.post(f"/ui/annotate/{ids[0]}", data={"csrf_token": token, "set:intent": "not_a_label"})
    assert bad.status_code == 422 and "intent" in bad.text and "Traceback" not in bad.text
    assert get_task(db, ids[0]).status == "leased"  # still theirs, nothing stored
    forged = client.post(f"/ui/annotate/{ids[0]}", data={"action": "accept"})
    assert forged.status_code == 403 and get_task(db, ids[0]).status == "leased"
    not_theirs = client.post(f"/ui/annotate/{ids[1]}", data={"csrf_token": token, "action": "accept"})
    assert not_theirs.status_code == 409 and "does not hold the lease" in not_theirs.text
    assert client.get("/ui/annotate/../annotate?signature=nope").status_code == 404


def test_a_read_key_cannot_annotate_and_an_annotate_key_cannot_read(console) -> None:
    client, db, _ = console
    ids = _queue(db)
    _login(client, db, "viewer", "read")
    page = client.get("/ui/annotate")
    assert page.status_code == 403 and "&#39;annotate&#39; role" in page.text
    assert client.post(f"/ui/annotate/{ids[0]}", data={"action": "accept"}).status_code == 403
    other = TestClient(client.app)
    _login(other, db, "ann2", "annotate")
    assert other.get("/ui").status_code == 403 and other.get("/ui/annotate").status_code == 200


def test_the_triage_page_shows_the_weeks_clusters_with_examples_and_a_chart(console) -> None:
    client, db, settings = console
    week = parse_week(WEEK)
    start = int(datetime(week.start.year, week.start.month, week.start.day, 12, tzinfo=UTC).timestamp() * 1000)
    texts = ["my card has not arrived yet", "my card still has not arrived", "card not arrived after two weeks",
             "how do I change my PIN", "I want to change my PIN number"]
    lines = [{"record": "interaction", "module_name": "m", "module_version": "v1", "signature": SIG,
              "input": {"text": t}, "output": {}, "timestamp_ms": start + i, "success": False,
              "request_id": f"f{i}", "error_type": "parse_error", "error": "parse_error"} for i, t in enumerate(texts)]
    (settings.home_dir / "telemetry").mkdir(parents=True)
    (settings.home_dir / "telemetry" / "interactions.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    run_triage(settings.home_dir, db, week)
    _login(client, db, "viewer", "read")
    page = client.get("/ui/triage")
    assert page.status_code == 200
    assert "2026-11-23 to 2026-11-30" in page.text and page.text.count("<article") == 2
    assert "<svg" in page.text and "Cluster sizes of classify_intent" in page.text
    assert "my card has not arrived yet" in page.text and "parse_error" in page.text
    assert client.get("/ui/triage?week=2026-W47").status_code == 404
    assert client.get("/ui/triage?week=garbage").status_code == 404
