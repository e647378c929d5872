"""The console's Experiments and Alerts pages over a real home: a real RolloutController, per-minute counters and
feedback in the state database, keys with roles, the routing file, the monitoring state."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from console_helpers import csrf as csrf_of
from console_helpers import login
from fastapi.testclient import TestClient
from sqlalchemy import update

from ratchet.audit import read_entries
from ratchet.auth import create_key
from ratchet.config import Settings
from ratchet.console import create_console_app
from ratchet.console.charts import LineChart, Series, svg_line_chart
from ratchet.evaluation import fewshot_program
from ratchet.monitor import Alert, AlertDispatcher, CheckResult
from ratchet.monitor.alert_board import read_alert_board
from ratchet.monitor.channels import FileChannel
from ratchet.monitor.playbooks import PLAYBOOKS, playbook_for
from ratchet.programs import load_programs
from ratchet.programs.versions import VersionStore
from ratchet.rollout import RolloutController
from ratchet.rollout.history import experiment_history
from ratchet.routing import read_routing
from ratchet.store.feedback import record_feedback
from ratchet.store.outcomes import OutcomeRecorder, read_arm_stats
from ratchet.store.tables import experiment_events, experiments

SIG = "classify_intent"
MINUTES = 20


@dataclass
class Home:
    client: TestClient
    controller: RolloutController
    settings: Settings
    keys: dict[str, str]


def _backdate(controller: RolloutController, experiment_id: str, seconds: float) -> float:
    """Move an experiment's start (and its events) ``seconds`` into the past, so counters of past minutes count
    within it — as if it had been running that long."""
    start = time.time() - seconds
    with controller.db.begin(write=True) as conn:
        conn.execute(update(experiments).where(experiments.c.experiment_id == experiment_id)
                     .values(created_at=start, stage_started_at=start))
        conn.execute(update(experiment_events).where(experiment_events.c.experiment_id == experiment_id)
                     .values(at=start))
    return start


def _traffic(controller: RolloutController, experiment_id: str, start: float) -> None:
    """``MINUTES`` minutes of served requests as the runtime counts them: baseline 20 a minute (one error every
    other minute), candidate 4 a minute (one error every fourth minute); two feedback scores per arm a minute."""
    recorder = OutcomeRecorder(controller.db, flush_interval_s=60)
    for m in range(MINUTES):
        at = start + m * 60
        for arm, version, n, failing in (("baseline", "v1", 20, m % 2 == 0), ("candidate", "v2", 4, m % 4 == 0)):
            for i in range(n):
                rid = f"{arm}-{m}-{i}"
                recorder.record(SIG, version, arm, latency_s=0.1 + 0.01 * i + (0.05 if arm == "candidate" else 0),
                                success=not (failing and i == 0), error_type="parse_error" if failing and i == 0
                                else None, experiment_id=experiment_id, at=at)
                recorder.index_request(rid, SIG, version, arm, at)
    recorder.close()
    for m in range(MINUTES):
        for i in range(2):
            record_feedback(controller.db, f"baseline-{m}-{i}", 0.7)
            record_feedback(controller.db, f"candidate-{m}-{i}", 0.9)


@pytest.fixture
def home(tmp_path: Path, state_db_url: str) -> Iterator[Home]:
    settings = Settings(home=tmp_path / "home", database_url=state_db_url)
    settings.auth.mode = "required"
    settings.rollout.start_in_shadow = False
    settings.rollout.min_stage_minutes = 600  # nothing advances by itself during the test
    registry = load_programs(settings)
    spec = registry.get(SIG)
    versions = VersionStore(settings.home_dir)
    versions.save(spec, fewshot_program(spec, 2), lm="m", adapter="a")  # v1
    versions.save(spec, fewshot_program(spec, 4), lm="m", adapter="a")  # v2
    controller = RolloutController(settings, registry)
    controller.start(SIG, "v2", experiment_id="e0", baseline="v1")  # an older, ended experiment
    controller.rollback("e0", reason="a bad start")
    controller.start(SIG, "v2", experiment_id="e1", baseline="v1")
    start = _backdate(controller, "e1", MINUTES * 60 + 30)
    _traffic(controller, "e1", start)
    keys = {role: create_key(controller.db, f"{role}-user", [role], created_by="test")[0]
            for role in ("read", "operator")}
    with TestClient(create_console_app(settings), base_url="http://testserver") as client:
        yield Home(client, controller, settings, keys)
    controller.db.dispose()


def _login(client: TestClient, key: str) -> None:
    assert login(client, key).status_code == 303


def _no_inline_code(html: str) -> None:
    assert "style=" not in html  # the CSP forbids inline styles
    assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", html)  # and inline scripts
    assert "Traceback" not in html


def test_the_list_shows_live_experiments_first_with_stage_split_and_status(home: Home) -> None:
    _login(home.client, home.keys["read"])
    page = home.client.get("/ui/experiments")
    assert page.status_code == 200
    _no_inline_code(page.text)
    assert page.text.index('href="/ui/experiments/e1"') < page.text.index('href="/ui/experiments/e0"')
    assert '<span class="badge running">running</span>' in page.text
    assert '<span class="badge rolled_back">rolled back</span>' in page.text
    assert "1 of 5 (10 %)" in page.text and "90 % baseline · 10 % candidate" in page.text
    assert "a bad start" in page.text


def test_an_experiment_page_shows_the_arms_triggers_and_timeline_with_the_controllers_numbers(home: Home) -> None:
    _login(home.client, home.keys["read"])
    page = home.client.get("/ui/experiments/e1")
    assert page.status_code == 200
    html = page.text
    _no_inline_code(html)
    # the arms: what `ratchet ab status` reads (controller.evaluate), to the request
    decision = home.controller.evaluate(home.controller.store.get("e1"))
    baseline, candidate = decision.metrics["baseline"], decision.metrics["candidate"]
    assert (baseline["requests"], baseline["errors"]) == (20 * MINUTES, MINUTES // 2)
    assert (candidate["requests"], candidate["errors"]) == (4 * MINUTES, (MINUTES + 3) // 4)
    assert f"{20 * MINUTES:,}" in html and f"{baseline['error_rate'] * 100:.1f} %" in html
    assert f"{candidate['error_rate'] * 100:.1f} %" in html
    assert f"0.7 ({2 * MINUTES})" in html and f"0.9 ({2 * MINUTES})" in html
    assert 'data-live="5"' in html and 'id="live"' in html
    # the triggers against their thresholds
    for label in ("Error rate (candidate − baseline)", "Mean latency (candidate − baseline)",
                  "Quality (candidate feedback score)"):
        assert label in html
    assert "worse by more than 5 pts" in html and "slower by more than 500 ms" in html and "below 0.700" in html
    for check in decision.checks:
        assert check.message.replace("'", "&#39;") in html
    # the timeline
    assert "started at 10 % candidate traffic" in html
    # a read-only user sees no action
    assert 'action="/ui/experiments/e1/' not in html and "data-confirm" not in html


def test_charts_hold_each_arms_series_over_time_with_intervals_and_a_table(home: Home) -> None:
    exp = home.controller.store.get("e1")
    history = experiment_history(home.controller.db, exp)
    base, cand = history.points["baseline"], history.points["candidate"]
    assert MINUTES <= len(base) == len(cand) <= MINUTES + 2 and "shadow" not in history.points  # a point a minute
    assert [p.requests for p in base] == sorted(p.requests for p in base)  # cumulative
    assert base[0].requests == 20 and base[-1].requests == 20 * MINUTES
    whole = read_arm_stats(home.controller.db, SIG, since=exp.created_at, versions=["v1", "v2"], experiment_id="e1")
    assert cand[-1].requests == whole[("v2", "candidate")].requests
    assert cand[-1].error_rate == pytest.approx(whole[("v2", "candidate")].error_rate)
    for p in base + cand:
        assert p.error_low <= p.error_rate <= p.error_high
        assert p.latency_low_s <= p.latency_mean_s <= p.latency_high_s and p.latency_p50_s <= p.latency_p95_s
        assert p.quality_low <= p.quality_mean <= p.quality_high
    assert cand[-1].error_high - cand[-1].error_low < cand[2].error_high - cand[2].error_low  # narrows with data

    _login(home.client, home.keys["read"])
    html = home.client.get("/ui/experiments/e1").text
    for chart_id, title in (("chart-errors", "Error rate by arm"), ("chart-latency", "Latency by arm (p50, p95)"),
                            ("chart-quality", "Quality by arm (feedback score)")):
        figure = html[html.index(f'<figure class="chart" id="{chart_id}"'):]
        figure = figure[:figure.index("</figure>")]
        assert f'<title id="{chart_id}-title">{title}</title>' in figure and f'id="{chart_id}-desc"' in figure
        assert 'role="img"' in figure
        assert figure.count('class="line baseline"') >= 1 and figure.count('class="line candidate"') >= 1
        assert 'class="band baseline"' in figure and 'class="band candidate"' in figure
        line = re.search(r'<path class="line baseline" d="([^"]+)"', figure)
        assert line is not None
        assert figure.count("<tr>") == 1 + line.group(1).count(",")  # the table fallback: a row per point
        assert "time (UTC)" in figure
    assert 'stroke-dasharray="5 4"' in html  # p95 dashed
    assert "min quality 0.70" in html  # the quality floor drawn as the threshold


def _action_forms(html: str) -> dict[str, str]:
    return dict(re.findall(r'action="/ui/experiments/e1/(\w+)" data-confirm="([^"]+)"', html))


def test_an_operators_pause_changes_the_database_and_the_routing_file(home: Home) -> None:
    _login(home.client, home.keys["operator"])
    page = home.client.get("/ui/experiments/e1").text
    forms = _action_forms(page)
    assert set(forms) == {"pause", "promote", "rollback"}  # resume only when paused
    assert "Roll back e1? Production (v1) serves 100 % of classify_intent traffic at once" in forms["rollback"]
    assert '<label for="rollback-reason">' in page and 'id="rollback-reason" name="reason"' in page
    csrf = csrf_of(page)

    done = home.client.post("/ui/experiments/e1/pause", data={"csrf_token": csrf}, follow_redirects=False)
    assert done.status_code == 303 and done.headers["location"] == "/ui/experiments/e1?done=pause"
    assert home.controller.store.get("e1").status == "paused"
    route = read_routing(home.controller.routing_path).route(SIG)
    assert route is not None and route.state == "paused" and route.candidate_share == pytest.approx(0.10)
    entry = read_entries(home.settings.home_dir, action="experiment.pause")[-1]
    assert entry["actor"].startswith("key:operator-user/") and entry["source"] == "http"
    assert entry["client"] == "testclient"
    after = home.client.get(done.headers["location"]).text
    assert "Paused: the split holds" in after and set(_action_forms(after)) == {"resume", "promote", "rollback"}

    # an illegal transition: the controller's message, as a page, never a traceback
    again = home.client.post("/ui/experiments/e1/pause", data={"csrf_token": csrf}, follow_redirects=False)
    assert again.status_code == 409 and "cannot pause experiment &#39;e1&#39;: it is paused" in again.text
    _no_inline_code(again.text)

    # a rollback needs its reason
    bare = home.client.post("/ui/experiments/e1/rollback", data={"csrf_token": csrf, "reason": "  "},
                            follow_redirects=False)
    assert bare.status_code == 422 and home.controller.store.get("e1").status == "paused"
    rolled = home.client.post("/ui/experiments/e1/rollback", data={"csrf_token": csrf, "reason": "wrong intents"},
                              follow_redirects=False)
    assert rolled.status_code == 303
    exp = home.controller.store.get("e1")
    assert exp.status == "rolled_back" and exp.reason == "wrong intents"
    route = read_routing(home.controller.routing_path).route(SIG)
    assert route is None or route.candidate_share == 0.0  # production serves everything
    sent = read_alert_board(home.settings).recent[0]  # announced as `ratchet ab rollback` announces it
    assert sent["title"] == "A/B Test Rolled Back" and sent["details"]["reason"] == "wrong intents"
    ended = home.client.get(rolled.headers["location"]).text
    assert "Rolled back: production serves all traffic again." in ended and not _action_forms(ended)
    assert "wrong intents" in ended and "as they stood at" in ended  # the last recorded checks


def test_a_read_only_key_gets_403_and_a_post_without_the_csrf_token_is_refused(home: Home) -> None:
    _login(home.client, home.keys["read"])
    csrf = csrf_of(home.client.get("/ui/experiments/e1").text)  # the logout form's: a valid token of this session
    refused = home.client.post("/ui/experiments/e1/pause", data={"csrf_token": csrf}, follow_redirects=False)
    assert refused.status_code == 403 and "operator" in refused.text
    assert home.controller.store.get("e1").status == "running"

    home.client.cookies.clear()
    _login(home.client, home.keys["operator"])
    for data in ({}, {"csrf_token": "forged"}, {"csrf_token": csrf}):  # none, forged, another session's
        forged = home.client.post("/ui/experiments/e1/pause", data=data, follow_redirects=False)
        assert forged.status_code == 403 and "security token" in forged.text
    assert home.controller.store.get("e1").status == "running"
    assert read_routing(home.controller.routing_path).route(SIG).state == "running"


def test_an_unknown_experiment_or_action_is_a_404_page(home: Home) -> None:
    _login(home.client, home.keys["operator"])
    missing = home.client.get("/ui/experiments/nope")
    assert missing.status_code == 404 and "no experiment &#39;nope&#39;" in missing.text
    _no_inline_code(missing.text)
    csrf = csrf_of(home.client.get("/ui/experiments/e1").text)
    assert home.client.post("/ui/experiments/nope/pause", data={"csrf_token": csrf}).status_code == 404
    assert home.client.post("/ui/experiments/e1/delete", data={"csrf_token": csrf}).status_code == 404


def test_the_alerts_page_shows_active_and_resolved_alerts_with_their_playbooks(home: Home) -> None:
    dispatcher = AlertDispatcher(home.settings, [FileChannel(home.settings.home_dir / "alerts")])
    down = Alert("critical", "Rollout Controller Down", "1 live experiment(s) (e1) and no rollout controller",
                 {"check": "controller"}, condition="controller/down")
    slow = Alert("warning", "High Latency", "classify_intent: p95 latency 2400 ms", {"signature": SIG},
                 condition=f"slo/latency_p95/{SIG}/all")
    dispatcher.dispatch([CheckResult("controller", alerts=[down], scopes=["controller"]),
                         CheckResult("slo", alerts=[slow], scopes=["slo"])])
    dispatcher.dispatch([CheckResult("slo", alerts=[], scopes=["slo"])])  # the latency is back to normal

    _login(home.client, home.keys["read"])
    page = home.client.get("/ui/alerts")
    assert page.status_code == 200
    html = page.text
    _no_inline_code(html)
    active = html[html.index('id="h-active"'):html.index('id="h-resolved"')]
    resolved = html[html.index('id="h-resolved"'):html.index('id="h-recent"')]
    assert "Rollout Controller Down" in active and "High Latency" not in active
    assert PLAYBOOKS["Rollout Controller Down"].meaning in active
    assert "<code>ratchet controller status</code>" in active  # commands set as code
    assert "High Latency" in resolved and '<span class="badge warning">warning</span>' in resolved
    assert "<code>thresholds.latency_p95_ms</code>" in resolved  # its playbook
    assert "Resolved: High Latency" in html[html.index('id="h-recent"'):]  # what was sent


def test_every_alert_title_raised_has_a_playbook() -> None:
    source = Path(__file__).resolve().parents[2] / "src" / "ratchet"
    pattern = re.compile(r'Alert\(\s*(?:level=)?"(?:info|warning|error|critical)",\s*(?:title=)?"([^"]+)"'
                         r'|Alert\(\s*\n\s*"(?:info|warning|error|critical)", "([^"]+)"|\("p\d\d", "([^"]+)"')
    titles = {t for path in source.rglob("*.py") for m in pattern.finditer(path.read_text()) for t in m.groups() if t}
    assert len(titles) >= 25, titles
    assert not [t for t in titles if playbook_for(t) is None]
    assert playbook_for("Resolved: High Cost") is PLAYBOOKS["High Cost"] and playbook_for("Unheard Of") is None


def test_a_chart_is_svg_text_with_its_series_gaps_interval_and_threshold() -> None:
    chart = LineChart(chart_id="c", title="Quality <by arm>", description="what it shows", y_label="score",
                      series=[Series("baseline v1", "baseline", [(0.0, 0.5), (60.0, None), (120.0, 0.7)],
                                     band=[(0.0, 0.4, 0.6), (60.0, None, None), (120.0, 0.6, 0.8)]),
                              Series("candidate v2", "candidate", [(120.0, 0.9)])],
                      threshold=(0.7, "min quality 0.70"), markers=[(60.0, "25 %")], y_max=1.0)
    svg: Any = svg_line_chart(chart)
    assert svg.startswith("<svg") and svg.endswith("</svg>") and "style=" not in svg
    assert "<title id=\"c-title\">Quality &lt;by arm&gt;</title>" in svg  # escaped
    assert svg.count('class="line baseline"') == 2  # a gap splits the line (two single points)
    assert '<circle class="line candidate"' in svg  # a single point is a dot
    assert 'stroke="#1f4e79"' in svg or 'fill="#1f4e79"' in svg
    assert "min quality 0.70" in svg and "25 %" in svg


def test_an_experiment_in_shadow_charts_its_shadow_calls_not_a_candidate_that_served_nobody(home: Home) -> None:
    home.controller.rollback("e1", reason="making room")
    home.controller.start(SIG, "v2", experiment_id="e2", baseline="v1", shadow=True)
    recorder = OutcomeRecorder(home.controller.db, flush_interval_s=60)
    for i in range(25):
        recorder.record(SIG, "v1", "baseline", latency_s=0.1, success=True, experiment_id="e2")
        recorder.record(SIG, "v2", "shadow", latency_s=0.2, success=i % 5 != 0, experiment_id="e2")
    recorder.close()
    _login(home.client, home.keys["read"])
    html = home.client.get("/ui/experiments/e2").text
    _no_inline_code(html)
    assert "shadow (" in html and "the candidate answered 25" in html
    assert 'class="line shadow"' in html and 'class="line candidate"' not in html
    assert "Shadow agreement with production" in html  # the shadow stage's own trigger
