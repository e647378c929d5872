"""Cluster failure inputs by text similarity: TF-IDF + agglomerative clustering (scikit-learn).

Texts become TF-IDF vectors of word 1–2-grams and character 3–5-grams (inside word boundaries), so
near-duplicates, rephrasings and typos land close together; the rows are L2-normalised and clustered
bottom-up with average linkage on cosine distance until the nearest clusters are further apart than
``distance_threshold``. No number of clusters is chosen in advance. Each cluster is named by the
highest mean TF-IDF words of its members; its representatives are the members closest to its centroid.
``benchmarks/triage_clustering.py`` measures this against MinHash LSH and HDBSCAN (docs/benchmarks.md).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
from scipy.sparse import csr_matrix, hstack
from sklearn.cluster import AgglomerativeClustering
from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS, TfidfVectorizer
from sklearn.preprocessing import normalize

from ratchet.hashing import sha256_hex

__all__ = ["DEFAULT_DISTANCE", "MAX_ITEMS", "Clustering", "TextCluster", "cluster_texts", "vectorize"]

DEFAULT_DISTANCE = 0.85
"""Cosine distance under which clusters merge (average linkage); see docs/benchmarks.md for the measurement."""
_WORD = re.compile(r"\w")
MAX_ITEMS = 5000
"""Most texts clustered directly (their distance matrix takes 4·n² bytes); above it, the rest join the nearest."""


@dataclass(slots=True)
class TextCluster:
    """One cluster: member indices ordered representatives-first (closest to the centroid), and its top terms."""

    members: list[int]
    terms: list[str]
    centroid: np.ndarray


@dataclass(slots=True)
class Clustering:
    """The clusters of a set of texts, largest first, and each text's cluster label."""

    clusters: list[TextCluster]
    labels: list[int]
    vectorizers: tuple[TfidfVectorizer, TfidfVectorizer] | None

    def transform(self, texts: list[str]) -> csr_matrix:
        """Other texts in this clustering's vector space (for comparing with last week's clusters)."""
        if self.vectorizers is None or not texts:
            return csr_matrix((len(texts), 0))
        word, char = self.vectorizers
        return normalize(hstack([word.transform(texts), char.transform(texts)]).tocsr())


def vectorize(texts: list[str]) -> tuple[csr_matrix, tuple[TfidfVectorizer, TfidfVectorizer]]:
    """L2-normalised TF-IDF rows (word 1–2-grams next to char_wb 3–5-grams) and the fitted vectorizers."""
    word = TfidfVectorizer(analyzer="word", ngram_range=(1, 2), sublinear_tf=True, lowercase=True,
                           token_pattern=r"(?u)\b\w+\b")
    char = TfidfVectorizer(analyzer="char_wb", ngram_range=(3, 5), sublinear_tf=True, lowercase=True)
    matrix = hstack([word.fit_transform(texts), char.fit_transform(texts)]).tocsr()
    return normalize(matrix), (word, char)


def _top_terms(word: TfidfVectorizer, rows: csr_matrix, n: int) -> list[str]:
    """The ``n`` single words with the highest mean TF-IDF over ``rows``, English stop words left out (unless
    nothing else is left; bigrams only when no single word is)."""
    names = word.get_feature_names_out()
    weights = np.asarray(rows.mean(axis=0)).ravel()
    order = [i for i in np.argsort(-weights, kind="stable") if weights[i] > 0]
    unigrams = [names[i] for i in order if " " not in names[i]]
    content = [t for t in unigrams if t not in ENGLISH_STOP_WORDS]  # "card, arrived", not "my, has"
    return (content or unigrams or [names[i] for i in order])[:n]


def _agglomerate(matrix: csr_matrix, distance_threshold: float, svd_components: int | None) -> np.ndarray:
    """Average-linkage labels of the rows of ``matrix`` (at least two) under a cosine distance threshold."""
    if svd_components is not None and matrix.shape[1] > svd_components:
        from sklearn.decomposition import TruncatedSVD
        points = normalize(TruncatedSVD(svd_components, random_state=0).fit_transform(matrix))
        return AgglomerativeClustering(n_clusters=None, distance_threshold=distance_threshold,
                                       metric="cosine", linkage="average").fit_predict(points)
    # cosine distances straight from the sparse rows: n x n floats, never n x vocabulary
    distances = 1.0 - (matrix @ matrix.T).toarray().astype(np.float32)
    np.clip(distances, 0.0, 2.0, out=distances)
    np.fill_diagonal(distances, 0.0)
    return AgglomerativeClustering(n_clusters=None, distance_threshold=distance_threshold,
                                   metric="precomputed", linkage="average").fit_predict(distances)


def _labels(matrix: csr_matrix, distance_threshold: float, svd_components: int | None, max_items: int
            ) -> np.ndarray:
    """Cluster labels of every row; above ``max_items`` rows, a stable sample is clustered and the rest
    join the cluster whose centroid is nearest (memory grows with the square of the clustered rows)."""
    n = matrix.shape[0]
    if n == 1:
        return np.zeros(1, dtype=int)
    if n <= max_items:
        return _agglomerate(matrix, distance_threshold, svd_components)
    order = sorted(range(n), key=lambda i: sha256_hex(f"triage:{i}"))
    sample = np.array(sorted(order[:max_items]))
    sample_labels = _agglomerate(matrix[sample], distance_threshold, svd_components)
    k = int(sample_labels.max()) + 1
    centroids = normalize(np.vstack([np.asarray(matrix[sample[sample_labels == c]].mean(axis=0)).ravel()
                                     for c in range(k)]))
    labels = np.asarray(matrix @ centroids.T).argmax(axis=1).ravel()
    labels[sample] = sample_labels
    return labels


def _distinct_first(ordered: list[int], texts: list[str], n: int) -> list[int]:
    """``ordered`` with its first ``n`` distinct texts moved to the front (representatives that are not copies)."""
    seen: set[str] = set()
    front: list[int] = []
    for index in ordered:
        key = " ".join(texts[index].lower().split())
        if key not in seen:
            seen.add(key)
            front.append(index)
            if len(front) == n:
                break
    chosen = set(front)
    return front + [i for i in ordered if i not in chosen]


def cluster_texts(texts: list[str], *, distance_threshold: float = DEFAULT_DISTANCE, n_terms: int = 5,
                  n_representatives: int = 3, svd_components: int | None = None,
                  max_items: int = MAX_ITEMS) -> Clustering:
    """Cluster ``texts`` (largest cluster first); members are ordered representatives-first: the
    ``n_representatives`` distinct texts closest to the centroid, then the rest by closeness.
    ``svd_components`` first projects onto that many LSA dimensions (for the benchmark). Above ``max_items``
    texts, a stable sample of that many is clustered and every other text joins its nearest cluster."""
    if not texts:
        return Clustering([], [], None)
    texts = [t if _WORD.search(t) else "(no words)" for t in texts]  # an empty vocabulary cannot be fitted
    matrix, (word, char) = vectorize(texts)
    word_rows = word.transform(texts)
    labels = _labels(matrix, distance_threshold, svd_components, max_items)
    groups: dict[int, list[int]] = {}
    for index, label in enumerate(labels):
        groups.setdefault(int(label), []).append(index)
    clusters = []
    for members in groups.values():
        rows = matrix[members]
        centroid = np.asarray(rows.mean(axis=0)).ravel()
        similarity = rows @ centroid
        ordered = _distinct_first([members[i] for i in np.argsort(-similarity, kind="stable")], texts,
                                  n_representatives)
        clusters.append(TextCluster(ordered, _top_terms(word, word_rows[members], n_terms), centroid))
    clusters.sort(key=lambda c: (-len(c.members), c.members[0]))
    relabel = {}
    for new, cluster in enumerate(clusters):
        for index in cluster.members:
            relabel[index] = new
    return Clustering(clusters, [relabel[i] for i in range(len(texts))], (word, char))
