"""Deterministic sampling of live calls: the same request id gets the same answer in every process.

A call is sampled when ``stable_bucket(salt, request_id) < rate * BUCKETS``. The
decision depends only on the salt, the request id and the rate, so feedback that
arrives later (on another worker, another host) recomputes it instead of looking it
up, and raising a rate only adds request ids to the sample.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from ratchet.hashing import BUCKETS, stable_bucket

if TYPE_CHECKING:
    from ratchet.config.settings import TelemetrySettings

__all__ = ["DEFAULT_SALT", "Sampler"]

DEFAULT_SALT = "ratchet-sample"


def _checked(rate: float, what: str) -> float:
    rate = float(rate)
    if not 0.0 <= rate <= 1.0:
        raise ValueError(f"{what} must be between 0 and 1, got {rate}")
    return rate


class Sampler:
    """Which requests to log: a default rate and optional per-signature rates (shares in ``[0, 1]``)."""

    def __init__(self, rate: float, per_signature: Mapping[str, float] | None = None, *,
                 salt: str = DEFAULT_SALT) -> None:
        self.rate = _checked(rate, "sampling rate")
        self.per_signature = {name: _checked(r, f"sampling rate for {name!r}")
                              for name, r in (per_signature or {}).items()}
        self.salt = salt
        # Thresholds in buckets, precomputed: a call costs one dict lookup and at most one hash.
        self._default_threshold = self._threshold(self.rate)
        self._thresholds = {name: self._threshold(r) for name, r in self.per_signature.items()}

    @staticmethod
    def _threshold(rate: float) -> float:
        return rate * BUCKETS

    def rate_for(self, signature: str) -> float:
        """The share of ``signature``'s calls that is sampled."""
        return self.per_signature.get(signature, self.rate)

    def should_sample(self, signature: str, request_id: str) -> bool:
        """Whether to log this call; a rate of 0 answers False without hashing, a rate of 1 True."""
        threshold = self._thresholds.get(signature, self._default_threshold)
        if threshold <= 0:
            return False
        if threshold >= BUCKETS:
            return True
        return stable_bucket(self.salt, request_id) < threshold

    @classmethod
    def from_settings(cls, telemetry: TelemetrySettings) -> Sampler:
        """The sampler ``[telemetry]`` describes; ``enabled = false`` samples nothing."""
        if not telemetry.enabled:
            return cls(0.0, {name: 0.0 for name in telemetry.per_signature})
        return cls(telemetry.sampling_rate, telemetry.per_signature)

    def __repr__(self) -> str:
        return f"Sampler(rate={self.rate}, per_signature={self.per_signature!r}, salt={self.salt!r})"
