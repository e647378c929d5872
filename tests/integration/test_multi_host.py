"""Three `ratchet serve` hosts (separate homes, loopback) on one PostgreSQL database, one `ratchet controller`.

The model is a stub OpenAI-compatible server in this process (instant answers): what is measured is Ratchet's
own propagation through the state database, not a model. Each host's home holds only its own files: the
candidate is saved on host A (as the cycle would) and reaches B and C through the database; telemetry goes to
the shared sink. Figures (propagation of a rollout and of a rollback to every host, over several trials) are
printed and written to ``<tmp>/multi_host.json``; docs/benchmarks.md records a run.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from pathlib import Path

import httpx
import pytest

from fake_openai import base_url, start_chat_server
from ratchet.config import load_settings
from ratchet.evaluation import fewshot_program
from ratchet.programs import load_programs
from ratchet.programs.versions import VersionStore
from ratchet.rollout.experiments import ExperimentStore
from ratchet.store.db import StateDB
from ratchet.store.outcomes import read_arm_stats
from ratchet.telemetry.database import DatabaseSink

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SIG = "classify_intent"
PG = ("127.0.0.1", 5432)
TRIALS = 6
CONFIG = """home = "state"
database_url = "{url}"
[lm]
model = "openai/stub"
api_base = "{api_base}"
api_key_env = "STUB_LM_KEY"
cache = false
num_retries = 0
[telemetry]
sampling_rate = 1.0
sink = "database"
flush_interval_s = 0.2
[serve]
routing_check_interval_s = 0.5
outcome_flush_interval_s = 0.2
[rollout]
stages = [50, 100]
min_stage_minutes = 600
start_in_shadow = false
check_interval_s = 0.5
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _pg_admin(sql: str) -> str:
    import psycopg

    try:
        socket.create_connection(PG, timeout=2).close()
    except OSError:
        pytest.skip(f"PostgreSQL not reachable on {PG[0]}:{PG[1]}")
    for user in ("postgres", "root"):
        try:
            with psycopg.connect(host=PG[0], port=PG[1], dbname="test", user=user, autocommit=True) as conn:
                conn.execute(sql)
            return user
        except psycopg.OperationalError:
            continue
    pytest.fail("PostgreSQL refuses users postgres and root")


@pytest.fixture
def database() -> str:
    name = f"ratchet_hosts_{secrets.token_hex(4)}"
    user = _pg_admin(f'CREATE DATABASE "{name}"')
    yield f"postgresql+psycopg://{user}@{PG[0]}:{PG[1]}/{name}"
    _pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def stub_lm() -> str:
    server = start_chat_server()
    yield base_url(server)
    server.shutdown()


class Host:
    """One host: its own workspace and home, a `ratchet serve` process, and the CLI run with its config."""

    def __init__(self, root: Path, name: str, url: str, api_base: str, env: dict[str, str]) -> None:
        self.name = name
        self.dir = root / name
        self.dir.mkdir()
        self.config = self.dir / "ratchet.toml"
        self.config.write_text(CONFIG.format(url=url, api_base=api_base))
        self.env = env
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def argv(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "ratchet", "--config", str(self.config), *args]

    def start(self) -> None:
        log = (self.dir / "serve.log").open("wb")
        self.proc = subprocess.Popen(self.argv("serve", "--port", str(self.port), "--log-level", "warning"),
                                     cwd=self.dir, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                     start_new_session=True)

    def wait_ready(self, timeout_s: float = 120) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/ready", timeout=2).status_code == 200:
                    return
            assert self.proc is not None and self.proc.poll() is None, (self.dir / "serve.log").read_text()[-3000:]
            time.sleep(0.3)
        pytest.fail(f"host {self.name} not ready: {(self.dir / 'serve.log').read_text()[-3000:]}")

    def cli(self, *args: str) -> str:
        done = subprocess.run(self.argv(*args), cwd=self.dir, env=self.env, capture_output=True, text=True,
                              timeout=120, check=False)
        assert done.returncode == 0, f"ratchet {' '.join(args)} on {self.name}: {done.stdout}{done.stderr}"
        return done.stdout

    def share(self) -> float:
        programs = httpx.get(f"{self.url}/v1/programs", timeout=5).json()["programs"]
        route = next(p for p in programs if p["signature"] == SIG)["routing"]
        return 0.0 if route is None else float(route["candidate_share"])

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is not None and self.proc.poll() is None:
            with suppress(ProcessLookupError):
                os.killpg(self.proc.pid, sig)
            with suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=30)


def _seen_everywhere(hosts: list[Host], since: float, wanted: bool, timeout_s: float = 15) -> list[float]:
    """Poll every host's routing (every 50 ms, in parallel) until each shows the candidate (``wanted``) or none;
    returns each host's delay after ``since`` (epoch seconds: the database change)."""
    delays: list[float] = []

    def poll(host: Host) -> float:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if (host.share() > 0) == wanted:
                return time.time() - since
            time.sleep(0.05)
        raise AssertionError(f"host {host.name} did not follow within {timeout_s} s")

    with ThreadPoolExecutor(len(hosts)) as pool:
        delays = list(pool.map(poll, hosts))
    return delays


def test_three_hosts_one_database(tmp_path: Path, database: str, stub_lm: str) -> None:
    env = {**os.environ, "RATCHET_SECRET_KEY": secrets.token_urlsafe(48), "STUB_LM_KEY": "stub",
           "PYTHONUNBUFFERED": "1"}
    env.pop("RATCHET_HOME", None)
    hosts = [Host(tmp_path, name, database, stub_lm, env) for name in ("a", "b", "c")]
    a, b, c = hosts
    controllers: list[subprocess.Popen[bytes]] = []
    figures: dict[str, object] = {}
    try:
        for host in hosts:
            host.start()
        # The cycle ran on host A: its candidate is in A's home and, through PostgreSQL, in the database only.
        settings = load_settings(a.config)
        spec = load_programs(settings).get(SIG)
        db = StateDB(database)
        candidate = VersionStore(settings.home_dir, db).save(spec, fewshot_program(spec, 4), lm="openai/stub",
                                                             adapter="ChatAdapter").version
        for host in hosts:
            host.wait_ready()
        with (a.dir / "controller.log").open("wb") as log:
            controllers.append(subprocess.Popen(a.argv("controller", "run", "--interval", "0.5"), cwd=a.dir,
                                                env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True))
        experiments = ExperimentStore(db)

        # -- propagation: a rollout started on any host routes on every host; a rollback empties it everywhere --
        rollout, rollback = [], []
        for trial in range(TRIALS):
            starter, stopper = hosts[trial % 3], hosts[(trial + 1) % 3]
            experiment_id = f"trial_{trial}"
            starter.cli("ab", "start", "--signature", SIG, "--candidate", candidate, "--experiment-id",
                        experiment_id, "--no-shadow")
            rollout.append(max(_seen_everywhere(hosts, experiments.get(experiment_id).created_at, True)))
            stopper.cli("ab", "rollback", "--experiment-id", experiment_id, "--reason", "trial")
            ended = experiments.get(experiment_id).ended_at
            assert ended is not None
            rollback.append(max(_seen_everywhere(hosts, ended, False)))
        assert (c.dir / "state" / "programs" / SIG / candidate / "metadata.json").is_file()  # fetched by C
        figures["rollout_s"] = [round(x, 3) for x in rollout]
        figures["rollback_s"] = [round(x, 3) for x in rollback]
        assert max(rollout) < 5 and max(rollback) < 5, figures

        # -- traffic: counters equal requests; feedback on another host counts for the right arm -------------
        c.cli("ab", "start", "--signature", SIG, "--candidate", candidate, "--experiment-id", "live",
              "--no-shadow")
        _seen_everywhere(hosts, experiments.get("live").created_at, True)

        def ask(args: tuple[int, Host]) -> dict | None:
            i, host = args
            try:
                response = httpx.post(f"{host.url}/v1/programs/{SIG}/predict", timeout=10,
                                      json={"inputs": {"text": f"where is my card {i}"}, "user_id": f"user-{i}"})
            except httpx.HTTPError:
                return None  # the host was killed
            assert response.status_code == 200, response.text
            body = response.json()
            return {"host": host.name, "arm": body["arm"], "version": body["version"], "id": body["request_id"]}

        def send_feedback(served: dict) -> str:
            other = hosts[("abc".index(served["host"]) + 1) % 3]  # another host than the one that served it
            target = other if other is not b or b.proc.poll() is None else c
            response = httpx.post(f"{target.url}/v1/feedback", json={"request_id": served["id"], "score": 1.0},
                                  timeout=10)
            assert response.status_code == 202, response.text
            return target.name

        with ThreadPoolExecutor(6) as pool:
            first = [r for r in pool.map(ask, [(i, hosts[i % 3]) for i in range(150)]) if r]
            list(pool.map(send_feedback, first))
        assert len(first) == 150 and {r["arm"] for r in first} == {"baseline", "candidate"}
        time.sleep(3)  # counters flushed (0.2 s); feedback for another host's request matched (deferred ~1.5 s)
        arms = Counter(r["arm"] for r in first)
        stats = read_arm_stats(db, SIG, experiment_id="live")
        counted = {arm: s.requests for (_, arm), s in stats.items()}
        scored = {arm: s.quality_count for (_, arm), s in stats.items()}
        figures["first_batch"] = {"sent": dict(arms), "counted": counted, "feedback_counted": scored}
        assert counted == dict(arms) and scored == dict(arms), figures

        # -- a second controller on another host stands by while the first holds the lease -------------------
        for _ in range(3):
            tick = json.loads(b.cli("controller", "run", "--once", "--json"))
            assert tick["leader"] is False and not tick.get("decisions"), tick
        first_owner = {e.actor for e in experiments.events("live")}

        # -- kill -9 one host mid-traffic: nothing the others served is lost ---------------------------------
        with ThreadPoolExecutor(6) as pool:
            later = pool.map(ask, [(1000 + i, hosts[i % 3]) for i in range(150)])
            time.sleep(0.3)
            b.stop(signal.SIGKILL)
            second = [r for r in later if r]
        time.sleep(3)
        others = Counter(r["arm"] for r in second if r["host"] != "b")
        from_b = Counter(r["arm"] for r in second if r["host"] == "b")
        stats = read_arm_stats(db, SIG, experiment_id="live")
        for arm in ("baseline", "candidate"):
            total = stats[(candidate if arm == "candidate" else "base", arm)].requests
            assert arms[arm] + others[arm] <= total <= arms[arm] + others[arm] + from_b[arm], (arm, stats)
        served = {r["id"] for r in [*first, *second] if r["host"] != "b"}
        with db.begin() as conn:
            from sqlalchemy import select

            from ratchet.store.tables import telemetry_records

            logged = set(conn.scalars(select(telemetry_records.c.request_id)
                                      .where(telemetry_records.c.kind == "interaction")))
        assert served <= logged  # every call A and C answered is in the shared sink
        figures["kill_9"] = {"b_answered_before_kill": sum(from_b.values()), "others_answered": sum(others.values()),
                             "telemetry_rows": DatabaseSink(db).count()}
        assert {e.actor for e in experiments.events("live")} == first_owner  # the stand-by never acted
    finally:
        for proc in controllers:
            with suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            with suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=30)
        for host in hosts:
            host.stop()
        if figures:
            for name in ("rollout_s", "rollback_s"):
                values = figures.get(name)
                if isinstance(values, list) and values:
                    figures[name + "_summary"] = {"median": round(statistics.median(values), 3),
                                                  "max": round(max(values), 3), "min": round(min(values), 3)}
            (tmp_path / "multi_host.json").write_text(json.dumps(figures, indent=2))
            print("multi-host figures:", json.dumps(figures))
