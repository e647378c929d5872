"""The labelled examples most like a task's input, shown to the annotator: token Jaccard similarity over the
signature's latest dataset (fast enough for a few thousand examples per ``next``; no model, no index)."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ratchet.data.datasets import DatasetStore
from ratchet.data.records import ExampleRecord
from ratchet.errors import DataError
from ratchet.programs.schema import ProgramSchema

__all__ = ["Neighbour", "nearest_examples", "nearest_labelled", "tokens"]

_TOKEN = re.compile(r"\w+", re.UNICODE)


@dataclass(frozen=True)
class Neighbour:
    """A labelled example and its similarity (0–1) to the task's input."""

    similarity: float
    inputs: dict[str, Any]
    outputs: dict[str, Any]
    example_id: str

    def to_dict(self) -> dict[str, Any]:
        return {"similarity": round(self.similarity, 4), "inputs": self.inputs, "outputs": self.outputs,
                "example_id": self.example_id}


def tokens(values: Mapping[str, Any]) -> frozenset[str]:
    """Lower-cased word tokens of every input value (strings, and the text of anything else)."""
    return frozenset(_TOKEN.findall(" ".join(str(v) for v in values.values()).lower()))


def nearest_examples(schema: ProgramSchema, records: Iterable[ExampleRecord], inputs: Mapping[str, Any], *,
                     k: int = 3) -> list[Neighbour]:
    """The ``k`` records whose inputs share the most tokens with ``inputs`` (Jaccard), most similar first.

    Records sharing no token are left out; ties keep the dataset's order.
    """
    query = tokens({name: inputs[name] for name in schema.input_names if name in inputs})
    if not query or k <= 0:
        return []
    scored: list[tuple[float, int, ExampleRecord]] = []
    for index, record in enumerate(records):
        theirs = tokens(record.inputs(schema))
        union = len(query | theirs)
        similarity = len(query & theirs) / union if union else 0.0
        if similarity > 0:
            scored.append((similarity, index, record))
    scored.sort(key=lambda item: (-item[0], item[1]))
    return [Neighbour(similarity, r.inputs(schema), r.outputs(schema), r.id) for similarity, _, r in scored[:k]]


def nearest_labelled(store: DatasetStore, signature: str, schema: ProgramSchema, inputs: Mapping[str, Any], *,
                     k: int = 3) -> list[Neighbour]:
    """``nearest_examples`` over the signature's latest dataset version; empty when it has none yet."""
    try:
        if store.latest_version(signature) is None:
            return []
        dataset = store.load(signature)
    except DataError:
        return []
    return nearest_examples(schema, dataset.records, inputs, k=k)
