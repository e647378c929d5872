"""Issue 15 in a real browser: Debian's chromium driven by Playwright against a real `ratchet serve` (embedded model,
keys required) with a populated home — dataset and program versions, a live experiment with traffic and feedback,
the week's triage and its annotation queue.

Every page renders without console errors, failed requests or requests off the machine, and axe-core (the
``axe.min.js`` that the ``axe-playwright-python`` package ships, evaluated in the page) finds no serious or
critical violation; an operator's Pause reaches the state database and the routing file; an annotator finishes
three tasks with the keyboard alone; a read key sees no action and a POST without the CSRF token is refused.
With ``CONSOLE_SCREENSHOTS=$PWD/docs/images`` (an absolute path: tests run in their own directory; not a RATCHET_
variable: those are cleared for tests) the run saves a screenshot of each page there (the README's).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from sqlalchemy import select

from ratchet.auth import create_key
from ratchet.config import load_settings
from ratchet.data.datasets import DatasetStore
from ratchet.data.files import load_examples
from ratchet.data.records import ExampleRecord
from ratchet.data.sampling import balanced_demos, seeded_sample
from ratchet.evaluation import attach_demos, training_examples
from ratchet.loop.rollouts import rollout_controller
from ratchet.programs import load_programs
from ratchet.programs.versions import VersionStore
from ratchet.routing import read_routing
from ratchet.serve.loadtest import run_http
from ratchet.store.db import StateDB
from ratchet.store.tables import annotations, experiments

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
SIG = "classify_intent"
DATA = Path(__file__).parents[2] / "src" / "ratchet" / "examples" / "data" / "banking77"
EXPERIMENT = "console_demo"
CONFIG = """home = "state"
[auth]
mode = "required"
[telemetry]
sampling_rate = 1.0
[serve]
outcome_flush_interval_s = 0.2
routing_check_interval_s = 0.5
[rollout]
stages = [20, 50, 100]
min_stage_requests = 100000
start_in_shadow = false
"""
PAGES = {  # screenshot name → path
    "overview": "/ui",
    "experiments": "/ui/experiments",
    "experiment": f"/ui/experiments/{EXPERIMENT}",
    "programs": "/ui/programs",
    "program-version": f"/ui/programs/{SIG}/v1",
    "program-diff": f"/ui/programs/{SIG}/diff",
    "datasets": "/ui/datasets",
    "dataset": f"/ui/datasets/{SIG}",
    "dataset-diff": f"/ui/datasets/{SIG}/diff",
    "dataset-examples": f"/ui/datasets/{SIG}/latest/examples",
    "annotate": "/ui/annotate",
    "triage": "/ui/triage",
    "alerts": "/ui/alerts",
}


def _ratchet(config: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ratchet", "--config", str(config), *args], capture_output=True,
                          text=True, timeout=300, check=True)


@pytest.fixture(scope="module")
def site(tmp_path_factory, ratchet_server) -> Iterator[dict[str, Any]]:
    if CHROMIUM is None:
        pytest.skip("chromium is not installed (make test installs it with apt-get)")
    root = tmp_path_factory.mktemp("console")
    config = root / "ratchet.toml"
    config.write_text(CONFIG)
    settings = load_settings(config)
    registry = load_programs(settings)
    spec = registry.get(SIG)
    with StateDB.connect(settings) as db:
        keys = {role: create_key(db, f"{role}-key", roles, created_by="test")[0] for role, roles in {
            "traffic": ["predict", "feedback"], "read": ["read"], "operator": ["operator"],
            "annotate": ["annotate"], "admin": ["admin"]}.items()}
    train = load_examples(DATA / "train.jsonl", spec.schema).examples
    store = DatasetStore(settings.home_dir, settings.data, registry=registry)
    records = [ExampleRecord(values=dict(e.items()), signature=SIG, source="seed") for e in train]
    store.create(SIG, records[:120], source="seed", notes="first 120 Banking77 examples")
    store.add(SIG, records[120:200], source="seed", notes="80 more")
    versions = VersionStore(settings.home_dir)
    demos = balanced_demos(training_examples(spec), 20, spec.label_field, seed=0)
    candidate = versions.save(spec, attach_demos(spec.build(), demos), lm="embedded", adapter="CompletionAdapter",
                              notes="20 balanced demos").version
    rollout_controller(settings, registry).start(SIG, candidate, experiment_id=EXPERIMENT, actor="test")
    test = seeded_sample(load_examples(DATA / "test.jsonl", spec.schema).examples, 40, 1)
    with ratchet_server(config, timeout_s=120) as url:
        report = run_http(url, spec, test, queries=len(test), concurrency=2, feedback_from_labels=True,
                          api_key=keys["traffic"])
        assert report.error_count == 0, report.to_dict()
        year, week, _ = datetime.now(UTC).isocalendar()
        _ratchet(config, "flywheel", "run", "--week", f"{year}-W{week:02d}", "--double-share", "0")
        yield {"url": url, "config": config, "settings": settings, "keys": keys}


@pytest.fixture(scope="module")
def browser(site) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield launched
        launched.close()


class Watch:
    """What a page did that it should not: console errors, failed requests, requests off this machine."""

    def __init__(self, page: Any, base: str) -> None:
        self.problems: list[str] = []
        host = urlsplit(base).hostname
        page.on("console", lambda m: m.type == "error" and self.problems.append(f"console: {m.text}"))
        page.on("pageerror", lambda e: self.problems.append(f"page error: {e}"))
        page.on("requestfailed", lambda r: "ERR_ABORTED" not in (r.failure or "") and self.problems.append(
            f"failed: {r.url} {r.failure}"))  # aborted: a newer navigation (a key pressed) replaced the request
        page.on("response", lambda r: r.status >= 400 and self.problems.append(f"{r.status}: {r.url}"))
        page.on("request", lambda r: urlsplit(r.url).hostname not in (host, None) and not r.url.startswith(
            "data:") and self.problems.append(f"off the machine: {r.url}"))


def _context(browser: Any, site: dict[str, Any], role: str) -> tuple[Any, Any, Watch]:
    context = browser.new_context(viewport={"width": 1280, "height": 860})
    page = context.new_page()
    watch = Watch(page, site["url"])
    page.goto(f"{site['url']}/ui/login")
    page.fill("#key", site["keys"][role])
    page.keyboard.press("Enter")
    page.wait_for_url(f"{site['url']}/ui/annotate" if role == "annotate" else f"{site['url']}/ui")
    return context, page, watch


def _axe(page: Any) -> list[str]:
    import axe_playwright_python

    page.evaluate((Path(axe_playwright_python.__file__).parent / "axe.min.js").read_text())
    result = page.evaluate("async () => await axe.run(document, {resultTypes: ['violations']})")
    return [f"{v['id']} ({v['impact']}): {v['help']} — {[n['target'] for n in v['nodes']][:3]}"
            for v in result["violations"] if v["impact"] in ("serious", "critical")]


def _shoot(page: Any, name: str) -> None:
    directory = os.environ.get("CONSOLE_SCREENSHOTS")
    if directory:
        Path(directory).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(directory) / f"console-{name}.png"), full_page=name == "experiment")


def test_every_page_renders_cleanly_and_passes_axe(browser, site) -> None:
    context, page, watch = _context(browser, site, "admin")
    seen = {}
    try:
        for name, path in PAGES.items():
            page.goto(f"{site['url']}{path}")
            page.wait_for_load_state("networkidle")
            assert page.locator("h1").count() == 1, name
            violations = _axe(page)
            assert not violations, f"{name}: {violations}"
            seen[name] = page.title()
            _shoot(page, name)
    finally:
        context.close()
    assert not watch.problems, watch.problems
    assert seen["overview"] == "Overview · Ratchet"


def test_the_login_page_passes_axe_and_a_wrong_key_is_refused(browser, site) -> None:
    context = browser.new_context()
    page = context.new_page()
    try:
        page.goto(f"{site['url']}/ui")
        assert page.url.startswith(f"{site['url']}/ui/login")
        assert not _axe(page)
        _shoot(page, "login")
        page.fill("#key", "rtk_000000000000_wrong")
        page.keyboard.press("Enter")
        assert "not valid" in page.locator("[role=alert]").inner_text()
    finally:
        context.close()


def test_an_annotator_finishes_three_tasks_with_the_keyboard_alone(browser, site) -> None:
    context, page, watch = _context(browser, site, "annotate")
    with StateDB.connect(site["settings"]) as db, db.begin() as conn:
        before = len(conn.execute(select(annotations)).all())
    try:
        page.goto(f"{site['url']}/ui/annotate")
        for key in ("1", "a", "2"):  # a label by its number, accept, another label
            task = page.locator("#h-task code").inner_text()
            with page.expect_navigation(url=f"{site['url']}/ui/annotate?done=*"):
                page.keyboard.press(key)
            assert page.locator("#h-task code").count() == 0 or page.locator("#h-task code").inner_text() != task
    finally:
        context.close()
    with StateDB.connect(site["settings"]) as db, db.begin() as conn:
        rows = conn.execute(select(annotations).where(annotations.c.annotator == "annotate-key")).all()
        assert len(conn.execute(select(annotations)).all()) == before + 3
    assert sorted(r.kind for r in rows) in (["accept", "correct", "correct"], ["accept", "accept", "correct"],
                                             ["accept", "accept", "accept"])
    assert not watch.problems, watch.problems


def test_a_forged_post_without_the_csrf_token_is_refused(browser, site) -> None:
    context, page, _ = _context(browser, site, "annotate")
    try:
        page.goto(f"{site['url']}/ui/annotate")
        task = page.locator("#h-task code").inner_text()
        forged = page.request.post(f"{site['url']}/ui/annotate/{task}", form={"action": "accept"})
        assert forged.status == 403
    finally:
        context.close()
    with StateDB.connect(site["settings"]) as db, db.begin() as conn:
        assert not conn.execute(select(annotations).where(annotations.c.task_id == task)).all()


def test_a_read_key_sees_no_action_and_cannot_post_one(browser, site) -> None:
    context, page, watch = _context(browser, site, "read")
    try:
        page.goto(f"{site['url']}/ui/experiments/{EXPERIMENT}")
        assert page.locator("h1").inner_text() and page.locator("form[action*='/pause']").count() == 0
        assert page.locator("button", has_text="Roll back").count() == 0
        token = page.locator("input[name=csrf_token]").first.get_attribute("value")  # the logout form's: valid
        refused = page.request.post(f"{site['url']}/ui/experiments/{EXPERIMENT}/pause", form={"csrf_token": token})
        assert refused.status == 403  # a valid token does not lend the operator role
    finally:
        context.close()
    assert [p for p in watch.problems if "403" not in p] == []


def test_an_operators_pause_click_reaches_the_database_and_the_routing_file(browser, site) -> None:
    routing = site["settings"].home_dir / "routing_config.json"
    assert read_routing(routing).route(SIG).state == "running"
    context, page, watch = _context(browser, site, "operator")
    try:
        page.goto(f"{site['url']}/ui/experiments/{EXPERIMENT}")
        dialogs: list[str] = []
        page.on("dialog", lambda d: (dialogs.append(d.message), d.accept()))
        with page.expect_navigation():
            page.locator("form[action$='/pause'] button").click()
        assert dialogs and EXPERIMENT in dialogs[0]  # the confirmation names what it acts on
        assert "paused" in page.locator("main").inner_text().lower()
    finally:
        context.close()
    with StateDB.connect(site["settings"]) as db, db.begin() as conn:
        status = conn.execute(select(experiments.c.status).where(experiments.c.experiment_id == EXPERIMENT)).scalar()
    assert status == "paused"
    route = read_routing(routing).route(SIG)
    assert route is not None and route.state == "paused"
    assert not watch.problems, watch.problems
