"""``classify_intent``: route a banking customer's message to one of 10 Banking77 intents."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import dspy

from ratchet.programs.registry import program

DATA = Path(__file__).parent / "data" / "banking77"

Intent = Literal[
    "card_arrival",
    "exchange_rate",
    "lost_or_stolen_card",
    "pin_blocked",
    "age_limit",
    "cancel_transfer",
    "apple_pay_or_google_pay",
    "terminate_account",
    "atm_support",
    "edit_personal_details",
]


class ClassifyIntent(dspy.Signature):
    """Classify the banking customer's message into one intent."""

    text: str = dspy.InputField(desc="the customer's message")
    intent: Intent = dspy.OutputField()


def exact_match(example: dspy.Example, prediction: dspy.Prediction, trace: object = None) -> bool:
    """1 when the predicted intent is the labelled one."""
    return prediction.get("intent") == example.intent


@program(
    "classify_intent",
    metric=exact_match,
    data={"train": DATA / "train.jsonl", "test": DATA / "test.jsonl"},
    label_field="intent",
)
def classify_intent() -> dspy.Module:
    return dspy.Predict(ClassifyIntent)
