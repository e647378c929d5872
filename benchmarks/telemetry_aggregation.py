"""Telemetry aggregation throughput: ``ratchet collect telemetry`` on a large log with malformed lines.

    python benchmarks/telemetry_aggregation.py [--lines 1000000] [--malformed 0.01] [--feedback 0.33]
                                               [--files 4] [--out benchmarks/results/telemetry_aggregation.json]

Writes a realistic telemetry directory in a temp dir, the way serving leaves it: ``--files - 1``
rotated, gzipped files and the active plain one. Interactions are ``classify_intent`` calls on
Banking77 messages (some with a reference number, so inputs repeat as in real traffic); about
``--feedback`` of them get a feedback record (a few before their call, some with a correction,
scores spread over 0–1); 2 % failed, 1 % too slow, 0.5 % too expensive; ``--malformed`` of all
lines are broken (torn JSON and garbage: malformed lines; wrong types: invalid records). Then the
aggregation runs in a fresh process (so its peak RSS is its own) and the report's counts are
checked against what was written.
"""

from __future__ import annotations

import argparse
import gzip
import heapq
import json
import multiprocessing
import os
import platform
import random
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

console = Console(stderr=True)

T0 = 1_764_000_000_000
MODEL = "llamacpp/gemma-3-270m-q4_k_m@sha256:a5fd3b62230aa5ec"
TRAIN = Path(__file__).resolve().parents[1] / "src" / "ratchet" / "examples" / "data" / "banking77" / "train.jsonl"
INTENTS = ("card_arrival", "exchange_rate", "lost_or_stolen_card", "pin_blocked", "age_limit", "cancel_transfer",
           "apple_pay_or_google_pay", "terminate_account", "atm_support", "edit_personal_details")


def _interaction(i: int, rng: random.Random, texts: list[tuple[str, str]]) -> dict[str, Any]:
    from ratchet.telemetry.records import InteractionLog

    text, intent = texts[rng.randrange(len(texts))]
    if rng.random() < 0.8:
        text = f"{text} (ref {rng.randrange(200)})"
    predicted = intent if rng.random() < 0.85 else INTENTS[rng.randrange(len(INTENTS))]
    roll = rng.random()
    success = roll >= 0.02
    return InteractionLog(
        module_name="classify_intent", module_version="v7", signature="classify_intent", input={"text": text},
        output={"intent": predicted} if success else {}, timestamp_ms=T0 + i * 50, success=success,
        latency_ms=round(6_500.0 if 0.02 <= roll < 0.03 else 80 + rng.random() * 300, 1),
        cost_usd=0.25 if 0.03 <= roll < 0.035 else 0.00002, model=MODEL, request_id=f"req-{i:08d}",
        arm="candidate" if rng.random() < 0.1 else "baseline", program_fingerprint="5c1f0e9a4b7d2e31",
        error=None if success else "LM timeout", error_type=None if success else "LMTimeout",
        tokens_in=318, tokens_out=9,
    ).to_dict()


def _feedback(i: int, rng: random.Random, at_ms: int) -> dict[str, Any]:
    from ratchet.telemetry.records import FeedbackRecord

    correction = {"intent": INTENTS[rng.randrange(len(INTENTS))]} if rng.random() < 0.1 else None
    return FeedbackRecord(request_id=f"req-{i:08d}", signature="classify_intent", score=round(rng.random(), 2),
                          correction=correction, timestamp_ms=at_ms).to_dict()


def _malformed(rng: random.Random, good: str) -> str:
    kind = rng.randrange(3)
    if kind == 0:
        return good[: rng.randrange(10, max(11, len(good) - 5))]  # torn line
    if kind == 1:
        return "\x00garbage " + str(rng.random())
    return json.dumps({"record": "interaction", "signature": "classify_intent", "success": "yes"})  # wrong type


def generate(directory: Path, lines: int, malformed_share: float, feedback_share: float, files: int,
             seed: int = 0) -> dict[str, int]:
    """Write the log; returns what was written (the counts the report must match)."""
    rng = random.Random(seed)
    texts = [(r["text"], r["intent"]) for r in map(json.loads, TRAIN.read_text().splitlines())]
    wrong_type = json.dumps({"record": "interaction", "signature": "classify_intent", "success": "yes"})
    per_file = -(-lines // files)
    written = {"lines": 0, "interactions": 0, "feedback": 0, "feedback_before_call": 0, "malformed_lines": 0,
               "invalid_records": 0}
    pending: list[tuple[int, int]] = []  # heap of (line index due, request index): feedback still to write
    i = 0
    early: list[int] = []
    for number in range(files):
        active = number == files - 1
        path = directory / ("interactions.jsonl" if active else f"interactions-20251124T16{number:04d}-42-0.jsonl.gz")
        opener = open if active else gzip.open
        with opener(path, "wt", encoding="utf-8") as fh:
            buffer = []
            for _ in range(min(per_file, lines - written["lines"])):
                if rng.random() < malformed_share:  # a broken line (a due feedback waits for the next one)
                    line = _malformed(rng, json.dumps(_interaction(i, rng, texts)))
                    written["invalid_records" if line == wrong_type else "malformed_lines"] += 1
                    buffer.append(line)
                    written["lines"] += 1
                    continue
                good = None
                if pending and pending[0][0] <= written["lines"]:
                    _, req = heapq.heappop(pending)
                    good = json.dumps(_feedback(req, rng, T0 + req * 50 + 5_000), separators=(",", ":"))
                    written["feedback"] += 1
                elif early and rng.random() < 0.5:
                    req = early.pop()
                    good = json.dumps(_feedback(req, rng, T0 + req * 50 + 10), separators=(",", ":"))
                    written["feedback"] += 1
                    written["feedback_before_call"] += 1
                if good is None:
                    good = json.dumps(_interaction(i, rng, texts), separators=(",", ":"))
                    written["interactions"] += 1
                    if rng.random() < feedback_share:
                        if rng.random() < 0.02:
                            early.append(i + rng.randrange(50, 500))  # feedback before its (later) call
                        else:
                            heapq.heappush(pending, (written["lines"] + rng.randrange(1, 200), i))
                    i += 1
                buffer.append(good)
                written["lines"] += 1
                if len(buffer) >= 10_000:
                    fh.write("\n".join(buffer) + "\n")
                    buffer.clear()
            if buffer:
                fh.write("\n".join(buffer) + "\n")
    written["bytes"] = sum(p.stat().st_size for p in directory.iterdir())
    return written


def _rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e6


def _aggregate(directory: str, output: str, queue: Any) -> None:
    from ratchet.config import Settings
    from ratchet.data.collect import TelemetryCollector
    from ratchet.programs import load_programs
    from ratchet.telemetry import iter_log_files

    registry = load_programs(Settings())
    files = iter_log_files(Path(directory))
    before = _rss_mb()
    started = time.perf_counter()
    report = TelemetryCollector(files, registry).collect(Path(output))
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e3
    queue.put({"seconds": seconds, "rss_before_mb": round(before, 1), "peak_rss_mb": round(peak, 1),
               "report": report.to_dict()})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--malformed", type=float, default=0.01, help="share of broken lines")
    parser.add_argument("--feedback", type=float, default=0.33, help="share of calls that get feedback")
    parser.add_argument("--files", type=int, default=4, help="log files (all but the last gzipped)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/telemetry_aggregation.json"))
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="ratchet-agg-") as tmp:
        logs, output = Path(tmp) / "telemetry", Path(tmp) / "out"
        logs.mkdir()
        console.print(f"writing {args.lines:,} lines into {args.files} files …")
        started = time.perf_counter()
        written = generate(logs, args.lines, args.malformed, args.feedback, args.files)
        console.print(f"  {time.perf_counter() - started:.1f} s, {written['bytes'] / 1e6:.1f} MB on disk")
        console.print("aggregating in a fresh process …")
        ctx = multiprocessing.get_context("spawn")
        queue = ctx.Queue()
        proc = ctx.Process(target=_aggregate, args=(str(logs), str(output), queue))
        proc.start()
        run = queue.get(timeout=3600)
        proc.join(60)

    report = run["report"]
    counts = report["counts"]
    checks = {
        "lines": counts["lines"] == written["lines"],
        "malformed_lines": counts["malformed_lines"] == written["malformed_lines"],
        "invalid_records": counts["invalid_records"] == written["invalid_records"],
        "interactions": counts["interactions"] == written["interactions"],
        "feedback_records": counts["feedback_records"] == written["feedback"],
        "every call accounted for": report["examined"] == report["collected"] + sum(report["skipped"].values()),
    }
    result = {
        "machine": {"node": platform.node(), "machine": platform.machine(), "cpu_count": os.cpu_count(),
                    "python": platform.python_version(), "system": platform.platform(),
                    "load_average_1m_at_end": round(os.getloadavg()[0], 2)},
        "command": " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]),
        "input": {**written, "files": args.files, "malformed_share": args.malformed, "feedback_share": args.feedback},
        "seconds": round(run["seconds"], 2),
        "lines_per_s": round(written["lines"] / run["seconds"]),
        "mb_per_s_on_disk": round(written["bytes"] / 1e6 / run["seconds"], 1),
        "peak_rss_mb": run["peak_rss_mb"],
        "rss_before_mb": run["rss_before_mb"],
        "collected": report["collected"],
        "skipped": report["skipped"],
        "counts": {k: v for k, v in counts.items() if k != "bytes"},
        "checks": checks,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    _print(result)


def _print(result: dict[str, Any]) -> None:
    m, counts = result["machine"], result["counts"]
    table = Table(title=f"telemetry aggregation · {m['node']} · {m['cpu_count']} CPUs · Python {m['python']}")
    table.add_column("measure")
    table.add_column("value", justify="right")
    inp = result["input"]
    table.add_row("input", f"{inp['lines']:,} lines, {inp['files']} files, {inp['bytes'] / 1e6:.1f} MB on disk")
    table.add_row("seconds", f"{result['seconds']:.2f}")
    table.add_row("lines/s", f"{result['lines_per_s']:,}")
    table.add_row("peak RSS (before the run)", f"{result['peak_rss_mb']:.0f} MB ({result['rss_before_mb']:.0f} MB)")
    table.add_row("interactions / feedback records", f"{counts['interactions']:,} / {counts['feedback_records']:,}")
    table.add_row("malformed lines / invalid records", f"{counts['malformed_lines']:,} / {counts['invalid_records']:,}")
    table.add_row("examples written", f"{result['collected']:,}")
    for reason, n in result["skipped"].items():
        table.add_row(f"  skipped: {reason}", f"{n:,}")
    table.add_row("feedback unmatched / superseded",
                  f"{counts.get('feedback_unmatched', 0):,} / {counts.get('feedback_superseded', 0):,}")
    ok = all(result["checks"].values())
    table.add_row("counts match what was written", "[green]yes[/]" if ok else f"[red]no: {result['checks']}[/]")
    Console().print(table)


if __name__ == "__main__":
    main()
