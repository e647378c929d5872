"""``extract_booking``: pull booking slots out of a restaurant customer's message (Restaurant-8k)."""

from __future__ import annotations

import re
from pathlib import Path

import dspy

from ratchet.programs.registry import program

DATA = Path(__file__).parent / "data" / "restaurant8k"
SLOTS = ("people", "date", "time", "first_name", "last_name")


class ExtractBooking(dspy.Signature):
    """Copy the booking details mentioned in the restaurant customer's message."""

    text: str = dspy.InputField(desc="the customer's message")
    people: str | None = dspy.OutputField(desc="how many people")
    date: str | None = dspy.OutputField(desc="the day")
    time: str | None = dspy.OutputField(desc="the time")
    first_name: str | None = dspy.OutputField(desc="the customer's first name")
    last_name: str | None = dspy.OutputField(desc="the customer's last name")


def _norm(value: object) -> str:
    return re.sub(r"\s+", " ", re.sub(r"[^\w\s:]", " ", str(value).casefold())).strip()


def slot_f1(example: dspy.Example, prediction: dspy.Prediction, trace: object = None) -> float | bool:
    """F1 over (slot, value) pairs, values compared case- and punctuation-insensitively.

    An example with no slots and a prediction with none scores 1. While an
    optimizer bootstraps demos (``trace`` set) only perfect predictions pass.
    """
    gold = {(s, _norm(example.get(s))) for s in SLOTS if example.get(s) not in (None, "")}
    pred = {(s, _norm(prediction.get(s))) for s in SLOTS if prediction.get(s) not in (None, "")}
    score = 1.0 if not gold and not pred else 2 * len(gold & pred) / (len(gold) + len(pred))
    return score >= 0.999 if trace is not None else score


@program(
    "extract_booking",
    metric=slot_f1,
    data={"train": DATA / "train.jsonl", "test": DATA / "test.jsonl"},
)
def extract_booking() -> dspy.Module:
    return dspy.Predict(ExtractBooking)
