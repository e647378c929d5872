"""Failure-triage clustering: which method groups failure-like texts by their true intent, and how fast.

Banking77 texts of a few intents stand in for a week's failures; each method clusters them and is scored
against the gold intent:

* purity — share of items whose cluster's majority intent is their own (1.0: no cluster mixes intents);
* inverse purity — share of items in the largest cluster of their intent (1.0: no intent is split);
* ARI — adjusted Rand index; clusters — how many clusters it made; seconds — wall time of fit + cluster.

Methods: scikit-learn TF-IDF (word 1–2 + char_wb 3–5 n-grams) with agglomerative clustering (average linkage,
cosine distance threshold), the same on a 100-dimension LSA projection, HDBSCAN on the TF-IDF (when installed),
and datasketch MinHash LSH (word 3-shingles, Jaccard threshold) with connected components.

    .venv/bin/python benchmarks/triage_clustering.py [--sizes 200,1000,5000] [--intents 8] [--only NAME]

Above 5,000 texts (``MAX_ITEMS``) Ratchet clusters a stable sample of 5,000 and assigns the rest to the
nearest cluster: ``--sizes 10000 --only default`` measures that.
"""

from __future__ import annotations

import argparse
import csv
import random
import re
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from sklearn.metrics import adjusted_rand_score

from ratchet.flywheel.cluster import cluster_texts

DATA = [Path("/work/shared/datasets/banking77/train.csv"), Path("/work/shared/datasets/banking77/test.csv")]
EXAMPLES = Path(__file__).resolve().parents[1] / "src/ratchet/examples/data/banking77/train.jsonl"


def load(n_intents: int, size: int, seed: int = 0) -> tuple[list[str], list[str]]:
    """``size`` texts (with repeats when the intents hold fewer) of ``n_intents`` random intents."""
    rows: list[tuple[str, str]] = []
    for path in DATA:
        if path.exists():
            with path.open(newline="", encoding="utf-8") as fh:
                rows.extend((r["text"], r["category"]) for r in csv.DictReader(fh))
    if not rows:
        import json
        rows = [(d["text"], d["intent"]) for d in map(json.loads, EXAMPLES.read_text().splitlines())]
    rng = random.Random(seed)
    intents = rng.sample(sorted({label for _, label in rows}), n_intents)
    pool = [r for r in rows if r[1] in intents]
    picked = rng.sample(pool, size) if size <= len(pool) else [rng.choice(pool) for _ in range(size)]
    return [t for t, _ in picked], [label for _, label in picked]


def scores(labels: list[str], gold: list[str]) -> dict[str, float]:
    by_cluster: dict[object, Counter[str]] = {}
    by_gold: dict[str, Counter[object]] = {}
    for c, g in zip(labels, gold, strict=True):
        by_cluster.setdefault(c, Counter())[g] += 1
        by_gold.setdefault(g, Counter())[c] += 1
    n = len(gold)
    purity = sum(c.most_common(1)[0][1] for c in by_cluster.values()) / n
    inverse = sum(c.most_common(1)[0][1] for c in by_gold.values()) / n
    return {"purity": purity, "inverse_purity": inverse, "ari": adjusted_rand_score(gold, labels),
            "clusters": len(by_cluster)}


def agglomerative(threshold: float, *, svd: int | None = None) -> Callable[[list[str]], list[int]]:
    def run(texts: list[str]) -> list[int]:
        return cluster_texts(texts, distance_threshold=threshold, svd_components=svd).labels
    return run


def hdbscan_tfidf(texts: list[str]) -> list[int]:
    from sklearn.cluster import HDBSCAN
    from sklearn.decomposition import TruncatedSVD
    from sklearn.preprocessing import normalize

    from ratchet.flywheel.cluster import vectorize
    matrix = vectorize(texts)[0]
    dense = normalize(TruncatedSVD(100, random_state=0).fit_transform(matrix))
    labels = HDBSCAN(min_cluster_size=5, copy=True).fit_predict(dense)
    next_id = int(labels.max()) + 1  # each noise point is a cluster of its own
    out = []
    for label in labels:
        if label < 0:
            out.append(next_id)
            next_id += 1
        else:
            out.append(int(label))
    return out


def minhash_lsh(threshold: float) -> Callable[[list[str]], list[int]]:
    def run(texts: list[str]) -> list[int]:
        from datasketch import MinHash, MinHashLSH
        lsh = MinHashLSH(threshold=threshold, num_perm=128)
        hashes = []
        for i, text in enumerate(texts):
            words = re.findall(r"\w+", text.lower())
            shingles = {" ".join(words[j:j + 3]) for j in range(max(1, len(words) - 2))}
            m = MinHash(num_perm=128)
            for s in shingles:
                m.update(s.encode("utf-8"))
            lsh.insert(i, m)
            hashes.append(m)
        rows, cols = [], []
        for i, m in enumerate(hashes):
            for j in lsh.query(m):
                rows.append(i)
                cols.append(j)
        graph = coo_matrix((np.ones(len(rows)), (rows, cols)), shape=(len(texts), len(texts)))
        return list(connected_components(graph, directed=False)[1])
    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="200,1000,5000")
    parser.add_argument("--intents", type=int, default=8)
    parser.add_argument("--only", default="", help="run only the methods whose name contains this")
    args = parser.parse_args()
    methods: dict[str, Callable[[list[str]], list[int]]] = {
        "tfidf+agglomerative t=0.8": agglomerative(0.8),
        "tfidf+agglomerative t=0.9": agglomerative(0.9),
        "tfidf+agglomerative t=0.85 (ratchet default)": agglomerative(0.85),
        "tfidf+lsa100+agglomerative t=0.8": agglomerative(0.8, svd=100),
        "tfidf+lsa100+agglomerative t=0.9": agglomerative(0.9, svd=100),
        "tfidf+lsa100+hdbscan": hdbscan_tfidf,
        "minhash-lsh j=0.3": minhash_lsh(0.3),
        "minhash-lsh j=0.5": minhash_lsh(0.5),
    }
    print("| items | method | clusters | purity | inverse purity | ARI | seconds |\n|---|---|---|---|---|---|---|")
    for size in (int(s) for s in args.sizes.split(",")):
        intents = max(args.intents, -(-size // 150))  # Banking77 holds ~170 texts an intent: no repeats
        texts, gold = load(intents, size)
        for name, method in methods.items():
            if args.only not in name:
                continue
            started = time.perf_counter()
            labels = method(texts)
            seconds = time.perf_counter() - started
            s = scores(labels, gold)
            print(f"| {size} | {name} | {s['clusters']} | {s['purity']:.2f} | {s['inverse_purity']:.2f} | "
                  f"{s['ari']:.2f} | {seconds:.2f} |", flush=True)


if __name__ == "__main__":
    main()
