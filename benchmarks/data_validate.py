"""Throughput and peak memory of ``ratchet data validate`` (schema, quality score, exact + near-duplicate removal).

    python benchmarks/data_validate.py [--n 100000] [--seed 0] [--out benchmarks/results/data_validate.json]

Builds ``--n`` raw examples from the bundled Banking77 (``classify_intent``, 40 %) and
Restaurant-8k (``extract_booking``, 60 %) texts with variations — copies, greetings and
sign-offs, character swaps and deletions, dropped words, case and punctuation changes,
a few schema violations — writes them as one JSON Lines file, and runs the real command
(``ratchet data validate --input … --output … --against-dataset none --json``) in this
process. Reports examples per second end to end, the validation share, what was accepted
and rejected, and the process's peak resident memory (``ru_maxrss``). Goal: under 30 s.
"""

from __future__ import annotations

import argparse
import json
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
from typer.testing import CliRunner

from ratchet.cli import data_cmd
from ratchet.examples import classify_intent, extract_booking

console = Console(stderr=True)

PREFIXES = ["", "", "", "Hi, ", "Hello! ", "Quick question: ", "Hey there. ", "Good morning, ", "Excuse me, ",
            "Sorry to bother you, ", "Hi team, ", "Urgent: "]
SUFFIXES = ["", "", "", " Thanks.", " Please help.", " Thank you!", " Cheers", " Any idea?", " ASAP please.",
            " Thanks in advance.", " Regards, Sam"]


def _rows(directory: Path) -> list[dict[str, Any]]:
    rows = []
    for name in ("train.jsonl", "test.jsonl"):
        rows.extend(json.loads(line) for line in (directory / name).read_text().splitlines() if line.strip())
    return rows


def vary(text: str, rng: random.Random) -> str:
    """A plausible re-phrasing of ``text``: unchanged, or one or two small edits."""
    kind = rng.random()
    if kind < 0.25:
        return text
    if kind < 0.55:
        return rng.choice(PREFIXES) + text + rng.choice(SUFFIXES)
    chars = list(text)
    for _ in range(rng.randint(1, 2)):
        edit = rng.choice(("swap", "delete", "drop_word", "case", "punct"))
        if edit == "swap" and len(chars) > 3:
            i = rng.randrange(len(chars) - 1)
            chars[i], chars[i + 1] = chars[i + 1], chars[i]
        elif edit == "delete" and len(chars) > 3:
            del chars[rng.randrange(len(chars))]
        elif edit == "drop_word":
            words = "".join(chars).split()
            if len(words) > 3:
                del words[rng.randrange(len(words))]
            chars = list(" ".join(words))
        elif edit == "case":
            chars = list("".join(chars).lower() if rng.random() < 0.5 else "".join(chars).upper())
        else:
            chars = [c for c in chars if c not in ".,?!"] + [rng.choice(".?!")]
    return "".join(chars)


def build(n: int, seed: int, path: Path) -> dict[str, int]:
    """Write ``n`` raw examples to ``path``; returns how many per signature."""
    rng = random.Random(seed)
    banking = _rows(classify_intent.DATA)
    restaurant = _rows(extract_booking.DATA)
    counts = {"classify_intent": 0, "extract_booking": 0, "schema_violations": 0}
    with path.open("w", encoding="utf-8") as fh:
        for i in range(n):
            if rng.random() < 0.4:
                row = dict(rng.choice(banking))
                signature = "classify_intent"
            else:
                row = dict(rng.choice(restaurant))
                signature = "extract_booking"
            row["text"] = vary(row["text"], rng)
            if i % 500 == 0:  # a few broken examples: wrong label, empty input
                if signature == "classify_intent":
                    row["intent"] = "not_an_intent"
                else:
                    row["text"] = "   "
                counts["schema_violations"] += 1
            counts[signature] += 1
            row["_meta"] = {"signature": signature, "source": rng.choice(("telemetry", "synthetic", "git"))}
            fh.write(json.dumps(row) + "\n")
    return counts


def run(n: int, seed: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="ratchet-bench-") as tmp:
        raw = Path(tmp) / "raw.jsonl"
        started = time.perf_counter()
        built = build(n, seed, raw)
        build_s = time.perf_counter() - started
        rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        os.chdir(tmp)  # an empty working directory: default settings, no ratchet.toml
        started = time.perf_counter()
        result = CliRunner().invoke(data_cmd.app, ["validate", "--input", str(raw), "--output", str(Path(tmp) / "out"),
                                                   "--against-dataset", "none", "--json"])
        elapsed = time.perf_counter() - started
        if result.exit_code != 0:
            raise SystemExit(f"validate failed ({result.exit_code}): {result.output} {result.exception!r}")
        report = json.loads(result.stdout)
        rss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        output_mb = sum(p.stat().st_size for p in (Path(tmp) / "out").iterdir()) / 1e6
        input_mb = raw.stat().st_size / 1e6
    validation_s = report["totals"]["seconds"]
    return {
        "n": n, "seed": seed, "built": built, "build_seconds": round(build_s, 2), "input_mb": round(input_mb, 1),
        "output_mb": round(output_mb, 1), "seconds": round(elapsed, 2),
        "examples_per_s": round(n / elapsed), "validation_seconds": validation_s,
        "read_write_seconds": round(elapsed - validation_s, 2),
        "peak_rss_mb": round(rss_after / 1024), "rss_before_mb": round(rss_before / 1024),
        "accepted": report["totals"]["accepted"], "rejected": report["totals"]["rejected"],
        "signatures": {sig: {k: row[k] for k in ("examples", "accepted", "rejections", "quality", "difficulty",
                                                 "seconds", "duplicate_rate")}
                       for sig, row in report["signatures"].items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=100_000, help="raw examples to validate")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/data_validate.json"))
    args = parser.parse_args()
    out = args.out.resolve()
    command = " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]])
    console.print(f"validating {args.n:,} examples …")
    numbers = run(args.n, args.seed)
    result = {
        "machine": {"node": platform.node(), "machine": platform.machine(), "processor": platform.processor() or "?",
                    "cpu_count": os.cpu_count(), "python": platform.python_version(), "system": platform.platform()},
        "command": command,
        **numbers,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    _print(result)


def _print(result: dict[str, Any]) -> None:
    m = result["machine"]
    table = Table(title=f"data validate · {m['node']} · {m['cpu_count']} CPUs · Python {m['python']}")
    for column in ("measure", "value", "goal", ""):
        table.add_column(column, justify="left" if column == "measure" else "right")

    def row(measure: str, value: str, goal: str = "", ok: bool | None = None) -> None:
        table.add_row(measure, value, goal, "" if ok is None else ("[green]ok[/]" if ok else "[red]missed[/]"))

    row(f"examples ({result['input_mb']} MB of JSON Lines)", f"{result['n']:,}")
    row("end to end (read, validate, dedup, write)", f"{result['seconds']:.1f} s", "< 30 s", result["seconds"] < 30)
    row("examples per second", f"{result['examples_per_s']:,}")
    row("  validation + dedup", f"{result['validation_seconds']:.1f} s")
    row("  reading + writing", f"{result['read_write_seconds']:.1f} s")
    row("peak resident memory", f"{result['peak_rss_mb']:,} MB")
    row("accepted / rejected", f"{result['accepted']:,} / {result['rejected']:,}")
    for sig, s in result["signatures"].items():
        reasons = ", ".join(f"{code} {count:,}" for code, count in s["rejections"].items())
        row(f"  {sig}: {s['examples']:,} → {s['accepted']:,}", reasons)
        row(f"  {sig}: quality mean / p10 / min", f"{s['quality']['mean']} / {s['quality']['p10']} / "
            f"{s['quality']['min']}")
    Console().print(table)


if __name__ == "__main__":
    main()
