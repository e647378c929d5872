"""The L1 prompt-injection guard: normalise a text, then look for the patterns of known injections.

Pure functions and data (no I/O, no metrics): the serving path (:mod:`ratchet.serve.guard`)
decides per signature whether a detection blocks the request, is only counted, or is not looked for.
"""

from ratchet.guard.detector import ENCODED_PAYLOAD, Detection, Detector
from ratchet.guard.normalize import normalize
from ratchet.guard.rules import SHIPPED_RULES, Rule, select_rules

__all__ = ["ENCODED_PAYLOAD", "SHIPPED_RULES", "Detection", "Detector", "Rule", "normalize", "select_rules"]
