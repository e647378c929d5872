"""End to end: the loop runs itself — a real `ratchet serve`, a real `ratchet controller run`, replayed Banking77
traffic with feedback from its labels, and nobody at the terminal.

The scenario (``loop_harness.py``, which ``benchmarks/loop_timeline.py`` runs too): the feedback-volume
trigger starts a cycle, the cycle deploys a better candidate, the controller takes it through shadow and
the stages to production while it is ``kill -9``'d and restarted mid-stage, the server answers with it;
then a candidate whose demos teach wrong labels is rolled back in shadow before any user sees it. It
runs once per module; each test checks one claim on what it recorded.
"""

from __future__ import annotations

import pytest

from .loop_harness import BAD_EXPERIMENT, SIG, LoopRun, Schedule, run_scenario

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SCHEDULE = Schedule()
BUDGET_S = 480  # the whole scenario on 2 cores; CI must stay well under its 30 minutes


@pytest.fixture(scope="module")
def loop(tmp_path_factory: pytest.TempPathFactory) -> LoopRun:
    return run_scenario(tmp_path_factory.mktemp("loop"), SCHEDULE)


@pytest.fixture(scope="module")
def completed(loop: LoopRun) -> LoopRun:
    """The run, when every step happened (else each test fails with the step and the processes' logs)."""
    if loop.error:
        logs = "\n".join(f"--- {name} ---\n{tail[-1500:]}" for name, tail in loop.logs.items())
        timeline = "\n".join(f"{row['t_s']:7.1f}  {row['event']}  {row['detail']}" for row in loop.timeline())
        pytest.fail(f"the scenario stopped: {loop.error}\n{timeline}\n{logs}", pytrace=False)
    return loop


def events(run: LoopRun, experiment_id: str) -> list[dict]:
    return run.experiments[experiment_id]["events"]


def moves(run: LoopRun, experiment_id: str) -> list[tuple]:
    """Each event as (kind, from status, to status, from stage, to stage)."""
    return [(e["kind"], e["from_status"], e["to_status"], e["from_stage"], e["to_stage"])
            for e in events(run, experiment_id)]


def test_the_loop_ran_by_itself_within_its_budget(completed: LoopRun) -> None:
    assert completed.total_s < BUDGET_S, completed.timeline()
    # Nobody acted but the harness: every experiment event is the cycle's start, the controllers' decisions
    # and the one `ab start` of the bad candidate.
    actors = {e["actor"].split(":")[0] for eid in completed.experiments for e in events(completed, eid)}
    assert actors <= {"cycle", "controller", "operator"}, actors
    assert [e["actor"] for e in events(completed, BAD_EXPERIMENT) if e["actor"].startswith("operator")] == [
        "operator"]


def test_the_feedback_volume_trigger_started_one_cycle(completed: LoopRun) -> None:
    triggered = [run for run in completed.cycle_runs if run.get("trigger")]
    assert len(completed.cycle_runs) == 1 and len(triggered) == 1  # and no second one (optimization_interval)
    run = triggered[0]
    assert run["trigger"].startswith("feedback_volume: ") and run["trigger"] == completed.trigger["launched"][SIG]
    verdict = completed.trigger["signatures"][SIG]
    assert verdict["kind"] == "feedback_volume"
    assert verdict["numbers"]["new_feedback"] >= SCHEDULE.feedback_threshold
    assert run["options"]["signatures"] == [SIG]
    assert run["options"]["optimizer"] == "labeled"  # schedule.cycle_args reached the cycle
    assert run["options"]["telemetry_target"] == SCHEDULE.feedback_threshold
    # The controller evaluates triggers every trigger_check_interval_s and ticks every interval.
    response = completed.figures()["trigger_response_s"]
    assert response is not None and response <= SCHEDULE.trigger_check_interval_s + 2 * SCHEDULE.controller_interval_s
    assert completed.when("trigger fired") <= completed.when("cycle started") + 1  # summary times are whole seconds


def test_the_cycle_deployed_a_candidate_that_beats_production_on_held_out_data(completed: LoopRun) -> None:
    summary = completed.cycle_runs[-1]["signatures"][SIG]
    assert summary["success"] and summary["deployed"]
    assert summary["collected"] >= SCHEDULE.feedback_threshold * 0.9  # the replayed traffic became the dataset
    comparison = summary["phases"]["evaluate"]["result"]["comparison"]
    assert comparison["n"] >= 20
    assert summary["baseline_version"] == "base" and summary["candidate_score"] > summary["baseline_score"]
    assert comparison["ci_low"] > 0 and summary["decision"]["deploy"]
    first = events(completed, completed.first_experiment)[0]
    assert first["kind"] == "start" and first["actor"] == f"cycle:{completed.cycle_runs[-1]['run_id']}"
    experiment = completed.experiments[completed.first_experiment]
    assert (experiment["baseline_version"], experiment["candidate_version"]) == ("base", completed.good_version)


def test_the_candidate_went_through_shadow_and_the_stages_to_production(completed: LoopRun) -> None:
    eid, stages = completed.first_experiment, list(SCHEDULE.stages)
    expected = [("start", None, "shadow", None, 0), ("advance", "shadow", "running", 0, 0)]
    expected += [("advance", "running", "running", i, i + 1) for i in range(len(stages) - 2)]
    expected.append(("promote", "running", "promoted", len(stages) - 2, len(stages) - 2))
    assert moves(completed, eid) == expected
    assert completed.experiments[eid]["status"] == "promoted"
    # The server answers with the new version as production, within a routing check of the promotion.
    assert completed.served_after_promotion["version"] == completed.good_version
    assert completed.figures()["promotion_to_served_s"] <= 5
    # No user saw the candidate before shadow passed; it answered unseen meanwhile.
    passed = next(e["at"] for e in events(completed, eid) if e["from_status"] == "shadow")
    early = [a for a in completed.probes["rollout"] if a["returned"] < passed]
    assert early and all(a.get("version") == "base" for a in early), early
    assert completed.arm_requests[eid].get(f"{completed.good_version}/shadow", 0) >= SCHEDULE.shadow_min_requests


def test_kill_9_mid_stage_then_a_restart_continues_from_the_database(completed: LoopRun) -> None:
    kill, eid = completed.kill, completed.first_experiment
    assert kill["experiment"] == eid and kill["status"] == "running"  # killed mid-stage, experiment live
    history = events(completed, eid)
    # No double action: each move once, in order (the full sequence is checked above: none lost either).
    keys = [(e["kind"], e["from_status"], e["from_stage"], e["to_stage"]) for e in history]
    assert len(keys) == len(set(keys))
    assert [e["at"] for e in history] == sorted(e["at"] for e in history)
    before = [e for e in history if e["at"] < kill["killed_at"]]
    after = [e for e in history if e["at"] >= kill["killed_at"]]
    assert len(before) == kill["events_before"] and after, history
    old_owner, new_owner = kill["old_lease"]["owner"], kill["new_lease"]["owner"]
    assert old_owner.endswith(f":{kill['pid']}") and new_owner.endswith(f":{kill['new_pid']}")
    assert all(e["actor"] == new_owner for e in after)  # the dead controller acted no more
    assert all(e["actor"] in (old_owner,) for e in before if e["actor"].startswith("controller"))
    # The new controller was up while the dead one's lease still held, waited for it to expire (no two
    # controllers acting), then took it over within a few ticks.
    expired, up, taken = (kill["old_lease"]["expires_at"], kill["new_lease"]["info"]["started_at"],
                          kill["new_lease"]["acquired_at"])
    assert up < expired <= taken <= expired + 3 * SCHEDULE.controller_interval_s + 2
    # What `ratchet ab status --json` shows is the same history.
    shown = completed.ab_status[eid]
    assert shown["status"] == "promoted"
    assert [(e["kind"], e["from_stage"], e["to_stage"], e["actor"]) for e in shown["events"]] == [
        (e["kind"], e["from_stage"], e["to_stage"], e["actor"]) for e in history]


def test_a_candidate_with_wrong_label_demos_is_rolled_back_before_users_see_it(completed: LoopRun) -> None:
    bad = completed.experiments[BAD_EXPERIMENT]
    assert bad["status"] == "rolled_back"
    assert (bad["baseline_version"], bad["candidate_version"]) == (completed.good_version, completed.bad_version)
    kinds = [m[0] for m in moves(completed, BAD_EXPERIMENT)]
    end = events(completed, BAD_EXPERIMENT)[-1]
    assert end["actor"].startswith("controller:") and bad["reason"]
    assert kinds == ["start", "rollback"] and end["from_status"] == "shadow", bad["reason"]
    assert bad["reason"].startswith("agreement trigger")
    # Zero user impact: no answer of the bad candidate reached a client, while it did answer unseen.
    served = completed.figures()["traffic"]["bad"]
    assert served["requests"] and set(served["versions"]) == {completed.good_version}, served
    assert completed.probes["bad"] and all(
        a.get("version") == completed.good_version for a in completed.probes["bad"]), completed.probes["bad"]
    assert completed.arm_requests[BAD_EXPERIMENT].get(f"{completed.bad_version}/shadow")
    assert not completed.arm_requests[BAD_EXPERIMENT].get(f"{completed.bad_version}/candidate")
    assert completed.production_at_end == completed.good_version
    assert completed.served_after_rollback["version"] == completed.good_version
