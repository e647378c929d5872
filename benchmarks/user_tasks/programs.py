"""Two tasks Ratchet has never seen, registered the way a user registers a program (``ratchet.program``).

Load them like any user's programs module: ``programs = ["benchmarks/user_tasks/programs.py"]`` in
ratchet.toml, or ``RATCHET_PROGRAMS='["benchmarks/user_tasks/programs.py"]'``. Data: ``data/`` (built by
``build_data.py`` from Banking77 and Restaurant-8k, CC BY 4.0; see ATTRIBUTION.md).

- ``route_account_request``: 10 Banking77 intents, none of them ``classify_intent``'s.
- ``book_table``: Restaurant-8k with another signature than ``extract_booking`` — the party size as a
  number, the day, the time and the whole name.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

import dspy

import ratchet

DATA = Path(__file__).parent / "data"

AccountIntent = Literal[
    "card_linking", "change_pin", "automatic_top_up", "fiat_currency_support", "visa_or_mastercard",
    "getting_spare_card", "receiving_money", "verify_my_identity", "country_support", "declined_card_payment",
]


class RouteAccountRequest(dspy.Signature):
    """Route the bank customer's request to the team that handles it."""

    text: str = dspy.InputField(desc="the customer's request")
    intent: AccountIntent = dspy.OutputField()


def same_intent(example: dspy.Example, prediction: dspy.Prediction, trace: object = None) -> bool:
    """1 when the routed intent is the labelled one."""
    return prediction.get("intent") == example.intent


@ratchet.program("route_account_request", metric=same_intent, label_field="intent",
                 data={"train": DATA / "banking77_other10" / "train.jsonl",
                       "test": DATA / "banking77_other10" / "test.jsonl"})
def route_account_request() -> dspy.Module:
    return dspy.Predict(RouteAccountRequest)


class BookTable(dspy.Signature):
    """Fill in the table booking from the guest's message; leave out what it does not say."""

    text: str = dspy.InputField(desc="the guest's message")
    party_size: int | None = dspy.OutputField(desc="number of guests")
    day: str | None = dspy.OutputField(desc="the day or date, as written")
    time: str | None = dspy.OutputField(desc="the time, as written")
    name: str | None = dspy.OutputField(desc="the guest's name")


FIELDS = ("party_size", "day", "time", "name")


def _norm(value: object) -> str:
    return re.sub(r"\s+", " ", re.sub(r"[^\w\s:]", " ", str(value).casefold())).strip()


def _filled(values: dspy.Example | dspy.Prediction) -> set[tuple[str, str]]:
    return {(f, _norm(values.get(f))) for f in FIELDS if values.get(f) not in (None, "")}


def booking_f1(example: dspy.Example, prediction: dspy.Prediction, trace: object = None) -> float | bool:
    """F1 over (field, value) pairs; an example with nothing to fill and a prediction with nothing scores 1."""
    gold, pred = _filled(example), _filled(prediction)
    score = 1.0 if not gold and not pred else 2 * len(gold & pred) / (len(gold) + len(pred))
    return score >= 0.999 if trace is not None else score


@ratchet.program("book_table", metric=booking_f1,
                 data={"train": DATA / "restaurant8k_table" / "train.jsonl",
                       "test": DATA / "restaurant8k_table" / "test.jsonl"})
def book_table() -> dspy.Module:
    return dspy.Predict(BookTable)
