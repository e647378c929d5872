"""The bundled example programs: ``classify_intent`` (Banking77), ``extract_booking`` (Restaurant-8k)
and ``classify_commit`` (Conventional Commits, data mined from git).

Importing this module registers them. Data and its attribution live in ``data/``.
"""

from ratchet.examples import classify_commit, classify_intent, extract_booking

__all__ = ["classify_commit", "classify_intent", "extract_booking"]
