"""Near-duplicate detection: precision and recall of the MinHash LSH index against exact Jaccard.

    python benchmarks/near_duplicates.py [--variants 3] [--unrelated 2000] [--seed 0]
                                         [--thresholds 0.7,0.8,0.9] [--out benchmarks/results/near_duplicates.json]

The set: every Banking77 text bundled with Ratchet, up to ``--variants`` edited copies of
each (character swaps and deletions, dropped words, punctuation and case changes — one
to four edits), and ``--unrelated`` Restaurant-8k texts. Ground truth: the exact Jaccard
similarity of every pair's character-shingle sets (``ratchet.data.dedup.shingles`` on the
normalised text, the validator's shingling), all pairs, computed with a sparse matrix
product. Found: each text queried against the index of the texts before it, then added
(the validator's order) — ``NearDuplicateIndex.query``. Also shown: what MinHash
estimates alone (no exact confirmation of candidates) would give, and the recall of pairs
just above the threshold. Goal at the default threshold: precision and recall ≥ 0.95.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table
from scipy import sparse

from ratchet.config.settings import DataSettings
from ratchet.data.dedup import NearDuplicateIndex, normalize_text, shingles
from ratchet.examples import classify_intent, extract_booking

console = Console(stderr=True)


def _texts(directory: Path) -> list[str]:
    out = []
    for name in ("train.jsonl", "test.jsonl"):
        out.extend(json.loads(line)["text"] for line in (directory / name).read_text().splitlines() if line.strip())
    return out


def edit(text: str, rng: random.Random) -> str:
    """One to four small edits: swap or delete a character, drop a word, change punctuation or case."""
    for _ in range(rng.randint(1, 4)):
        kind = rng.choice(("swap", "delete", "drop_word", "punct", "case"))
        if kind == "swap" and len(text) > 3:
            i = rng.randrange(len(text) - 1)
            text = text[:i] + text[i + 1] + text[i] + text[i + 2 :]
        elif kind == "delete" and len(text) > 3:
            i = rng.randrange(len(text))
            text = text[:i] + text[i + 1 :]
        elif kind == "drop_word":
            words = text.split()
            if len(words) > 3:
                del words[rng.randrange(len(words))]
                text = " ".join(words)
        elif kind == "punct":
            text = text.rstrip(".?!") + rng.choice(("", ".", "?", "!", "!!", " ?"))
        else:
            text = rng.choice((text.lower(), text.upper(), text.capitalize()))
    return text


def build(variants: int, unrelated: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    banking = _texts(classify_intent.DATA)
    texts = list(banking)
    for text in banking:
        texts.extend(edit(text, rng) for _ in range(rng.randint(0, variants)))
    texts.extend(rng.sample(_texts(extract_booking.DATA), unrelated))
    rng.shuffle(texts)
    return [normalize_text(t) for t in texts]


def exact_pairs(texts: list[str], size: int, floor: float, block: int = 500
                ) -> tuple[dict[tuple[int, int], float], float]:
    """Exact Jaccard similarity of every pair at or above ``floor`` (all pairs are computed, a block of rows at a
    time, as a sparse matrix product), and the seconds it took."""
    started = time.perf_counter()
    vocab: dict[str, int] = {}
    rows, cols = [], []
    for i, text in enumerate(texts):
        for shingle in shingles(text, size):
            rows.append(i)
            cols.append(vocab.setdefault(shingle, len(vocab)))
    matrix = sparse.csr_matrix((np.ones(len(rows), dtype=np.int32), (rows, cols)), shape=(len(texts), len(vocab)))
    sizes = np.asarray(matrix.sum(axis=1)).ravel()
    transposed = matrix.T.tocsc()
    pairs: dict[tuple[int, int], float] = {}
    for start in range(0, len(texts), block):
        shared = (matrix[start : start + block] @ transposed).tocoo()
        i, j = shared.row + start, shared.col
        keep = i < j
        i, j, common = i[keep], j[keep], shared.data[keep]
        jaccard = common / (sizes[i] + sizes[j] - common)
        close = jaccard >= floor
        pairs.update(((int(a), int(b)), float(s)) for a, b, s in zip(i[close], j[close], jaccard[close], strict=True))
    return pairs, time.perf_counter() - started


def lsh_pairs(texts: list[str], threshold: float, num_perm: int, size: int) -> dict[str, Any]:
    """Pairs the index reports (query then add, in order), and the MinHash-estimate-only pairs among candidates."""
    index = NearDuplicateIndex(threshold, num_perm, size)
    started = time.perf_counter()
    sketches = index.sketches(texts)
    found: set[tuple[int, int]] = set()
    estimated: set[tuple[int, int]] = set()
    candidates = 0
    for i, sketch in enumerate(sketches):
        for j in index.candidates(sketch):
            candidates += 1
            if (sketches[j].hashvalues == sketch.hashvalues).mean() >= threshold:
                estimated.add((j, i))
        found.update((int(j), i) for j in index.query(sketch))
        index.add(i, sketch)
    return {"found": found, "estimated": estimated, "candidates": candidates, "bands": index.bands,
            "rows": index.rows, "seconds": time.perf_counter() - started}


def score(found: set[tuple[int, int]], truth: set[tuple[int, int]]) -> dict[str, float]:
    hits = len(found & truth)
    return {"found": len(found), "true": len(truth), "correct": hits,
            "precision": round(hits / len(found), 4) if found else 1.0,
            "recall": round(hits / len(truth), 4) if truth else 1.0}


def run(args: argparse.Namespace) -> dict[str, Any]:
    defaults = DataSettings()
    texts = build(args.variants, args.unrelated, args.seed)
    console.print(f"{len(texts):,} texts; exact Jaccard of all {len(texts) * (len(texts) - 1) // 2:,} pairs …")
    similarities, exact_s = exact_pairs(texts, defaults.shingle_size, floor=min(args.thresholds))
    results = []
    for threshold in args.thresholds:
        truth = {pair for pair, s in similarities.items() if s >= threshold}
        borderline = {pair for pair, s in similarities.items() if threshold <= s < threshold + 0.05}
        lsh = lsh_pairs(texts, threshold, defaults.minhash_permutations, defaults.shingle_size)
        results.append({
            "threshold": threshold, "default": threshold == defaults.near_duplicate_threshold,
            "bands": lsh["bands"], "rows": lsh["rows"], "seconds": round(lsh["seconds"], 2),
            "candidates_per_text": round(lsh["candidates"] / len(texts), 2),
            "index": score(lsh["found"], truth),
            "minhash_estimate_only": score(lsh["estimated"], truth),
            "borderline_recall": score(lsh["found"], borderline)["recall"] if borderline else None,
            "borderline_pairs": len(borderline),
        })
    return {"texts": len(texts), "pairs": len(texts) * (len(texts) - 1) // 2, "exact_seconds": round(exact_s, 2),
            "num_perm": defaults.minhash_permutations, "shingle_size": defaults.shingle_size,
            "default_threshold": defaults.near_duplicate_threshold, "results": results}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variants", type=int, default=3, help="edited copies per Banking77 text (0 to this many)")
    parser.add_argument("--unrelated", type=int, default=2000, help="Restaurant-8k texts mixed in")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--thresholds", type=lambda v: [float(x) for x in v.split(",")], default=[0.7, 0.8, 0.9])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/near_duplicates.json"))
    args = parser.parse_args()
    result = {
        "machine": {"node": platform.node(), "machine": platform.machine(), "processor": platform.processor() or "?",
                    "cpu_count": os.cpu_count(), "python": platform.python_version(), "system": platform.platform()},
        "command": " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]),
        **run(args),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    _print(result)


def _print(result: dict[str, Any]) -> None:
    m = result["machine"]
    table = Table(title=f"near duplicates · {result['texts']:,} texts · {result['num_perm']} permutations · "
                        f"{result['shingle_size']}-char shingles · {m['node']} · {m['cpu_count']} CPUs")
    for column in ("threshold", "bands×rows", "true pairs", "found", "precision", "recall", "recall in [t, t+.05)",
                   "estimate only P/R", "cand./text", "s"):
        table.add_column(column, justify="right")
    for r in result["results"]:
        index, estimate = r["index"], r["minhash_estimate_only"]
        ok = index["precision"] >= 0.95 and index["recall"] >= 0.95
        mark = (" [green]ok[/]" if ok else " [red]missed[/]") if r["default"] else ""
        table.add_row(f"{r['threshold']:.2f}{'*' if r['default'] else ''}", f"{r['bands']}×{r['rows']}",
                      f"{index['true']:,}", f"{index['found']:,}", f"{index['precision']:.4f}",
                      f"{index['recall']:.4f}{mark}",
                      "–" if r["borderline_recall"] is None else f"{r['borderline_recall']:.4f} "
                      f"({r['borderline_pairs']:,})",
                      f"{estimate['precision']:.3f} / {estimate['recall']:.3f}", f"{r['candidates_per_text']}",
                      f"{r['seconds']:.2f}")
    Console().print(table)
    console.print(f"[dim]* default threshold (goal: precision and recall ≥ 0.95). Ground truth: exact Jaccard of "
                  f"{result['pairs']:,} pairs in {result['exact_seconds']} s. 'estimate only': LSH candidates kept "
                  "when their MinHash estimate reaches the threshold, without the exact check.[/]")


if __name__ == "__main__":
    main()
