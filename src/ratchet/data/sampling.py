"""Deterministic sampling of examples: seeded shuffles and class-balanced few-shot demos."""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import TypeVar

import dspy

__all__ = ["balanced_demos", "seeded_sample"]

T = TypeVar("T")


def seeded_sample(items: Sequence[T], n: int | None, seed: int = 0) -> list[T]:
    """``n`` items in a seeded random order (all of them when ``n`` is None)."""
    order = list(items)
    random.Random(seed).shuffle(order)
    return order if n is None else order[:n]


def balanced_demos(trainset: Sequence[dspy.Example], k: int,
                   label_field: str | Callable[[dspy.Example], str] | None, seed: int = 0) -> list[dspy.Example]:
    """``k`` demos drawn round-robin across label values, so every class is shown about equally.

    Small base models are dominated by the number and class balance of demos; a
    plain random sample of a skewed training set starves rare classes. Without a
    label field this is a seeded random sample. The order interleaves classes.
    ``label_field`` may also be a function naming an example's group (e.g. which
    output fields an extraction example fills), which balances those groups.
    """
    if k <= 0:
        return []
    if label_field is None:
        return seeded_sample(trainset, k, seed)
    key = label_field if callable(label_field) else (lambda example: str(example.get(label_field)))
    groups: dict[str, list[dspy.Example]] = defaultdict(list)
    for example in seeded_sample(trainset, None, seed):
        groups[str(key(example))].append(example)
    labels = sorted(groups)
    random.Random(seed).shuffle(labels)
    demos: list[dspy.Example] = []
    depth = 0
    while len(demos) < k and any(depth < len(groups[label]) for label in labels):
        for label in labels:
            if depth < len(groups[label]) and len(demos) < k:
                demos.append(groups[label][depth])
        depth += 1
    return demos
