"""The bundled example programs: ``classify_intent`` (Banking77) and ``extract_booking`` (Restaurant-8k).

Importing this module registers them. Data and its attribution live in ``data/``.
"""

from ratchet.examples import classify_intent, extract_booking

__all__ = ["classify_intent", "extract_booking"]
