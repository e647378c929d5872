"""Exact and near-duplicate detection for training examples.

*Exact* duplicates have equal inputs: equal :func:`ratchet.data.records.input_hash`.
*Near* duplicates have inputs whose character shingles overlap: the Jaccard
similarity of the sets of ``shingle_size``-character substrings of the normalised
input text (lower-case, whitespace collapsed, input fields joined in schema order)
is at least the threshold.

Near duplicates are found by MinHash LSH, datasketch's construction: MinHash
signatures of ``num_perm`` values (computed with numpy for whole blocks of texts;
they are exactly what ``datasketch.MinHash(num_perm, seed, hashfunc=shingle_hash,
scheme="affine32")`` gives after ``update_batch(shingles(text))``, so
:meth:`NearDuplicateIndex.minhash` hands out sketches datasketch's ``MinHashLSH``
accepts) cut into ``b`` bands of ``r`` rows; texts sharing a band are candidates.
The band table keeps one 64-bit key per band in a plain dict: the same buckets as
``MinHashLSH(params=(b, r))``, five times faster and at 40 % of its memory (60,000
short texts, query then insert each: 0.95 s and 116 MB against 4.8 s and 305 MB).
The bands are chosen so that a pair *at* the threshold becomes a candidate with
probability ≥ 99.5 % (:func:`lsh_params`), and every candidate is scored with the
exact Jaccard similarity of the stored shingle sets: a reported near duplicate really
is one, and similarities are exact, not estimates.
"""

from __future__ import annotations

import json
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from datasketch import LeanMinHash, MinHash

from ratchet.config.settings import DataSettings
from ratchet.programs.schema import ProgramSchema

__all__ = [
    "Deduplicator",
    "DuplicateMatch",
    "NearDuplicateIndex",
    "Sketch",
    "input_text",
    "lsh_params",
    "normalize_text",
    "shingle_hash",
    "shingles",
]

SCHEME = "affine32"
FIELD_SEPARATOR = " | "
CHUNK = 128  # texts per vectorised block: small blocks stay in cache
BLOCK_CHARS = 32_768  # ...and at most this many characters (a block's permuted hashes: num_perm × 4 bytes each)

_MULT = np.uint64(0x100000001B3)
_MASK64 = (1 << 64) - 1
_MAX32 = np.uint32(0xFFFFFFFF)


def normalize_text(text: str) -> str:
    """Lower-case with runs of whitespace collapsed to one space, trimmed."""
    return " ".join(text.lower().split())


def input_text(values: Mapping[str, Any], schema: ProgramSchema, names: Sequence[str] | None = None) -> str:
    """The normalised text near-duplicate detection compares: every input field, in schema order
    (``names``: ``schema.input_names`` when computed already)."""
    parts = []
    for name in schema.input_names if names is None else names:
        value = values.get(name)
        if value is None:
            continue
        parts.append(normalize_text(value if isinstance(value, str) else json.dumps(value, sort_keys=True)))
    return FIELD_SEPARATOR.join(parts)


def shingles(text: str, size: int) -> set[str]:
    """The ``size``-character shingles of ``text`` (already normalised); a shorter non-empty text is one shingle."""
    if len(text) < size:
        return {text} if text else set()
    return {text[i : i + size] for i in range(len(text) - size + 1)}


def shingle_hash(shingle: str) -> int:
    """A stable 32-bit hash of a shingle (a datasketch ``hashfunc``): polynomial over code points, folded."""
    acc = 0
    for char in shingle:
        acc = (acc * int(_MULT) + ord(char)) & _MASK64
    return (acc ^ (acc >> 32)) & 0xFFFFFFFF


def lsh_params(threshold: float, num_perm: int, recall: float = 0.995) -> tuple[int, int]:
    """``(bands, rows)`` with the most rows per band such that a pair at ``threshold`` is a candidate
    with probability ``1 - (1 - threshold**rows)**bands >= recall``."""
    best = (num_perm, 1)
    for rows in range(1, num_perm // 2 + 1):
        bands = num_perm // rows
        if 1.0 - (1.0 - threshold**rows) ** bands >= recall:
            best = (bands, rows)
    return best


def _fmix32(values: np.ndarray) -> np.ndarray:
    """MurmurHash3's 32-bit finalizer (datasketch pre-mixes input hashes with it)."""
    values = values ^ (values >> np.uint32(16))
    values = values * np.uint32(0x85EBCA6B)
    values = values ^ (values >> np.uint32(13))
    values = values * np.uint32(0xC2B2AE35)
    return values ^ (values >> np.uint32(16))


def _fmix64(values: np.ndarray) -> np.ndarray:
    values = values ^ (values >> np.uint64(33))
    values = values * np.uint64(0xFF51AFD7ED558CCD)
    values = values ^ (values >> np.uint64(33))
    values = values * np.uint64(0xC4CEB9FE1A85EC53)
    return values ^ (values >> np.uint64(33))


@dataclass(frozen=True, slots=True)
class Sketch:
    """What the index keeps of one text: its shingle hashes (sorted, unique), MinHash signature and band keys."""

    shingles: np.ndarray
    hashvalues: np.ndarray
    bands: np.ndarray

    @property
    def empty(self) -> bool:
        return self.shingles.size == 0

    def jaccard(self, other: Sketch) -> float:
        """Exact Jaccard similarity of the two shingle sets (0 when either is empty)."""
        if self.empty or other.empty:
            return 0.0
        common = np.intersect1d(self.shingles, other.shingles, assume_unique=True).size
        return common / (self.shingles.size + other.shingles.size - common)


class NearDuplicateIndex:
    """Texts indexed for near-duplicate look-ups; add and query one at a time, in any order.

    >>> index = NearDuplicateIndex(threshold=0.8)
    >>> index.add("a", "where is my new card?")
    >>> index.query("where is my new card??")
    ['a']
    >>> key, similarity = index.best_match("where's my new card?")
    >>> key, round(similarity, 2)
    ('a', 0.68)
    """

    def __init__(self, threshold: float = 0.8, num_perm: int = 128, shingle_size: int = 3, *, seed: int = 1) -> None:
        if not 0.0 < threshold <= 1.0:
            raise ValueError(f"threshold must be in (0, 1], got {threshold}")
        if shingle_size < 1:
            raise ValueError(f"shingle_size must be at least 1, got {shingle_size}")
        if num_perm < 2:
            raise ValueError(f"num_perm must be at least 2, got {num_perm}")
        self.threshold = threshold
        self.num_perm = num_perm
        self.shingle_size = shingle_size
        self.seed = seed
        self.bands, self.rows = lsh_params(threshold, num_perm)
        a, b = MinHash(num_perm=num_perm, seed=seed, scheme=SCHEME).permutations
        self._a = a.astype(np.uint32).reshape(-1, 1)
        self._b = b.astype(np.uint32).reshape(-1, 1)
        self._band_salt = _fmix64(np.arange(1, self.bands + 1, dtype=np.uint64))
        self._table: dict[int, int | list[int]] = {}  # band key → position, or positions
        self._keys: list[Hashable] = []
        self._shingles: list[np.ndarray] = []  # what exact similarities are computed from

    @classmethod
    def from_settings(cls, settings: DataSettings) -> NearDuplicateIndex:
        return cls(settings.near_duplicate_threshold, settings.minhash_permutations, settings.shingle_size)

    def __len__(self) -> int:
        return len(self._keys)

    # -- sketches ------------------------------------------------------------------------------

    def sketch(self, text: str) -> Sketch:
        """The sketch of one normalised text."""
        return self.sketches([text])[0]

    def sketches(self, texts: Sequence[str]) -> list[Sketch]:
        """Sketches of many normalised texts, computed a block at a time with numpy."""
        out: list[Sketch] = []
        start = 0
        while start < len(texts):
            end, chars = start + 1, len(texts[start])
            while end < len(texts) and end - start < CHUNK and chars + len(texts[end]) <= BLOCK_CHARS:
                chars += len(texts[end])
                end += 1
            out.extend(self._block(texts[start:end]))
            start = end
        return out

    def minhash(self, item: str | Sketch) -> LeanMinHash:
        """The datasketch MinHash of a text or sketch (usable with ``datasketch.MinHashLSH``)."""
        sketch = item if isinstance(item, Sketch) else self.sketch(item)
        return LeanMinHash(seed=self.seed, hashvalues=sketch.hashvalues, scheme=SCHEME)

    def _block(self, texts: Sequence[str]) -> list[Sketch]:
        k = self.shingle_size
        lengths = np.fromiter((len(t) for t in texts), dtype=np.int64, count=len(texts))
        codes = np.frombuffer("".join(texts).encode("utf-32-le"), dtype=np.uint32).astype(np.uint64)
        owner = np.repeat(np.arange(len(texts), dtype=np.uint64), lengths)
        n = codes.size - k + 1
        if n > 0:
            acc = codes[:n].copy()
            for j in range(1, k):
                acc *= _MULT
                acc += codes[j : n + j]
            folded = acc ^ (acc >> np.uint64(32))
            valid = owner[:n] == owner[k - 1 :]  # the shingle lies within one text
            keys = (owner[:n][valid] << np.uint64(32)) | (folded[valid] & np.uint64(0xFFFFFFFF))
        else:
            keys = np.empty(0, dtype=np.uint64)
        short = [i for i, length in enumerate(lengths) if 0 < length < k]
        if short:  # texts shorter than a shingle are one shingle each
            extra = [(i << 32) | shingle_hash(texts[i]) for i in short]
            keys = np.concatenate([keys, np.array(extra, dtype=np.uint64)])
        keys = np.unique(keys)
        values = (keys & np.uint64(0xFFFFFFFF)).astype(np.uint32)
        bounds = np.searchsorted(keys >> np.uint64(32), np.arange(len(texts) + 1, dtype=np.uint64))
        signatures = np.full((len(texts), self.num_perm), _MAX32, dtype=np.uint32)
        filled = np.flatnonzero(bounds[1:] > bounds[:-1])
        mixed = _fmix32(values)
        if filled.size and mixed.size <= BLOCK_CHARS:
            permuted = self._a * mixed  # (num_perm, shingles): reduce along the contiguous axis
            permuted += self._b
            signatures[filled] = np.minimum.reduceat(permuted, bounds[filled], axis=1).T
        elif filled.size:  # one very long text: its shingles a slice at a time
            for i in filled.tolist():
                for lo in range(bounds[i], bounds[i + 1], BLOCK_CHARS):
                    part = self._a * mixed[lo : min(lo + BLOCK_CHARS, bounds[i + 1])] + self._b
                    np.minimum(signatures[i], part.min(axis=1), out=signatures[i])
        bands = self._band_keys(signatures)
        return [Sketch(values[bounds[i] : bounds[i + 1]], signatures[i], bands[i]) for i in range(len(texts))]

    def _band_keys(self, signatures: np.ndarray) -> np.ndarray:
        """One 64-bit key per band: the band's ``rows`` values hashed, salted with the band's number."""
        rows = signatures[:, : self.bands * self.rows].reshape(len(signatures), self.bands, self.rows)
        rows = rows.astype(np.uint64)
        acc = rows[:, :, 0] + self._band_salt
        for j in range(1, self.rows):
            acc = _fmix64(acc) + rows[:, :, j]
        return _fmix64(acc)

    # -- index ---------------------------------------------------------------------------------

    def add(self, key: Hashable, item: str | Sketch) -> None:
        """Index a text (or its sketch) under ``key``. Empty texts are kept but never match."""
        sketch = item if isinstance(item, Sketch) else self.sketch(item)
        position = len(self._keys)
        self._keys.append(key)
        self._shingles.append(sketch.shingles)
        if sketch.empty:
            return
        table = self._table
        for band in sketch.bands.tolist():
            hit = table.get(band)
            if hit is None:
                table[band] = position
            elif isinstance(hit, int):
                table[band] = [hit, position]
            else:
                hit.append(position)

    def candidates(self, item: str | Sketch) -> list[int]:
        """Positions of the indexed texts sharing at least one band with ``item`` (LSH candidates)."""
        sketch = item if isinstance(item, Sketch) else self.sketch(item)
        if sketch.empty:
            return []
        found: set[int] = set()
        table = self._table
        for band in sketch.bands.tolist():
            hit = table.get(band)
            if hit is None:
                continue
            if isinstance(hit, int):
                found.add(hit)
            else:
                found.update(hit)
        return sorted(found)

    def similar(self, item: str | Sketch) -> list[tuple[Hashable, float]]:
        """Every LSH candidate with its exact Jaccard similarity to ``item``, most similar first."""
        sketch = item if isinstance(item, Sketch) else self.sketch(item)
        positions = self.candidates(sketch)
        if not positions:
            return []
        mine = set(sketch.shingles.tolist())
        scored = []
        for position in positions:
            other = self._shingles[position]
            shared = len(mine.intersection(other.tolist()))
            scored.append((shared / (len(mine) + other.size - shared), position))
        scored.sort(key=lambda pair: (-pair[0], pair[1]))
        return [(self._keys[position], similarity) for similarity, position in scored]

    def query(self, item: str | Sketch) -> list[Hashable]:
        """Keys of the indexed texts whose Jaccard similarity to ``item`` is at least the threshold, closest first."""
        return [key for key, similarity in self.similar(item) if similarity >= self.threshold]

    def best_match(self, item: str | Sketch) -> tuple[Hashable, float] | None:
        """The most similar indexed text among the candidates and its similarity, or None."""
        found = self.similar(item)
        return found[0] if found else None


@dataclass(frozen=True)
class DuplicateMatch:
    """Why an example is a duplicate: of which kept example, and how similar."""

    kind: Literal["exact", "near"]
    kept_id: str
    similarity: float
    threshold: float
    conflicting: bool = False

    @property
    def code(self) -> str:
        return f"{self.kind}_duplicate"

    @property
    def reason(self) -> str:
        if self.kind == "exact":
            tail = ", different outputs: conflicting labels" if self.conflicting else ""
            return f"exact duplicate of example {self.kept_id} (same inputs{tail})"
        return (f"near-duplicate of example {self.kept_id} "
                f"(Jaccard similarity {self.similarity:.2f} >= {self.threshold:.2f})")


class Deduplicator:
    """Exact and near-duplicate checks against every example accepted (or seeded) so far."""

    def __init__(self, index: NearDuplicateIndex) -> None:
        self.index = index
        self._exact: dict[str, tuple[str, str]] = {}  # input hash → (kept id, outputs hash)
        self._ids: list[str] = []

    @classmethod
    def from_settings(cls, settings: DataSettings) -> Deduplicator:
        return cls(NearDuplicateIndex.from_settings(settings))

    def __len__(self) -> int:
        return len(self._ids)

    def check(self, inputs_hash: str, sketch: Sketch, outputs_hash: str = "") -> tuple[DuplicateMatch | None, float]:
        """The duplicate this example would be (or None) and its similarity to the closest kept example."""
        kept = self._exact.get(inputs_hash)
        if kept is not None:
            conflicting = bool(outputs_hash and kept[1] and outputs_hash != kept[1])
            return DuplicateMatch("exact", kept[0], 1.0, self.index.threshold, conflicting), 1.0
        best = self.index.best_match(sketch)
        if best is None:
            return None, 0.0
        position, similarity = best
        if similarity >= self.index.threshold:
            return DuplicateMatch("near", self._ids[int(position)], similarity, self.index.threshold), similarity
        return None, similarity

    def add(self, example_id: str, inputs_hash: str, sketch: Sketch, outputs_hash: str = "") -> None:
        """Keep an example: later ones are checked against it."""
        self._exact.setdefault(inputs_hash, (example_id, outputs_hash))
        self.index.add(len(self._ids), sketch)
        self._ids.append(example_id)

    def add_many(self, items: Iterable[tuple[str, str, str, str]]) -> int:
        """Keep many ``(id, inputs hash, normalised text, outputs hash)`` at once (sketched in blocks); how many."""
        rows = list(items)
        for (example_id, digest, _, outputs_hash), sketch in zip(
                rows, self.index.sketches([row[2] for row in rows]), strict=True):
            self.add(example_id, digest, sketch, outputs_hash)
        return len(rows)
