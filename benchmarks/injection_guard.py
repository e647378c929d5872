"""Detection, false positives and cost of the L1 injection guard.

    python benchmarks/injection_guard.py [--data benchmarks/data/injection_attempts.jsonl]
                                         [--datasets /path/to/datasets] [--repeats 5]
                                         [--out benchmarks/results/injection_guard.json]

- detection: share of the labelled injection attempts (``make_injection_set.py``) the shipped
  rules catch, per category and overall, for the development rows (the rules were tuned on
  them) and the held-out rows (written after the rules were frozen, scored once);
- false positives: hard negatives of the set flagged, and real customer texts flagged: every
  text of Banking77 and Restaurant-8k. ``--datasets`` names a directory with the upstream files
  (``banking77/{train,test}.csv``, ``restaurant8k/{train,test}.json``); without it, the subsets
  bundled with the example programs (13,500 texts) are read;
- latency: what :meth:`ratchet.serve.guard.InputGuard.screen` adds to a request in block mode
  (one ``text`` field), per real text the fastest of ``--repeats`` runs; median and p99 in µs.

Banking77 (Casanueva et al. 2020) and Restaurant-8k (Coope et al. 2020) are PolyAI's data
sets, CC BY 4.0 (``src/ratchet/examples/data/ATTRIBUTION.md``).
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import os
import platform
import statistics
import sys
import time
from collections import Counter
from pathlib import Path

from ratchet.config.settings import GuardSettings
from ratchet.guard import Detector
from ratchet.serve.guard import InputGuard

ROOT = Path(__file__).resolve().parents[1]
BUNDLED = ROOT / "src" / "ratchet" / "examples" / "data"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=ROOT / "benchmarks" / "data" / "injection_attempts.jsonl")
    parser.add_argument("--datasets", type=Path, help="upstream Banking77 and Restaurant-8k files (default: the "
                                                       "bundled subsets)")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per real text; the fastest counts")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "injection_guard.json")
    args = parser.parse_args()

    raw = args.data.read_bytes()
    rows = [json.loads(line) for line in raw.decode().splitlines() if line.strip()]
    detector = Detector()
    texts, origin = real_texts(args.datasets)
    result = {
        "machine": f"{platform.node()} · {platform.machine()} · {platform.processor() or '?'} · "
                   f"{os.cpu_count() or 1} CPUs · Python {platform.python_version()}",
        "command": " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]),
        "data": {"path": args.data.relative_to(ROOT).as_posix() if args.data.is_relative_to(ROOT) else str(args.data),
                 "sha256": hashlib.sha256(raw).hexdigest(), "rows": len(rows)},
        "detection": {split: detection(detector, [r for r in rows if r["split"] == split])
                      for split in ("development", "held_out")},
        "real_texts": {"source": origin, **false_positives(detector, texts)},
        "microseconds_per_request": timing(texts, args.repeats),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    show(result)


def real_texts(directory: Path | None) -> tuple[list[str], str]:
    """Every customer text of Banking77 and Restaurant-8k: upstream files in ``directory``, else the bundled ones."""
    if directory is None:
        texts = [json.loads(line)["text"] for path in sorted(BUNDLED.glob("*/*.jsonl"))
                 for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        return texts, "bundled subsets (src/ratchet/examples/data)"
    texts = []
    for split in ("train", "test"):
        with (directory / "banking77" / f"{split}.csv").open(encoding="utf-8", newline="") as handle:
            texts += [row["text"] for row in csv.DictReader(handle)]
        items = json.loads((directory / "restaurant8k" / f"{split}.json").read_text(encoding="utf-8"))
        texts += [item["userInput"]["text"] for item in items]
    return texts, "upstream files: banking77/{train,test}.csv, restaurant8k/{train,test}.json"


def detection(detector: Detector, rows: list[dict]) -> dict:
    caught, total, missed, flagged = Counter(), Counter(), [], []
    by_variant: Counter = Counter()
    variants: Counter = Counter()
    for row in rows:
        found = detector.scan(row["text"])
        total[row["category"]] += 1
        if row["label"] == "benign":
            if found is not None:
                caught[row["category"]] += 1
                flagged.append({"id": row["id"], "rule": found.rule, "matched": found.matched})
            continue
        if "variant" in row:
            variants[row["variant"]] += 1
            by_variant[row["variant"]] += found is not None
        if found is not None:
            caught[row["category"]] += 1
        else:
            missed.append(row["id"])
    attacks = [c for c in total if c != "hard_negative"]
    n_attacks = sum(total[c] for c in attacks)
    n_caught = sum(caught[c] for c in attacks)
    without = [c for c in attacks if c != "paraphrase"]
    return {
        "per_category": {c: {"caught": caught[c], "of": total[c], "rate": round(caught[c] / total[c], 4)}
                         for c in attacks},
        "obfuscation_variants": {v: f"{by_variant[v]}/{variants[v]}" for v in variants},
        "overall": {"caught": n_caught, "of": n_attacks, "rate": round(n_caught / n_attacks, 4) if n_attacks else None},
        "without_paraphrase": {"caught": sum(caught[c] for c in without), "of": sum(total[c] for c in without)},
        "hard_negatives_flagged": {"flagged": caught["hard_negative"], "of": total["hard_negative"],
                                   "examples": flagged},
        "missed": missed,
    }


def false_positives(detector: Detector, texts: list[str]) -> dict:
    flagged = []
    for text in texts:
        found = detector.scan(text)
        if found is not None:
            flagged.append({"text": text, "rule": found.rule, "matched": found.matched})
    return {"texts": len(texts), "distinct": len(set(texts)), "flagged": len(flagged),
            "rate": len(flagged) / len(texts), "examples": flagged[:20]}


def timing(texts: list[str], repeats: int) -> dict:
    """What the guard adds to one request (block mode, one text field), per text the fastest of ``repeats``."""
    guard = InputGuard(GuardSettings(mode="block"))
    guard.screen("classify_intent", {"text": "warm up"}, "warm-up")
    best = []
    clock = time.perf_counter_ns
    for text in texts:
        values = {"text": text}
        fastest = None
        for _ in range(repeats):
            started = clock()
            guard.screen("classify_intent", values, "bench")
            elapsed = clock() - started
            fastest = elapsed if fastest is None else min(fastest, elapsed)
        best.append(fastest / 1000)
    best.sort()
    return {"texts": len(best), "median": round(statistics.median(best), 1),
            "p99": round(best[int(0.99 * (len(best) - 1))], 1), "max": round(best[-1], 1)}


def show(result: dict) -> None:
    for split, figures in result["detection"].items():
        print(f"{split}:")
        for category, row in figures["per_category"].items():
            print(f"  {category:26} {row['caught']:3}/{row['of']:<3} {row['rate']:.1%}")
        overall = figures["overall"]
        print(f"  {'overall':26} {overall['caught']:3}/{overall['of']:<3} {overall['rate']:.1%}  "
              f"(without paraphrase {figures['without_paraphrase']['caught']}/{figures['without_paraphrase']['of']})")
        hard = figures["hard_negatives_flagged"]
        print(f"  hard negatives flagged     {hard['flagged']}/{hard['of']}")
    real = result["real_texts"]
    print(f"real texts: {real['flagged']} of {real['texts']} flagged ({real['rate']:.4%}); {real['source']}")
    timing_ = result["microseconds_per_request"]
    print(f"guard per request: median {timing_['median']} µs, p99 {timing_['p99']} µs")


if __name__ == "__main__":
    main()
