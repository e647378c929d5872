"""Values as the outcome tables hold them, shared by the writing and the reading side.

``COUNTERS`` names the counter columns of an ``arm_outcomes`` row in the order a pending row
of the recorder holds them (and the reader sums them); ``clean`` (from :mod:`ratchet.store.tables`,
which feedback uses too) turns any key into a string the database accepts, the same way when rows
are written and when a request id is looked up.
"""

from __future__ import annotations

from ratchet.store.tables import clean

__all__ = ["COUNTERS", "clean"]

# Positions in a pending arm_outcomes row (a list, updated in place under the lock).
COUNTERS = ("requests", "errors", "latency_sum_s", "latency_sumsq", "tokens_in", "tokens_out", "cost_usd")
