"""Your programs. Ratchet imports this file (see `programs` in ratchet.toml).

Register a DSPy program under a signature name with its metric; Ratchet reads
the input/output fields from the signature and uses them to validate requests
and training data. Try it:

    ratchet programs list
    ratchet predict triage_ticket --input text="The app crashes every time I log in"
"""

from typing import Literal

import dspy

import ratchet


class TriageTicket(dspy.Signature):
    """Decide how urgent a support ticket is."""

    text: str = dspy.InputField(desc="the ticket as the customer wrote it")
    urgency: Literal["low", "normal", "high"] = dspy.OutputField()


def urgency_match(example: dspy.Example, prediction: dspy.Prediction, trace: object = None) -> bool:
    """1 when the predicted urgency is the labelled one."""
    return prediction.get("urgency") == example.urgency


@ratchet.program("triage_ticket", metric=urgency_match)
def triage_ticket() -> dspy.Module:
    return dspy.Predict(TriageTicket)
