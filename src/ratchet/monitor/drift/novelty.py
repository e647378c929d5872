"""How novel an input is: its best Jaccard similarity to any training input, with the near-duplicate machinery.

Texts are compared as near-duplicate detection compares them (:func:`~ratchet.data.dedup.input_text`:
every input field, normalised; character shingles of ``data.shingle_size``). The training inputs
go into a :class:`~ratchet.data.dedup.NearDuplicateIndex` built for the *similarity threshold*, so a
training input at least that similar to a query is found with probability ≥ 99.5 % and scored
exactly; an input with no such match is *novel*.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from ratchet.config.settings import DataSettings
from ratchet.data.dedup import NearDuplicateIndex, input_text
from ratchet.programs.schema import ProgramSchema

__all__ = ["NoveltyIndex"]


class NoveltyIndex:
    """The training inputs of one signature, for similarity look-ups of other inputs."""

    def __init__(self, schema: ProgramSchema, train: Iterable[Mapping[str, Any]], threshold: float,
                 data: DataSettings) -> None:
        self.schema = schema
        self.threshold = threshold
        self.index = NearDuplicateIndex(threshold, data.minhash_permutations, data.shingle_size)
        for position, sketch in enumerate(self.index.sketches(self.texts(train))):
            self.index.add(position, sketch)

    def __len__(self) -> int:
        return len(self.index)

    def texts(self, rows: Iterable[Mapping[str, Any]]) -> list[str]:
        """The normalised input text of each row (its input fields; other keys are ignored)."""
        names = self.schema.input_names
        return [input_text(row, self.schema, names) for row in rows]

    def similarities(self, rows: Sequence[Mapping[str, Any]]) -> np.ndarray:
        """Each row's best Jaccard similarity to a training input (0 when none shares an LSH band with it).

        Exact at or above the threshold; below it, a lower bound (a closer training input may not be a candidate).
        """
        out = np.zeros(len(rows))
        for i, sketch in enumerate(self.index.sketches(self.texts(rows))):
            best = self.index.best_match(sketch)
            if best is not None:
                out[i] = best[1]
        return out

    def novel(self, rows: Sequence[Mapping[str, Any]]) -> int:
        """How many of ``rows`` are novel (best similarity below the threshold)."""
        return int((self.similarities(rows) < self.threshold).sum())
