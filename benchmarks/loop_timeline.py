"""The loop with nobody at the terminal, timed: when each step of the end-to-end scenario happened.

    python benchmarks/loop_timeline.py [--json] [--no-shadow] [--keep DIR] [--out benchmarks/results/loop_timeline.json]

Runs the scenario of ``tests/integration/test_loop_e2e.py`` (``tests/integration/loop_harness.py``:
a real ``ratchet serve`` and ``ratchet controller run`` on the embedded model, Banking77 replayed with
feedback from its labels, the feedback-volume trigger, a cycle, shadow → stages → promotion with a
``kill -9`` of the controller mid-stage, then a candidate with wrong-label demos rolled back) and
prints its timeline — seconds since the start of every event — and the headline figures, as a table
or (``--json``) as JSON. The full record (experiments and their events, the leases, every loadtest
report) goes to ``--out``. Exit status 1 when a step did not happen.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

REPO = Path(__file__).resolve().parents[1]


def _harness() -> Any:
    """The test's scenario module, ``tests/integration/loop_harness.py`` (tests/ is not an installed package: it is
    imported from the repository's root, so its relative imports work as under pytest)."""
    sys.path.insert(0, str(REPO))
    return importlib.import_module("tests.integration.loop_harness")


def _machine() -> str:
    return (f"{platform.node()} · {platform.machine()} · {os.cpu_count()} CPUs · Python "
            f"{platform.python_version()}")


def _print(result: dict[str, Any], console: Console) -> None:
    table = Table(title=f"the loop with nobody at the terminal ({result['figures']['total_s']:.0f} s, shadow "
                        f"{'on' if result['shadow'] else 'off'})", title_justify="left")
    table.add_column("t (s)", justify="right")
    table.add_column("event")
    table.add_column("detail", overflow="fold")
    for row in result["timeline"]:
        table.add_row(f"{row['t_s']:.1f}", row["event"], row["detail"])
    console.print(table)
    figures = Table(title="figures", title_justify="left")
    figures.add_column("figure")
    figures.add_column("value", overflow="fold")
    for key, value in result["figures"].items():
        figures.add_row(key, json.dumps(value) if isinstance(value, dict | list) else str(value))
    console.print(figures)
    if result["error"]:
        console.print(f"[red]the scenario stopped: {result['error']}[/]")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", action="store_true", help="print the result as JSON instead of tables")
    parser.add_argument("--no-shadow", action="store_true", help="start experiments at their first stage")
    parser.add_argument("--keep", type=Path, default=None, help="run in this (new) directory and keep it")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/loop_timeline.json"))
    args = parser.parse_args()
    harness = _harness()
    schedule = harness.Schedule(shadow=not args.no_shadow)
    console = Console(stderr=args.json)
    started = time.time()
    load_before = os.getloadavg()

    def progress(message: str) -> None:
        console.print(f"[dim]{time.time() - started:6.1f} s[/] {message}", highlight=False)

    with tempfile.TemporaryDirectory(prefix="ratchet-loop-") as tmp:
        workspace = args.keep or Path(tmp)
        workspace.mkdir(parents=True, exist_ok=True)
        run = harness.run_scenario(workspace, schedule, progress)
    result = {"command": "python benchmarks/loop_timeline.py " + " ".join(sys.argv[1:]), "machine": _machine(),
              "measured_at": time.strftime("%Y-%m-%d %H:%M:%S"),
              # 1-minute load average before and after: other work on the machine slows the model most
              "load_average": {"before": round(load_before[0], 2), "after": round(os.getloadavg()[0], 2)},
              **run.to_dict()}
    if run.error:
        result["logs"] = run.logs
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, default=str) + "\n")
    if args.json:
        print(json.dumps({k: result[k] for k in ("command", "machine", "measured_at", "load_average", "shadow", "error",
                                                 "timeline", "figures")}, indent=2, default=str))
    else:
        _print(result, console)
        console.print(f"{result['machine']}; load average {result['load_average']['before']} before, "
                      f"{result['load_average']['after']} after", highlight=False)
    sys.exit(1 if run.error else 0)


if __name__ == "__main__":
    main()
