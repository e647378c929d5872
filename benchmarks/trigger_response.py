"""Detection-to-response: from a live trigger's condition becoming true to its cycle starting, nobody involved.

    python benchmarks/trigger_response.py [--rounds 3] [--out benchmarks/results/trigger_response.json]

A real `ratchet controller run` process with the shipped defaults (it ticks every
rollout.check_interval_s = 30 s and evaluates triggers every loop.trigger_check_interval_s = 60 s)
watches a workspace. Each round, at a random moment, the 50th new feedback on `classify_intent`'s
requests arrives (loop.feedback_volume_threshold = 50) — the condition becomes true — and the
benchmark waits for the cycle it starts (the run's orchestration_summary.json, with the trigger's
reason). The cycle is given nothing to collect (`--git-target 0 --synthetic-target 0`), so it ends
at once; only its start matters here. loop.optimization_interval_hours is shortened to 1 s so the
rounds can follow each other. Goal (issue 12): within 5 minutes.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

from ratchet.config import load_settings
from ratchet.store.db import StateDB
from ratchet.store.feedback import record_feedback
from ratchet.store.outcomes import OutcomeRecorder

SIG = "classify_intent"


def _add_feedback(db: StateDB, n: int, tag: str) -> float:
    recorder = OutcomeRecorder(db, flush_interval_s=60)
    for i in range(n):
        recorder.index_request(f"{tag}-{i}", SIG, "base", "baseline")
    recorder.close()
    for i in range(n):
        record_feedback(db, f"{tag}-{i}", 1.0)
    return time.time()  # the last one is committed: the condition is true from now


def _runs(home: Path) -> dict[str, dict]:
    found = {}
    for path in (home / "runs").glob("run_*/orchestration_summary.json"):
        try:
            found[path.parent.name] = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/trigger_response.json"))
    args = parser.parse_args()
    rng = random.Random(args.seed)
    rounds = []
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "ratchet.toml"
        config.write_text('home = ".ratchet"\n[loop]\noptimization_interval_hours = 0.0003\n'
                          '[schedule]\ncycle_args = ["--git-target", "0", "--synthetic-target", "0"]\n')
        settings = load_settings(config)
        db = StateDB.connect(settings)
        log = (Path(tmp) / "controller.log").open("wb")
        controller = subprocess.Popen([sys.executable, "-m", "ratchet", "--config", str(config), "controller", "run"],
                                      stdout=log, stderr=subprocess.STDOUT, cwd=tmp)
        try:
            time.sleep(5)
            for round_ in range(args.rounds):
                time.sleep(rng.uniform(0, 60))  # a random phase against the controller's schedule
                before = set(_runs(settings.home_dir))
                true_at = _add_feedback(db, 50, f"round{round_}")
                deadline = time.time() + 600
                while time.time() < deadline:
                    new = {k: v for k, v in _runs(settings.home_dir).items() if k not in before and v.get("trigger")}
                    if new:
                        run = next(iter(new.values()))
                        started = datetime.fromisoformat(run["started_at"]).timestamp()
                        rounds.append({"round": round_, "condition_true_at": true_at, "cycle_started_at": started,
                                       "response_s": round(started - true_at, 1), "trigger": run["trigger"]})
                        print(f"round {round_ + 1}: cycle started {started - true_at:.1f} s after the condition",
                              file=sys.stderr)
                        break
                    time.sleep(0.5)
                else:
                    raise SystemExit(f"round {round_}: no cycle within 10 minutes; see {tmp}/controller.log")
                time.sleep(3)  # past optimization_interval_hours
        finally:
            controller.terminate()
            controller.wait(timeout=60)
    responses = [r["response_s"] for r in rounds]
    result = {
        "command": "python benchmarks/trigger_response.py " + " ".join(sys.argv[1:]),
        "machine": f"{platform.node()} · {platform.machine()} · {os.cpu_count()} CPUs · Python "
                   f"{platform.python_version()}",
        "measured_at": time.strftime("%Y-%m-%d %H:%M:%S"), "rounds": rounds,
        "median_response_s": statistics.median(responses), "max_response_s": max(responses),
        "goal_s": 300, "met": max(responses) <= 300,
    }
    print(json.dumps({k: result[k] for k in ("median_response_s", "max_response_s", "met")}))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
