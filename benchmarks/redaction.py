"""Recall, precision and speed of the telemetry PII redactor on the labelled set.

    python benchmarks/redaction.py [--data benchmarks/data/pii_labelled.jsonl] [--repeats 5]
                                   [--out benchmarks/results/redaction.json]

The set comes from ``benchmarks/make_pii_set.py`` (real customer messages with inserted PII and
hard negatives). Per kind:

- recall: a labelled span is found when its text is gone from the output and the redactor
  counted a redaction of that kind for it (per text: ``min(spans of the kind whose text is
  gone, redactions of the kind)``), so a value replaced by the wrong token is a miss;
- precision: found spans over all redactions of the kind; every other redaction (on negatives,
  on other kinds' values, a value split in two) is a false positive.

Also: how many outputs equal the ideal output exactly (labelled spans replaced by their tokens,
nothing else touched), false positives on texts without PII, microseconds per text (median and
p99 of each text's fastest of ``--repeats`` runs) and a scan of all bundled carrier messages,
which hold no inserted PII, for flagged texts.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import statistics
import sys
import time
from collections import Counter
from pathlib import Path

from rich.console import Console
from rich.table import Table

from ratchet.telemetry.redact import BUILTIN_KINDS, Redactor, token_for

ROOT = Path(__file__).resolve().parents[1]
CARRIERS = ROOT / "src" / "ratchet" / "examples" / "data"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=ROOT / "benchmarks" / "data" / "pii_labelled.jsonl")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per text; the fastest counts")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "redaction.json")
    args = parser.parse_args()

    raw = args.data.read_bytes()
    rows = [json.loads(line) for line in raw.decode().splitlines() if line.strip()]
    redactor = Redactor()
    quality = score(redactor, rows)
    timing = time_texts(redactor, rows, args.repeats)
    result = {
        "machine": f"{platform.node()} · {platform.machine()} · {platform.processor() or '?'} · "
                   f"{os.cpu_count() or 1} CPUs · Python {platform.python_version()}",
        "command": " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]),
        "data": {"path": _shown(args.data), "sha256": hashlib.sha256(raw).hexdigest(), "texts": len(rows),
                 "without_pii": sum(1 for r in rows if not r["spans"])},
        **quality,
        "microseconds_per_text": timing,
        "carrier_scan": scan_carriers(redactor),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    show(result)


def _shown(path: Path) -> str:
    """``path`` relative to the repository when it is inside it."""
    resolved = path.resolve()
    return resolved.relative_to(ROOT).as_posix() if resolved.is_relative_to(ROOT) else resolved.as_posix()


def score(redactor: Redactor, rows: list[dict]) -> dict:
    labelled, found, redactions = Counter(), Counter(), Counter()
    exact = negatives_flagged = 0
    misses: list[dict] = []
    false_positives: list[dict] = []
    for row in rows:
        text, spans = row["text"], row["spans"]
        output, counts = redactor.redact_text(text)
        redactions.update(counts)
        exact += output == ideal(text, spans)
        negatives_flagged += not spans and bool(counts)
        for kind in set(counts) | {s["kind"] for s in spans}:
            of_kind = [s for s in spans if s["kind"] == kind]
            gone = sum(1 for s in of_kind if text[s["start"] : s["end"]] not in output)
            hit = min(gone, counts[kind])
            labelled[kind] += len(of_kind)
            found[kind] += hit
            if hit < len(of_kind) and len(misses) < 40:
                misses.append({"kind": kind, "text": text, "output": output})
            if counts[kind] > hit and len(false_positives) < 40:
                false_positives.append({"kind": kind, "text": text, "output": output})
    per_kind = {}
    for kind in BUILTIN_KINDS:
        per_kind[kind] = {
            "labelled": labelled[kind],
            "found": found[kind],
            "recall": round(found[kind] / labelled[kind], 4) if labelled[kind] else None,
            "redactions": redactions[kind],
            "false_positives": redactions[kind] - found[kind],
            "precision": round(found[kind] / redactions[kind], 4) if redactions[kind] else None,
        }
    total_l, total_f, total_r = sum(labelled.values()), sum(found.values()), sum(redactions.values())
    return {
        "per_kind": per_kind,
        "overall": {"labelled": total_l, "found": total_f, "recall": round(total_f / total_l, 4),
                    "redactions": total_r, "precision": round(total_f / total_r, 4) if total_r else None},
        "exact_output_rate": round(exact / len(rows), 4),
        "negatives_flagged": negatives_flagged,
        "misses": misses,
        "false_positive_examples": false_positives,
    }


def ideal(text: str, spans: list[dict]) -> str:
    """``text`` with exactly its labelled spans replaced by their tokens."""
    out, pos = [], 0
    for span in sorted(spans, key=lambda s: s["start"]):
        out += (text[pos : span["start"]], token_for(span["kind"]))
        pos = span["end"]
    return "".join(out) + text[pos:]


def time_texts(redactor: Redactor, rows: list[dict], repeats: int) -> dict:
    best = [float("inf")] * len(rows)
    texts = [row["text"] for row in rows]
    for _ in range(repeats):
        for i, text in enumerate(texts):
            started = time.perf_counter_ns()
            redactor.redact_text(text)
            best[i] = min(best[i], (time.perf_counter_ns() - started) / 1000)

    def summary(keep: list[bool]) -> dict:
        ordered = sorted(b for b, k in zip(best, keep, strict=True) if k)
        return {"texts": len(ordered), "median": round(statistics.median(ordered), 2),
                "p99": round(ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))], 2),
                "mean": round(statistics.fmean(ordered), 2),
                "mean_chars": round(statistics.fmean(len(t) for t, k in zip(texts, keep, strict=True) if k), 1)}

    return {
        "all": summary([True] * len(rows)),
        "without_pii": summary([not r["spans"] for r in rows]),
        "with_pii": summary([bool(r["spans"]) for r in rows]),
    }


def scan_carriers(redactor: Redactor) -> dict:
    """Run the redactor over every bundled customer message (no inserted PII): what gets flagged."""
    texts = [json.loads(line)["text"] for path in sorted(CARRIERS.glob("*/*.jsonl"))
             for line in path.read_text().splitlines() if line.strip()]
    started = time.perf_counter()
    flagged = []
    for text in texts:
        output, counts = redactor.redact_text(text)
        if counts:
            flagged.append({"text": text, "output": output, "kinds": dict(counts)})
    seconds = time.perf_counter() - started
    return {"texts": len(texts), "flagged": len(flagged), "examples": flagged[:10],
            "mean_microseconds": round(seconds / len(texts) * 1e6, 2)}


def show(result: dict) -> None:
    console = Console()
    data = result["data"]
    table = Table(title=f"PII redaction · {data['texts']} texts ({data['without_pii']} without PII)")
    for column in ("kind", "labelled", "found", "recall", "redactions", "false pos.", "precision"):
        table.add_column(column, justify="left" if column == "kind" else "right")

    def fmt(value: float | None) -> str:
        return "–" if value is None else f"{value:.3f}"

    for kind, row in result["per_kind"].items():
        table.add_row(kind, str(row["labelled"]), str(row["found"]), fmt(row["recall"]), str(row["redactions"]),
                      str(row["false_positives"]), fmt(row["precision"]))
    overall = result["overall"]
    table.add_row("all", str(overall["labelled"]), str(overall["found"]), fmt(overall["recall"]),
                  str(overall["redactions"]), str(overall["redactions"] - overall["found"]), fmt(overall["precision"]),
                  style="bold")
    console.print(table)
    timing = result["microseconds_per_text"]
    for name, t in timing.items():
        console.print(f"{name:12s} {t['texts']:4d} texts: median {t['median']:.1f} µs, p99 {t['p99']:.1f} µs "
                      f"(mean {t['mean']:.1f} µs, {t['mean_chars']:.0f} chars on average)")
    console.print(f"exact output (only the labelled spans replaced): {result['exact_output_rate']:.1%}; "
                  f"texts without PII flagged: {result['negatives_flagged']}")
    scan = result["carrier_scan"]
    console.print(f"carrier messages flagged: {scan['flagged']} of {scan['texts']} "
                  f"({scan['mean_microseconds']:.1f} µs each on average)")
    console.print(f"[dim]{result['machine']}[/dim]")


if __name__ == "__main__":
    main()
