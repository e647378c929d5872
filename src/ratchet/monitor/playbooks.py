"""What to do about each alert: one short playbook per alert title, where operators read it (the console's Alerts
page; the runbook sections of docs/operations.md say more).

Alert titles are stable (seed 001's JSON shape keys on them; ``Resolved: <title>`` follows the condition), so a
playbook is found by title. Every title a check, the dispatcher or the loop raises has one: a test keeps it so.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["PLAYBOOKS", "RESOLVED_PREFIX", "Playbook", "playbook_for"]

RESOLVED_PREFIX = "Resolved: "


@dataclass(frozen=True)
class Playbook:
    """What an alert means, the steps that answer it, and where the runbook says more."""

    title: str
    meaning: str
    steps: tuple[str, ...]
    docs: str  # a section of docs/operations.md (or another doc)


def _p(title: str, meaning: str, steps: tuple[str, ...], docs: str) -> tuple[str, Playbook]:
    return title, Playbook(title, meaning, steps, docs)


PLAYBOOKS: dict[str, Playbook] = dict([
    _p("A/B Test Rolled Back",
       "A candidate was rolled back — by a trigger (error rate, latency, quality, catastrophe, canary, shadow "
       "agreement) or by an operator. Production serves all traffic again; nothing else is needed to be safe.",
       ("Read the reason and the numbers: the experiment's page (Triggers, Timeline) or "
        "`ratchet ab status --experiment-id <id>`.",
        "Compare the versions: `ratchet programs diff <signature> <baseline> <candidate>` — instructions and demos.",
        "If the trigger was right, fix the data or the optimizer settings before the next cycle; if it was noise "
        "from a broken dependency, run a new experiment once it is fixed."),
       "docs/operations.md — The controller and live triggers"),
    _p("A/B Test Promoted",
       "An experiment passed every stage with no trigger (or an operator promoted it): its candidate is the "
       "production version now.",
       ("Nothing to do. `ratchet programs versions <signature>` shows the lineage; "
        "`ratchet programs promote <signature> <version>` brings back an older version if needed.",),
       "docs/operations.md — The controller and live triggers"),
    _p("Long-Running A/B Test",
       "An experiment has been live longer than `monitor.experiment_long_running_days`: usually too little "
       "traffic to meet a stage's minimum requests, or it was paused and forgotten.",
       ("Look at its stage progress on the experiment's page (minutes and candidate requests against the minimum).",
        "Resume it if it is paused; otherwise promote or roll it back by hand, or lower "
        "`rollout.min_stage_requests` for low-traffic signatures."),
       "docs/operations.md — The controller and live triggers"),
    _p("A/B Traffic Mismatch",
       "The candidate's observed share of requests differs from the configured split more than chance allows "
       "(sample-ratio mismatch): the comparison between arms may be biased.",
       ("Check every serving process reads the same routing state (`ratchet status`; the "
        "`RatchetRoutingReloadErrors` alert).",
        "Look for clients that retry or pin requests to one arm, and for a guard or limit that refuses one arm's "
        "requests more often.",
        "Do not trust the experiment's numbers until the split is right; pause it if in doubt."),
       "docs/operations.md — The controller and live triggers"),
    _p("Rollout Controller Down",
       "No process holds the controller lease or its heartbeat is stale: live experiments are neither advanced, "
       "promoted nor rolled back.",
       ("`ratchet controller status` — who held the lease and when it last beat.",
        "Restart it: `systemctl restart ratchet-controller`, `kubectl rollout restart deploy/ratchet-controller`, "
        "or `ratchet controller run`.",
        "Until it runs, pause risky experiments or roll them back by hand."),
       "docs/operations.md — The controller and live triggers"),
    _p("Rollout Controller Cannot Check Experiment",
       "The controller runs but one experiment's check keeps failing (a damaged version artifact, a database "
       "error): that experiment is not protected by its triggers.",
       ("Read the error in the alert and the controller's log.",
        "`ratchet ab status --experiment-id <id>` reproduces the evaluation; roll the experiment back by hand "
        "if it cannot be fixed quickly."),
       "docs/operations.md — The controller and live triggers"),
    _p("Re-optimization Triggered",
       "A live trigger (feedback volume or degradation) started an optimization cycle for a signature.",
       ("Nothing to do. The run's `orchestration_summary.json` (`\"trigger\"`) says why; a deploy starts an "
        "experiment you can follow on the Experiments page.",),
       "docs/operations.md — The controller and live triggers"),
    _p("No Orchestration Runs",
       "No optimization cycle has run yet.",
       ("Run one (`ratchet cycle`) or install the schedule (`ratchet schedule crontab | crontab -`).",),
       "docs/operations.md — Scheduled jobs"),
    _p("Orchestration Run Failures",
       "Optimization cycles failed several times in a row: programs are not being improved.",
       ("Read the last run's error: `ratchet status`, the run's `orchestration_summary.json` under `runs/`.",
        "Quality gates failing: look at the dataset (`ratchet dataset list`, `ratchet data gate`); an LM "
        "failing: `ratchet doctor`.",
        "Fix, then run `ratchet cycle` by hand to confirm."),
       "docs/operations.md — Scheduled jobs"),
    _p("Stale Optimization",
       "Cycles run but none has improved a program for a long time.",
       ("Check the datasets grow (`ratchet dataset list`) and that feedback arrives; more or better examples "
        "(annotations, the golden set) move the optimizer more than more trials."),
       "docs/operations.md — Scheduled jobs"),
    _p("Dataset Quality Degradation",
       "A signature's newest dataset version scores markedly lower than the previous one.",
       ("`ratchet dataset diff -s <signature> <previous> latest` — which sources brought the new examples.",
        "Find the source that lowered quality (telemetry filters, a git mining change, synthetic settings) and "
        "archive the version if it should not train the next cycle."),
       "docs/operations.md — Scheduled jobs"),
    _p("Low Success Rate",
       "A signature's (or one arm's) success rate over the SLO window is below `thresholds.min_success_rate`.",
       ("Errors by type are in the alert; the Grafana row “traffic and errors by arm” shows when it started.",
        "Only the candidate arm: roll its experiment back. Every arm: check the model behind it "
        "(`ratchet doctor`, the LM provider's status) and the serving log."),
       "docs/operations.md — Prometheus and Grafana"),
    _p("High p50 Latency",
       "Median latency over the SLO window is above `thresholds.latency_p50_ms`.",
       ("See “High Latency”.",),
       "docs/operations.md — Prometheus and Grafana"),
    _p("High Latency",
       "p95 latency over the SLO window is above `thresholds.latency_p95_ms`.",
       ("Which arm? A slow candidate: its latency trigger decides, or roll it back by hand.",
        "Every arm: the model or its host is slow (CPU saturation with the embedded model, a provider's "
        "latency); `ratchet loadtest` measures capacity; add replicas or lower concurrency."),
       "docs/operations.md — Prometheus and Grafana"),
    _p("High p99 Latency",
       "p99 latency over the SLO window is above `thresholds.latency_p99_ms`: a slow tail.",
       ("See “High Latency”; a tail alone often means retries or long inputs — check `limits` and the inputs.",),
       "docs/operations.md — Prometheus and Grafana"),
    _p("High Token Usage",
       "Requests use more tokens than `thresholds.max_tokens_per_request`.",
       ("A new version with many demos: compare versions (`ratchet programs diff`). Long inputs: check "
        "`limits` on input size."),
       "docs/operations.md — Limits"),
    _p("High Cost per Request",
       "The cost of a request is above `thresholds.max_cost_per_request_usd`.",
       ("See “High Token Usage”; check the model string and its price.",),
       "docs/operations.md — Limits"),
    _p("High Cost",
       "LM spend per hour is above `thresholds.max_cost_per_hour_usd`.",
       ("Traffic or tokens per request grew: compare the request rate and tokens per request in Grafana.",
        "Rate-limit heavy keys (`limits`) or move to a cheaper model."),
       "docs/operations.md — Limits"),
    _p("Output Drift",
       "The distribution of a signature's outputs moved away from what its data saw (two check runs in a row).",
       ("Look at which outputs grew or shrank (`ratchet monitor check-drift --json`).",
        "Collect and label recent traffic into the dataset (feedback, `ratchet collect telemetry`, "
        "`ratchet annotate`): the next cycle trains on it."),
       "docs/operations.md — Drift"),
    _p("Input Drift",
       "Live inputs look unlike the held-out data (many novel inputs).",
       ("See “Output Drift”: the fix is data that looks like today's traffic.",),
       "docs/operations.md — Drift"),
    _p("Canary Score Dropped",
       "Production scored markedly lower on the fixed probe set than its own trailing baseline: the model or "
       "serving stack changed under the program.",
       ("`ratchet canary run -s <signature>` and `ratchet canary history <signature>`: errors and parse "
        "failures point at the model or the serving stack; the same prompt scoring lower points at the model.",
        "Roll production back with `ratchet programs promote` if a recent change caused it."),
       "docs/operations.md — Canaries"),
    _p("Canary Runs Stale",
       "No canary run scored a signature within its interval: its canary protection is off.",
       ("Check the schedule runs `ratchet canary run` (`ratchet schedule`), then run it by hand.",),
       "docs/operations.md — Canaries"),
    _p("Annotation Backlog Stale",
       "A signature's oldest annotation task waits longer than `flywheel.max_backlog_age_days`.",
       ("`ratchet annotate stats` — which signature, how many tasks, how old.",
        "Work the queue (the Annotate page, or `ratchet annotate next`); skip what nobody can answer "
        "(`ratchet annotate submit <task> --skip`); add annotators if one person cannot keep up."),
       "docs/operations.md — Annotation backlog"),
    _p("Golden Set Regression",
       "A version (production, or a live candidate) scores significantly lower on its golden set than in the "
       "previous run, paired on the same examples: the interval of the drop excludes zero (beyond "
       "`flywheel.golden_min_drop`) and the paired test agrees.",
       ("`ratchet eval-regression -s <signature>` — which version, how many points, against what; the report in "
        "`<home>/eval_reports/<signature>/` lists every example's score.",
        "If production changed since the previous run (a promotion), compare the two versions "
        "(`ratchet programs diff`) and roll back if the golden cases matter more than the held-out gain.",
        "If nothing was deployed, look for a model change (the report names the model) or relabelled golden "
        "examples; a live candidate that regresses can be rolled back (`ratchet ab rollback`)."),
       "docs/operations.md — Golden-set regression"),
    _p("Audit Log Broken",
       "The audit log's hash chain does not verify: an entry was changed, removed or a file damaged.",
       ("`ratchet audit verify` names the first bad entry and file.",
        "Treat it as a security incident: keep the files, compare with the latest backup "
        "(`ratchet backup`), find who had write access to the home."),
       "docs/operations.md — Audit log"),
    _p("API Key Rotation Due",
       "Keys are older than the rotation age.",
       ("`ratchet keys list`; replace each with `ratchet keys rotate <key>` and hand the new key to its user.",),
       "docs/operations.md — API keys and roles"),
    _p("API Key Unused",
       "Keys have not been used for a long time.",
       ("`ratchet keys list`; revoke what nobody uses (`ratchet keys revoke <key>`).",),
       "docs/operations.md — API keys and roles"),
    _p("Monitoring Check Failed",
       "A check could not run (a database or file error): what it watches is not being watched.",
       ("Run it by hand (`ratchet monitor check-<name>`) to see the error; `ratchet doctor` checks the home and "
        "the database.",),
       "docs/operations.md — Scheduled jobs"),
    _p("Monitoring State Reset",
       "`monitoring_state.json` was corrupted and set aside: active alerts and cooldowns start afresh, so some "
       "alerts may be sent again.",
       ("Look at the set-aside file (its path is in the alert) and the disk (`df`, the kernel log).",),
       "docs/operations.md — Scheduled jobs"),
])


def playbook_for(title: str) -> Playbook | None:
    """The playbook of an alert titled ``title`` (a ``Resolved: …`` notice gets its alert's); None if unknown."""
    if title.startswith(RESOLVED_PREFIX):
        title = title[len(RESOLVED_PREFIX):]
    return PLAYBOOKS.get(title)
