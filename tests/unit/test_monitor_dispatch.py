"""The dispatcher: cooldowns, escalation, resolution, one-time events, the state file and its corruption."""

import json
import logging
from pathlib import Path
from typing import ClassVar

import pytest

from ratchet.config import Settings
from ratchet.monitor import Alert, AlertDispatcher
from ratchet.monitor.channels import FileChannel
from ratchet.monitor.results import CheckResult, in_scope
from ratchet.monitor.state import RECENT_LIMIT

T0 = 1_800_000_000.0  # 2027-01-15T08:00:00Z
MINUTE = 60.0


class Memory:
    """A channel that keeps what it is sent (and can be told to fail)."""

    name: ClassVar[str] = "memory"

    def __init__(self) -> None:
        self.sent: list[Alert] = []
        self.failing = False

    def send(self, alert: Alert) -> None:
        if self.failing:
            raise ConnectionError("down")
        self.sent.append(alert)

    @property
    def titles(self) -> list[str]:
        return [a.title for a in self.sent]


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    settings = Settings(home=tmp_path / "home")
    settings.monitor.cooldown_minutes = 60
    settings.monitor.retry_attempts = 2
    settings.monitor.retry_backoff_s = 0
    return settings


def slow_latency(signature: str = "classify_intent", level: str = "warning") -> Alert:
    return Alert(level, "High Latency", f"{signature}: p95 latency 1500 ms", {"signature": signature},
                 condition=f"slo/latency_p95/{signature}/all")


def slo(*alerts: Alert) -> CheckResult:
    return CheckResult("slo", alerts=list(alerts), scopes=["slo"])


def test_cooldown_suppresses_then_resends(settings: Settings) -> None:
    memory = Memory()
    dispatcher = AlertDispatcher(settings, [memory])
    assert [d.action for d in dispatcher.dispatch([slo(slow_latency())], now=T0)] == ["new"]
    later = dispatcher.dispatch([slo(slow_latency())], now=T0 + 59 * MINUTE)
    assert [d.action for d in later] == ["suppressed"] and "cooldown until" in later[0].note
    assert [d.action for d in dispatcher.dispatch([slo(slow_latency())], now=T0 + 61 * MINUTE)] == ["repeat"]
    assert memory.titles == ["High Latency", "High Latency"]
    # A worse level is sent at once, cooldown or not.
    worse = dispatcher.dispatch([slo(slow_latency(level="error"))], now=T0 + 62 * MINUTE)
    assert [d.action for d in worse] == ["escalated"]
    state = json.loads(dispatcher.state_path.read_text())
    (entry,) = state["active"].values()
    assert entry["condition"] == "slo/latency_p95/classify_intent/all" and entry["send_count"] == 3
    assert entry["first_seen"] == "2027-01-15T08:00:00+00:00" and entry["sent_level"] == "error"
    assert state["last_check"] == state["checks"]["slo"]["last_run"] == "2027-01-15T09:02:00+00:00"


def test_info_conditions_are_not_repeated(settings: Settings) -> None:
    memory = Memory()
    dispatcher = AlertDispatcher(settings, [memory])
    no_runs = CheckResult("orchestration", alerts=[Alert("info", "No Orchestration Runs", "none yet",
                                                         condition="orchestration/no_runs")], scopes=["orchestration"])
    assert [d.action for d in dispatcher.dispatch([no_runs], now=T0)] == ["new"]
    later = dispatcher.dispatch([no_runs], now=T0 + 10 * 60 * MINUTE)
    assert [(d.action, d.note) for d in later] == [("suppressed", "active, info is sent once")]
    assert memory.titles == ["No Orchestration Runs"]


def test_resolution_is_sent_once(settings: Settings) -> None:
    memory = Memory()
    dispatcher = AlertDispatcher(settings, [memory])
    dispatcher.dispatch([slo(slow_latency(), slow_latency("extract_booking"))], now=T0)
    deliveries = dispatcher.dispatch([slo(slow_latency("extract_booking"))], now=T0 + 5 * MINUTE)
    assert [d.action for d in deliveries] == ["suppressed", "resolved"]
    resolved = deliveries[1].alert
    assert (resolved.level, resolved.title) == ("info", "Resolved: High Latency")
    assert resolved.details["signature"] == "classify_intent"
    assert resolved.details["first_seen"] == "2027-01-15T08:00:00+00:00"
    assert [d.action for d in dispatcher.dispatch([slo(slow_latency("extract_booking"))], now=T0 + 6 * MINUTE)] \
        == ["suppressed"]
    assert memory.titles == ["High Latency", "High Latency", "Resolved: High Latency"]
    # It comes back: a new alert, not a repeat.
    back = dispatcher.dispatch([slo(slow_latency(), slow_latency("extract_booking"))], now=T0 + 7 * MINUTE)
    assert [d.action for d in back] == ["new", "suppressed"]


def test_resolution_only_within_the_check_and_its_scopes(settings: Settings) -> None:
    memory = Memory()
    dispatcher = AlertDispatcher(settings, [memory])
    drop = Alert("warning", "Dataset Quality Degradation", "x", {"signature": "a"},
                 condition="dataset_quality/quality_drop/a")
    datasets = CheckResult("dataset_quality", alerts=[drop], scopes=["dataset_quality"])
    dispatcher.dispatch([slo(slow_latency()), datasets], now=T0)
    # Another check's run, and a dataset check of one other signature, resolve nothing.
    assert dispatcher.dispatch([CheckResult("orchestration", scopes=["orchestration"])], now=T0 + 60) == []
    one = CheckResult("dataset_quality", scopes=["dataset_quality/quality_drop/b"])
    assert dispatcher.dispatch([one], now=T0 + 120) == []
    # A failed check resolves nothing either (its scopes are empty).
    failed = CheckResult("slo", alerts=[Alert("error", "Monitoring Check Failed", "db down",
                                              condition="slo/check_failed")], error="db down")
    assert [d.action for d in dispatcher.dispatch([failed], now=T0 + 180)] == ["new"]
    assert len(json.loads(dispatcher.state_path.read_text())["active"]) == 3
    assert in_scope("dataset_quality/quality_drop/a", ["dataset_quality"])
    assert not in_scope("dataset_quality/quality_drop/ab", ["dataset_quality/quality_drop/a"])


def test_never_delivered_conditions_resolve_silently(settings: Settings) -> None:
    memory = Memory()
    memory.failing = True
    dispatcher = AlertDispatcher(settings, [memory])
    (first,) = dispatcher.dispatch([slo(slow_latency())], now=T0)
    assert not first.delivered and first.results[0].describe() == "failed after 2 attempts: ConnectionError: down"
    (again,) = dispatcher.dispatch([slo(slow_latency())], now=T0 + 60)
    assert again.action == "new"  # not held back by a cooldown: nobody got it yet
    memory.failing = False
    assert dispatcher.dispatch([slo()], now=T0 + 120) == []  # gone before anyone heard of it: no "Resolved"
    assert memory.sent == []


def test_events_are_sent_once(settings: Settings) -> None:
    memory = Memory()
    dispatcher = AlertDispatcher(settings, [memory])
    rollback = Alert("warning", "A/B Test Rolled Back", "Experiment e1 was rolled back", {"experiment_id": "e1"},
                     condition="ab_tests/rolled_back/e1")
    result = CheckResult("ab_tests", events=[rollback], scopes=["ab_tests"])
    assert [d.action for d in dispatcher.dispatch([result], now=T0)] == ["event"]
    assert [d.action for d in dispatcher.dispatch([result], now=T0 + 3600 * 5)] == ["suppressed"]
    assert memory.titles == ["A/B Test Rolled Back"]
    assert dispatcher.last_run("ab_tests") == T0 + 3600 * 5


def test_recent_alerts_are_capped(settings: Settings) -> None:
    dispatcher = AlertDispatcher(settings, [Memory()])
    for i in range(RECENT_LIMIT + 5):
        dispatcher.dispatch([CheckResult("x", events=[Alert("info", f"event {i}", "m", condition=f"x/{i}")])],
                            now=T0 + i)
    recent = json.loads(dispatcher.state_path.read_text())["recent_alerts"]
    assert len(recent) == RECENT_LIMIT and recent[-1]["title"] == f"event {RECENT_LIMIT + 4}"
    assert recent[-1]["channels"] == {"memory": "sent"} and recent[-1]["action"] == "event"


@pytest.mark.parametrize("content", [b"{not json", b"[1, 2]", b'{"active": []}', b'{"active": {"k": 1}}', b"\xff"])
def test_corrupted_state_is_moved_aside_and_reset(settings: Settings, content: bytes,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    memory = Memory()
    dispatcher = AlertDispatcher(settings, [memory, FileChannel(settings.home_dir / "alerts")])
    dispatcher.state_path.parent.mkdir(parents=True)
    dispatcher.state_path.write_bytes(content)
    with caplog.at_level(logging.WARNING, logger="ratchet.monitor.state"):
        deliveries = dispatcher.dispatch([slo(slow_latency())], now=T0)
    assert "was corrupted" in caplog.text
    (aside,) = settings.home_dir.glob("monitoring_state.json.corrupt-*")
    assert aside.read_bytes() == content
    assert [d.action for d in deliveries] == ["event", "new"]
    assert memory.titles == ["Monitoring State Reset", "High Latency"]
    assert memory.sent[0].level == "warning" and memory.sent[0].details["moved_to"] == str(aside)
    state = json.loads(dispatcher.state_path.read_text())
    assert len(state["active"]) == 1 and state["format"] == 1
    assert len(list((settings.home_dir / "alerts").glob("alert_warning_*.json"))) == 2
