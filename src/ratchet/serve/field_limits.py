"""Input lengths from ``[limits]``: each input field and each feedback correction, checked before anything else.

A string is measured in characters, any other value by its JSON form. A field's limit is
``[limits.signatures.<name>] fields.<field>``, else that section's ``max_field_chars``, else
``limits.max_field_chars``; a correction's is ``limits.max_correction_chars``. A longer value is
refused (:class:`~ratchet.errors.FieldTooLongError`, HTTP 413 ``field_too_long``) before the
guard, the prompt-fit check, any LM call or any write: the cheap bound in front of the costly ones.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from ratchet.config.limits import LimitsSettings, SignatureLimitSettings
from ratchet.errors import FieldTooLongError

__all__ = ["FieldLimits", "length_of"]


def length_of(value: Any) -> int:
    """Characters of a string; of the JSON form of anything else."""
    if isinstance(value, str):
        return len(value)
    try:
        return len(json.dumps(value, ensure_ascii=False, default=str))
    except (TypeError, ValueError):
        return len(str(value))


class FieldLimits:
    """The ``[limits]`` lengths of every signature's inputs and of feedback corrections."""

    def __init__(self, settings: LimitsSettings) -> None:
        self.settings = settings

    def limit_of(self, signature: str, field: str) -> int:
        """The most characters ``field`` of ``signature`` may hold."""
        own: SignatureLimitSettings | None = self.settings.signatures.get(signature)
        if own is None:
            return self.settings.max_field_chars
        if field in own.fields:
            return own.fields[field]
        return own.max_field_chars if own.max_field_chars is not None else self.settings.max_field_chars

    def check(self, signature: str, values: Mapping[str, Any]) -> FieldTooLongError | None:
        """The error for the first input field of ``values`` over its limit; None when all fit."""
        for field, value in values.items():
            limit = self.limit_of(signature, field)
            length = len(value) if isinstance(value, str) else length_of(value)
            if length > limit:
                return FieldTooLongError(field, length=length, limit=limit)
        return None

    def check_correction(self, correction: Any) -> FieldTooLongError | None:
        """The error when a feedback correction is longer than ``limits.max_correction_chars``; else None."""
        if correction is None:
            return None
        limit = self.settings.max_correction_chars
        length = length_of(correction)
        return FieldTooLongError("correction", length=length, limit=limit) if length > limit else None
