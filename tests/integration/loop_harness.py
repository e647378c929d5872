"""The loop with nobody at the terminal: one scenario, shared by the e2e test and the timeline benchmark.

``tests/integration/test_loop_e2e.py`` runs :func:`run_scenario` once and asserts on what it
returns; ``benchmarks/loop_timeline.py`` runs the same function and prints its timeline. The
scenario, with a compressed schedule (``RATCHET_*`` variables over the ``ratchet init`` workspace's
``ratchet.toml``, see :func:`loop_env`):

1. ``ratchet init`` in a fresh directory, a real ``ratchet serve`` on a free loopback port and a real
   ``ratchet controller run --interval 1``. From here on no ``ratchet`` command changes anything
   until step 5: the harness only replays traffic and reads the state database and files.
2. Banking77 (the bundled ``train.jsonl``) replayed with ``ratchet loadtest --feedback-from-labels
   --corrections``: ``loop.feedback_volume_threshold`` labelled feedback arrive.
3. The controller's feedback-volume trigger starts ``ratchet cycle --trigger ...`` with
   ``schedule.cycle_args`` (LabeledFewShot on the telemetry just collected); it beats the zero-shot
   production version on held-out data and starts an experiment.
4. While ``ratchet loadtest`` replays new traffic (``test.jsonl``, never in the dataset) the controller
   takes the candidate through shadow and the stages to promotion, and the server answers with the new
   version. Mid-stage the harness ``kill -9``'s the controller and starts another one, which takes the
   lease over once it expired and carries on from the database.
5. A deliberately bad candidate: production's own demos with every label moved to the next intent,
   saved through the version store (as the cycle saves its candidates) and started with ``ratchet ab
   start --shadow`` — the one operator command, standing in for a bad deployment. Traffic goes on; the
   controller rolls it back in shadow.

Why step 5 deploys the bad candidate by hand instead of replaying feedback with wrong labels so that
the loop's own cycle produces it: the dataset store is incremental, so that cycle would train and
evaluate on step 3's correct examples too, and it deploys only if the mix wins its held-out split.
Measured on the embedded model (60 Banking77 test messages, 40 class-balanced demos): production
(correct demos) answers 80 % right; demos from a pool of 50 % correct and 50 % shifted examples
answer 45 % right and 35 % shifted — on a 50/50 held-out split that scores 0.40 against production's
0.43, no deployment; at 25/75 (23 % right, 42 % shifted) it would win, 0.37 against 0.24. So the
poison must be about three times step 3's 200 examples: 600 more requests and a held-out split four
times larger, several more minutes on 2 cores than this scenario's whole budget.

Everything that happened is returned as a :class:`LoopRun`: a timeline (seconds since start), the
experiments with their events, the cycle summary, the controller leases and figures.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from .loop_processes import (
    BAD_EXPERIMENT,
    BANKING,
    SIG,
    Prober,
    Processes,
    ScenarioError,
    State,
    Traffic,
    _bad_candidate,
    _epoch,
    _free_port,
    _predict,
    _tail,
)

__all__ = ["BAD_EXPERIMENT", "SIG", "LoopRun", "ScenarioError", "Schedule", "loop_env", "run_scenario"]


@dataclass
class Schedule:
    """The compressed schedule: minutes and hours of the defaults become seconds."""

    feedback_threshold: int = 200  # loop.feedback_volume_threshold, and the first traffic burst
    trigger_check_interval_s: float = 2.0
    controller_interval_s: float = 1.0
    # The controller's lease (max(this, 3 × interval)): longer than a controller takes to start (4-5 s), so the
    # restarted one is up while the dead one's lease still holds and must wait for it.
    lease_ttl_s: float = 10.0
    stages: tuple[int, ...] = (25, 50, 100)
    min_stage_minutes: float = 0.1
    min_stage_requests: int = 15
    shadow: bool = True  # experiments start in shadow (rollout.start_in_shadow)
    shadow_share: float = 1.0
    # The shipped agreement rule: roll back when the anytime-valid bound is below rollout.min_agreement (30 %),
    # pass only when the estimate is at least that floor. The wrong-label candidate agrees with production on
    # about 11 % of the calls (12 of 108 over five runs), the good one on 55-60 %.
    shadow_min_requests: int = 60
    shadow_min_minutes: float = 0.2
    max_shadow_calls_per_minute: int = 600
    min_agreement: float | None = None  # None: the shipped default (rollout.min_agreement)
    concurrency: int = 2
    round_queries: int = 40  # traffic during rollouts: `ratchet loadtest` rounds of this many requests
    restart_after_s: float = 0.0  # between kill -9 and the new controller (a supervisor's restart delay)
    phase_timeout_s: float = 240.0  # any single step waits at most this long


def loop_env(schedule: Schedule) -> dict[str, str]:
    """The ``RATCHET_*`` settings of the scenario (over ``ratchet init``'s ratchet.toml)."""
    env = {
        "RATCHET_TELEMETRY__SAMPLING_RATE": "1.0",
        "RATCHET_TELEMETRY__FLUSH_INTERVAL_S": "0.2",
        "RATCHET_SERVE__OUTCOME_FLUSH_INTERVAL_S": "0.2",
        "RATCHET_SERVE__ROUTING_CHECK_INTERVAL_S": "0.5",
        "RATCHET_ROLLOUT__STAGES": json.dumps(list(schedule.stages)),
        "RATCHET_ROLLOUT__MIN_STAGE_MINUTES": str(schedule.min_stage_minutes),
        "RATCHET_ROLLOUT__MIN_STAGE_REQUESTS": str(schedule.min_stage_requests),
        "RATCHET_ROLLOUT__CHECK_INTERVAL_S": str(schedule.controller_interval_s),
        "RATCHET_ROLLOUT__LEASE_TTL_S": str(schedule.lease_ttl_s),
        "RATCHET_LOOP__ENABLE_AUTOMATIC_OPTIMIZATION": "true",
        "RATCHET_LOOP__FEEDBACK_VOLUME_THRESHOLD": str(schedule.feedback_threshold),
        "RATCHET_LOOP__TRIGGER_CHECK_INTERVAL_S": str(schedule.trigger_check_interval_s),
        # One triggered cycle in the scenario: the rollout traffic's feedback must not start a second one.
        "RATCHET_LOOP__OPTIMIZATION_INTERVAL_HOURS": "1",
        # The canary pass scores 100 probes per version on the controller's own copy of the model: on 2 cores
        # it would compete with serving for the whole run. Shadow and the stages' triggers decide here.
        "RATCHET_MONITOR__CANARY__ENABLED": "false",
        # Telemetry is the only source of this cycle: the gate's 80 % cap on one source cannot hold.
        "RATCHET_DATA__GATES": json.dumps({SIG: {"max_source_share": 1.0}}),
        "RATCHET_SCHEDULE__CYCLE_ARGS": json.dumps([
            "--optimizer", "labeled", "--git-target", "0", "--synthetic-target", "0",
            "--telemetry-target", str(schedule.feedback_threshold)]),
    }
    if schedule.shadow:
        env.update({
            "RATCHET_ROLLOUT__START_IN_SHADOW": "true",
            "RATCHET_ROLLOUT__SHADOW_SHARE": str(schedule.shadow_share),
            "RATCHET_ROLLOUT__SHADOW_MIN_REQUESTS": str(schedule.shadow_min_requests),
            "RATCHET_ROLLOUT__SHADOW_MIN_MINUTES": str(schedule.shadow_min_minutes),
            "RATCHET_ROLLOUT__MAX_SHADOW_CALLS_PER_MINUTE": str(schedule.max_shadow_calls_per_minute),
        })
        if schedule.min_agreement is not None:
            env["RATCHET_ROLLOUT__MIN_AGREEMENT"] = str(schedule.min_agreement)
    else:
        env["RATCHET_ROLLOUT__START_IN_SHADOW"] = "false"
    return env


@dataclass
class Mark:
    """One timeline entry: what happened, when (Unix time), and a detail."""

    event: str
    at: float
    detail: str = ""


@dataclass
class LoopRun:
    """What the scenario saw."""

    workspace: Path
    schedule: Schedule
    shadow: bool
    started_at: float = 0.0
    finished_at: float = 0.0
    marks: list[Mark] = field(default_factory=list)
    error: str | None = None
    cycle_runs: list[dict[str, Any]] = field(default_factory=list)  # every run summary, oldest first
    experiments: dict[str, dict[str, Any]] = field(default_factory=dict)  # id → row + events (database)
    ab_status: dict[str, Any] = field(default_factory=dict)  # `ratchet ab status --experiment-id X --json`
    first_experiment: str | None = None
    good_version: str | None = None
    bad_version: str | None = None
    production_before_bad: str | None = None
    production_at_end: str | None = None
    served_after_promotion: dict[str, Any] | None = None
    served_after_rollback: dict[str, Any] | None = None
    condition_true_at: float | None = None  # the threshold-th feedback was accepted
    trigger: dict[str, Any] | None = None  # the trigger snapshot that launched the cycle
    kill: dict[str, Any] = field(default_factory=dict)  # kill -9 and the takeover
    traffic: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # phase → loadtest reports
    arm_requests: dict[str, dict[str, int]] = field(default_factory=dict)  # experiment → arm → requests
    probes: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # phase → Prober answers
    logs: dict[str, str] = field(default_factory=dict)  # name → tail

    def mark(self, event: str, at: float | None = None, detail: str = "") -> None:
        self.marks.append(Mark(event, time.time() if at is None else at, detail))

    @property
    def total_s(self) -> float:
        return round(self.finished_at - self.started_at, 1)

    def timeline(self) -> list[dict[str, Any]]:
        """The marks in time order, as seconds since the start."""
        return [{"t_s": round(m.at - self.started_at, 1), "event": m.event, "detail": m.detail}
                for m in sorted(self.marks, key=lambda m: m.at)]

    def when(self, event: str) -> float | None:
        """Seconds since the start of the first ``event`` mark, or None."""
        found = [m.at for m in self.marks if m.event == event]
        return round(min(found) - self.started_at, 1) if found else None

    def figures(self) -> dict[str, Any]:
        """The headline numbers."""
        out: dict[str, Any] = {"total_s": self.total_s, "shadow": self.shadow}

        def gap(a: str, b: str) -> float | None:
            ta, tb = self.when(a), self.when(b)
            return None if ta is None or tb is None else round(tb - ta, 1)

        out["trigger_response_s"] = gap("feedback threshold reached", "trigger fired")
        out["cycle_s"] = gap("cycle started", "cycle finished")
        out["trigger_to_experiment_s"] = gap("trigger fired", "experiment started")
        out["experiment_to_promotion_s"] = gap("experiment started", "promoted")
        out["promotion_to_served_s"] = gap("promoted", "new version served")
        out["kill_to_takeover_s"] = gap("controller killed (kill -9)", "lease taken over")
        out["kill_to_next_action_s"] = gap("controller killed (kill -9)", "first action after restart")
        out["bad_start_to_rollback_s"] = gap("bad candidate started", "bad candidate rolled back")
        if self.cycle_runs:
            sig = self.cycle_runs[-1].get("signatures", {}).get(SIG, {})
            comparison = (sig.get("phases", {}).get("evaluate", {}).get("result") or {}).get("comparison") or {}
            out["cycle"] = {"examples": sig.get("collected"), "held_out": comparison.get("n"),
                            "baseline": sig.get("baseline_score"), "candidate": sig.get("candidate_score"),
                            "ci": [comparison.get("ci_low"), comparison.get("ci_high")],
                            "seconds": self.cycle_runs[-1].get("seconds")}
        for phase, reports in self.traffic.items():
            done = sum(r.get("completed", 0) for r in reports)
            arms: dict[str, int] = {}
            versions: dict[str, int] = {}
            for r in reports:
                for arm, n in (r.get("arms") or {}).items():
                    arms[arm] = arms.get(arm, 0) + n
                for version, n in (r.get("versions") or {}).items():
                    versions[version] = versions.get(version, 0) + n
            latencies = [r["latency_ms"]["mean"] for r in reports if r.get("completed")]
            out.setdefault("traffic", {})[phase] = {
                "requests": done, "arms": arms, "versions": versions,
                "errors": sum(r.get("errors", 0) for r in reports),
                "feedback": sum(r.get("feedback_sent", 0) for r in reports),
                "mean_latency_ms": round(sum(latencies) / len(latencies), 1) if latencies else None}
        out["arm_requests"] = self.arm_requests
        for phase, answers in self.probes.items():
            tally: dict[str, int] = {}
            for answer in answers:
                key = str(answer.get("version", "error"))
                tally[key] = tally.get(key, 0) + 1
            out.setdefault("probes", {})[phase] = tally
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"workspace": str(self.workspace), "shadow": self.shadow, "error": self.error,
                "schedule": {k: v for k, v in vars(self.schedule).items()},
                "timeline": self.timeline(), "figures": self.figures(),
                "experiments": self.experiments, "kill": self.kill, "trigger": self.trigger}


# -- the scenario -----------------------------------------------------------------------------------

class Scenario:
    """The steps, in order; each records what it saw in ``result`` or raises :class:`ScenarioError`."""

    def __init__(self, workspace: Path, schedule: Schedule, progress: Callable[[str], None]) -> None:
        self.schedule = schedule
        self.result = LoopRun(workspace=workspace, schedule=schedule, shadow=schedule.shadow)
        self.env = {**{k: v for k, v in os.environ.items() if not k.startswith("RATCHET_")}, **loop_env(schedule),
                    "COLUMNS": "160"}
        self.procs = Processes(workspace, self.env)
        self.progress = progress
        self.state: State | None = None
        self.url = ""
        self.server: subprocess.Popen[bytes] | None = None
        self.controller: subprocess.Popen[bytes] | None = None
        self.killed: subprocess.Popen[bytes] | None = None  # the controller we kill -9 on purpose

    def wait(self, what: str, done: Callable[[], Any], timeout: float | None = None, poll: float = 0.2) -> Any:
        """Poll ``done`` until it returns something truthy; fail when a process died or time ran out."""
        deadline = time.monotonic() + (timeout or self.schedule.phase_timeout_s)
        while True:
            value = done()
            if value:
                return value
            for name, proc in (("server", self.server), ("controller", self.controller)):
                if proc is not None and proc.poll() is not None and proc is not self.killed:
                    raise ScenarioError(f"waiting for {what}: the {name} exited ({proc.returncode})")
            if time.monotonic() > deadline:
                raise ScenarioError(f"waiting for {what}: nothing after {timeout or self.schedule.phase_timeout_s:g} s")
            time.sleep(poll)

    # -- steps --
    def start(self) -> None:
        r = self.result
        r.started_at = time.time()
        self.procs.run("init", "init", str(self.result.workspace), "--force")
        self.state = State(r.workspace)
        r.mark("workspace ready", detail="ratchet init")
        port = _free_port()
        self.url = f"http://127.0.0.1:{port}"
        self.server = self.procs.spawn("server", "serve", "--port", str(port), "--log-level", "warning")

        def ready() -> bool:
            try:
                return httpx.get(f"{self.url}/ready", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        self.wait("the server to be ready", ready, timeout=180, poll=0.5)
        r.mark("server ready", detail=self.url)
        self.controller = self.procs.spawn("controller-1", "controller", "run", "--interval",
                                           str(self.schedule.controller_interval_s))
        r.mark("controller started", detail=f"pid {self.controller.pid}")
        self.progress("server and controller up")

    def seed_traffic(self) -> None:
        """The first burst: exactly the trigger's threshold of labelled feedback."""
        r, n = self.result, self.schedule.feedback_threshold
        r.mark("traffic started", detail=f"{n} Banking77 train messages, feedback from labels + corrections")
        out = self.procs.logs / "loadtest-seed.json"
        self.procs.run("loadtest-seed", "loadtest", "--target", self.url, "--signature", SIG,
                       "--data", str(BANKING / "train.jsonl"), "--queries", str(n), "--concurrency",
                       str(self.schedule.concurrency), "--feedback-from-labels", "--corrections", "--seed", "1",
                       "--save", str(out), timeout=600)
        report = json.loads(out.read_text())
        r.traffic["seed"] = [report]
        assert self.state is not None
        r.condition_true_at = self.wait(f"the {n}th feedback in the database", lambda: self.state.nth_feedback_at(n),
                                        timeout=30)
        r.mark("feedback threshold reached", at=r.condition_true_at,
               detail=f"the {n}th feedback recorded ({report['feedback_sent']} sent)")
        self.progress(f"{n} requests with feedback sent")

    def cycle(self) -> None:
        r, state = self.result, self.state
        assert state is not None

        def launched() -> dict[str, Any] | None:
            snap = state.trigger_snapshot()
            return snap if snap and SIG in (snap.get("launched") or {}) else None

        r.trigger = self.wait("the feedback-volume trigger", launched, timeout=60)
        r.mark("trigger fired", at=r.trigger["evaluated_at"], detail=r.trigger["launched"][SIG])

        def finished() -> dict[str, Any] | None:
            runs = [run for run in state.runs() if run.get("trigger")]
            return runs[-1] if runs and runs[-1].get("finished_at") else None

        run = self.wait("the triggered cycle", finished, timeout=self.schedule.phase_timeout_s + 120, poll=0.5)
        r.cycle_runs = state.runs()
        sig = run["signatures"].get(SIG, {})
        r.mark("cycle started", at=_epoch(run["started_at"]), detail=run["run_id"])
        r.mark("cycle finished", at=_epoch(run["finished_at"]),
               detail=f"{sig.get('baseline_score')} → {sig.get('candidate_score')}: "
                      f"{(sig.get('decision') or {}).get('reason', sig.get('errors'))}")
        if not sig.get("deployed"):
            raise ScenarioError(f"the cycle did not deploy: {sig.get('decision') or sig.get('errors')}")
        r.first_experiment, r.good_version = sig["experiment_id"], sig["candidate_version"]
        exp = state.experiment(r.first_experiment)
        r.mark("experiment started", at=exp.created_at,
               detail=f"{r.first_experiment}: {exp.baseline_version} → {exp.candidate_version} ({exp.status})")
        self.progress(f"cycle deployed {r.good_version} as {r.first_experiment}")

    def rollout_with_kill(self) -> None:
        """Traffic while the controller rolls the candidate out; kill -9 it mid-stage and start another."""
        r, state, sched = self.result, self.state, self.schedule
        assert state is not None and r.first_experiment is not None
        eid = r.first_experiment
        with Prober(self.url) as prober, \
                Traffic(self.procs, self.url, sched, "rollout", BANKING / "test.jsonl", seed=2) as traffic:

            def running_stage() -> Any:
                exp = state.experiment(eid)
                if not exp.live:
                    raise ScenarioError(f"{eid} ended ({exp.status}: {exp.reason}) before the kill")
                return exp if exp.status == "running" and time.time() - exp.stage_started_at >= 1.0 else None

            exp = self.wait(f"{eid} to run its first stage", running_stage)
            assert self.controller is not None
            old = self.controller
            events_before = len(state.events(eid))
            os.kill(old.pid, signal.SIGKILL)
            old.wait(timeout=30)
            self.killed = old
            killed_at = time.time()
            lease = state.leases.get("controller")  # as the dead controller left it
            r.mark("controller killed (kill -9)", at=killed_at,
                   detail=f"pid {old.pid}, {eid} at stage {exp.stage_index + 1} ({exp.stage_percent} %)")
            r.kill = {"pid": old.pid, "experiment": eid, "stage_index": exp.stage_index, "status": exp.status,
                      "events_before": events_before, "killed_at": killed_at,
                      "old_lease": lease.to_dict() if lease else None}
            time.sleep(sched.restart_after_s)
            self.controller = self.procs.spawn("controller-2", "controller", "run", "--interval",
                                               str(sched.controller_interval_s))
            r.mark("controller restarted", detail=f"pid {self.controller.pid}")
            r.kill.update(restarted_at=time.time(), new_pid=self.controller.pid)
            new_pid = self.controller.pid

            def taken_over() -> Any:
                held = state.leases.get("controller")
                return held if held and held.owner.endswith(f":{new_pid}") else None

            lease = self.wait("the new controller to take the lease", taken_over, timeout=60)
            r.kill["new_lease"] = lease.to_dict()
            r.mark("lease taken over", at=lease.acquired_at, detail=lease.owner)

            def ended() -> Any:
                exp = state.experiment(eid)
                return exp if not exp.live else None

            exp = self.wait(f"{eid} to end", ended)
            if exp.status == "promoted":  # the prober's answers show when the server switched

                def served() -> Any:
                    last = prober.answers[-1] if prober.answers else {}
                    return (last if last.get("version") == r.good_version and last.get("arm") == "baseline"
                            and last["sent"] > exp.updated_at else None)

                r.served_after_promotion = self.wait("the promoted version to be served", served, timeout=30)
                r.mark("new version served", at=r.served_after_promotion["returned"],
                       detail=f"version {r.good_version} as production (arm baseline)")
        r.traffic["rollout"] = traffic.reports
        r.probes["rollout"] = prober.answers
        after = [e for e in state.events(eid) if e.at >= r.kill["killed_at"]]
        if after:
            r.mark("first action after restart", at=after[0].at, detail=f"{after[0].kind} by {after[0].actor}")
        r.arm_requests[eid] = state.arm_requests(eid)
        if exp.status != "promoted":
            raise ScenarioError(f"{eid} was not promoted: {exp.status} ({exp.reason})")
        self.progress(f"{eid} promoted, {r.good_version} served")

    def bad_candidate(self) -> None:
        r, state, sched = self.result, self.state, self.schedule
        assert state is not None
        r.production_before_bad = state.production()
        r.bad_version = _bad_candidate(state, r.production_before_bad)
        r.mark("bad candidate saved", detail=f"{r.bad_version}: {r.production_before_bad}'s demos, labels shifted")
        args = ["ab", "start", "--signature", SIG, "--candidate", r.bad_version, "--experiment-id", BAD_EXPERIMENT]
        if r.shadow:
            args.append("--shadow")
        with Prober(self.url) as prober, \
                Traffic(self.procs, self.url, sched, "bad", BANKING / "test.jsonl", seed=3,
                        finish_round=True) as traffic:
            self.procs.run("ab-start", *args)
            exp = state.experiment(BAD_EXPERIMENT)
            r.mark("bad candidate started", at=exp.created_at, detail=f"`ratchet {' '.join(args)}` ({exp.status})")

            def ended() -> Any:
                exp = state.experiment(BAD_EXPERIMENT)
                return exp if not exp.live else None

            exp = self.wait(f"{BAD_EXPERIMENT} to end", ended)
        r.traffic["bad"] = traffic.reports
        r.probes["bad"] = prober.answers
        r.arm_requests[BAD_EXPERIMENT] = state.arm_requests(BAD_EXPERIMENT)
        last = state.events(BAD_EXPERIMENT)[-1]
        r.mark(f"bad candidate {exp.status.replace('_', ' ')}", at=last.at,
               detail=f"from {last.from_status} at stage {(last.from_stage or 0) + 1}: {exp.reason}")
        r.production_at_end = state.production()
        r.served_after_rollback = _predict(self.url)
        self.progress(f"{BAD_EXPERIMENT} {exp.status}")

    def collect(self) -> None:
        """Everything the assertions read, from the database and the CLI."""
        r, state = self.result, self.state
        if state is None:
            return
        r.cycle_runs = state.runs()
        for eid in state.experiment_ids():
            r.experiments[eid] = {**state.experiment(eid).to_dict(),
                                  "events": [e.to_dict() for e in state.events(eid)]}
        for eid in (r.first_experiment, BAD_EXPERIMENT):
            if eid and eid in r.experiments:
                with contextlib.suppress(ScenarioError, ValueError, subprocess.TimeoutExpired):
                    out = self.procs.run("ab-status", "ab", "status", "--experiment-id", eid, "--json", timeout=60)
                    r.ab_status[eid] = json.loads(out.stdout)
        for eid, info in r.experiments.items():
            for e in info["events"]:
                if e["kind"] == "advance":
                    moved = ("shadow passed" if e["from_status"] == "shadow"
                             else f"stage {e['from_stage'] + 1} → {e['to_stage'] + 1}")
                    prefix = "bad candidate: " if eid == BAD_EXPERIMENT else ""
                    r.mark(f"{prefix}{moved}", at=e["at"], detail=f"{eid} by {e['actor']}")
                elif e["kind"] == "promote":
                    r.mark("promoted", at=e["at"], detail=f"{eid} by {e['actor']}")

    def logs(self) -> None:
        for path in sorted(self.procs.logs.glob("*.log")):
            self.result.logs[path.stem] = _tail(path)
        if self.state is not None:
            self.result.logs["cycle"] = _tail(self.state.home / "logs" / "cycle.log")


def run_scenario(workspace: Path, schedule: Schedule | None = None,
                 progress: Callable[[str], None] | None = None) -> LoopRun:
    """Run the whole scenario in ``workspace`` (an empty directory); never raises for a failed step: the
    returned run's ``error`` says what did not happen, and everything up to there is recorded."""
    scenario = Scenario(workspace, schedule or Schedule(), progress or (lambda message: None))
    try:
        for step in (scenario.start, scenario.seed_traffic, scenario.cycle, scenario.rollout_with_kill,
                     scenario.bad_candidate):
            step()
    except ScenarioError as exc:
        scenario.result.error = str(exc)
    except Exception:  # a harness or environment failure: keep what was recorded, say where it broke
        scenario.result.error = traceback.format_exc(limit=4)
    finally:
        scenario.result.finished_at = time.time()
        try:
            scenario.collect()
        finally:
            scenario.procs.stop_all()
            scenario.logs()
    return scenario.result

