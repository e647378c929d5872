"""What one audit entry costs: ``audit()`` end to end (lock, read the newest entry, write, fsync, rewrite the head),
and how fast ``ratchet audit verify`` walks the chain.

    python benchmarks/audit_append.py [--appends 1000] [--dir DIR] [--out benchmarks/results/audit_append.json]

Each call is timed alone (``perf_counter_ns``) with an entry like a rollout's (actor, target, reason and five
details). The log goes to a fresh directory under ``--dir`` (default: the system's temporary directory; give a
directory on the disk the home lives on — the fsyncs are most of the cost). Then the whole log is verified.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console

from ratchet.audit import audit, verify_audit

console = Console(stderr=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--appends", type=int, default=1000)
    parser.add_argument("--dir", type=Path, default=None, help="where the temporary home goes")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/audit_append.json"))
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        home = Path(tmp)
        times_us = []
        for i in range(args.appends):
            started = time.perf_counter_ns()
            audit(home, "experiment.advance", target=f"classify_intent_{i % 7}", actor="controller:bench:1",
                  source="controller", reason="stage passed: 412 candidate requests, 30 min",
                  details={"signature": "classify_intent", "from_status": "running", "from_percent": 25,
                           "to_percent": 50, "requests": 412})
            times_us.append((time.perf_counter_ns() - started) / 1000)
        started = time.perf_counter()
        report = verify_audit(home)
        verify_s = time.perf_counter() - started
        size = sum(p.stat().st_size for p in (home / "audit").glob("*.jsonl"))
    ordered = sorted(times_us)

    def pct(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 1)

    result = {
        "appends": args.appends,
        "append_us": {"median": round(statistics.median(times_us), 1), "p95": pct(0.95), "p99": pct(0.99),
                      "max": round(ordered[-1], 1), "mean": round(statistics.fmean(times_us), 1)},
        "verify": {"ok": report.ok, "entries": report.entries, "seconds": round(verify_s, 4),
                   "entries_per_s": round(report.entries / verify_s), "bytes": size,
                   "bytes_per_entry": round(size / max(1, report.entries))},
        "machine": {"platform": platform.platform(), "python": sys.version.split()[0], "cpus": os.cpu_count(),
                    "filesystem_dir": str(args.dir or tempfile.gettempdir())},
        "command": " ".join(["python", *sys.argv]),
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    a = result["append_us"]
    console.print(f"audit() × {args.appends}: median {a['median']:.0f} µs, p95 {a['p95']:.0f} µs, "
                  f"p99 {a['p99']:.0f} µs, max {a['max']:.0f} µs; "
                  f"verify: {report.entries} entries in {verify_s * 1000:.0f} ms "
                  f"({result['verify']['entries_per_s']:,}/s), {result['verify']['bytes_per_entry']} bytes/entry")


if __name__ == "__main__":
    main()
