"""Cluster failure inputs by text similarity: TF-IDF + agglomerative clustering (scikit-learn).

Texts become TF-IDF vectors of word 1–2-grams and character 3–5-grams (inside word boundaries), so
near-duplicates, rephrasings and typos land close together; the rows are L2-normalised and clustered
bottom-up with average linkage on cosine distance until the nearest clusters are further apart than
``distance_threshold``. No number of clusters is chosen in advance. Each cluster is named by the
highest mean TF-IDF words of its members; its representatives are the members closest to its centroid.
``benchmarks/triage_clustering.py`` measures this against MinHash LSH and HDBSCAN (docs/benchmarks.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.sparse import csr_matrix, hstack
from sklearn.cluster import AgglomerativeClustering
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.preprocessing import normalize

__all__ = ["DEFAULT_DISTANCE", "Clustering", "TextCluster", "cluster_texts", "vectorize"]

DEFAULT_DISTANCE = 0.85
"""Cosine distance under which clusters merge (average linkage); see docs/benchmarks.md for the measurement."""


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
    """The ``n`` single words with the highest mean TF-IDF over ``rows`` (bigrams only when no word is left)."""
    names = word.get_feature_names_out()
    weights = np.asarray(rows.mean(axis=0)).ravel()
    order = [i for i in np.argsort(-weights, kind="stable") if weights[i] > 0]
    unigrams = [names[i] for i in order if " " not in names[i]]
    return (unigrams or [names[i] for i in order])[:n]


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
                  n_representatives: int = 3, svd_components: int | None = None) -> Clustering:
    """Cluster ``texts`` (largest cluster first); members are ordered representatives-first: the
    ``n_representatives`` distinct texts closest to the centroid, then the rest by closeness.
    ``svd_components`` first projects onto that many LSA dimensions (for the benchmark)."""
    if not texts:
        return Clustering([], [], None)
    if all(not t.strip() for t in texts):
        texts = [t or "(empty)" for t in texts]
    matrix, (word, char) = vectorize(texts)
    word_rows = word.transform(texts)
    if len(texts) == 1:
        labels = np.zeros(1, dtype=int)
    else:
        if svd_components is not None and matrix.shape[1] > svd_components:
            from sklearn.decomposition import TruncatedSVD
            points = normalize(TruncatedSVD(svd_components, random_state=0).fit_transform(matrix))
            labels = AgglomerativeClustering(n_clusters=None, distance_threshold=distance_threshold,
                                             metric="cosine", linkage="average").fit_predict(points)
        else:  # cosine distances straight from the sparse rows: n x n floats, never n x vocabulary
            distances = 1.0 - (matrix @ matrix.T).toarray().astype(np.float32)
            np.clip(distances, 0.0, 2.0, out=distances)
            np.fill_diagonal(distances, 0.0)
            labels = AgglomerativeClustering(n_clusters=None, distance_threshold=distance_threshold,
                                             metric="precomputed", linkage="average").fit_predict(distances)
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
