"""The ``[limits]`` section: per-client rate limits and input sizes, refused before any LM call.

``[limits]`` holds the defaults; ``[limits.keys.<name>]`` overrides the rate of one API key (by its
name) and ``[limits.signatures.<name>]`` the field lengths of one program. Rates are per serving
process: with ``serve.workers = N`` a client may send up to N times as much.
"""

from __future__ import annotations

from pydantic import Field

from ratchet.config.section import Section

__all__ = ["KeyLimitSettings", "LimitsSettings", "SignatureLimitSettings"]


class KeyLimitSettings(Section):
    """The rate of one API key (``[limits.keys.<name>]``); a key left out keeps ``[limits]``'s."""

    requests_per_minute: float | None = Field(None, ge=0, description="sustained rate; 0: not limited")
    burst: int | None = Field(None, ge=1, description="requests it may send at once")


class SignatureLimitSettings(Section):
    """Input lengths of one program (``[limits.signatures.<name>]``)."""

    max_field_chars: int | None = Field(None, ge=1, description="longest input field; default: [limits]'s")
    fields: dict[str, int] = Field(default_factory=dict, description="per input field: its longest value")


class LimitsSettings(Section):
    """Abuse limits of the HTTP API: per-client token buckets (429) and input lengths (413)."""

    requests_per_minute: float = Field(
        3000.0, ge=0, description="per client (API key, else address) and per process: predict and feedback "
                                  "requests; 0: not limited")
    burst: int = Field(300, ge=1, description="requests a client may send at once before the rate applies")
    max_clients: int = Field(100_000, ge=100, description="clients tracked per process (idle ones are forgotten "
                                                          "first)")
    max_field_chars: int = Field(100_000, ge=1, description="longest input field in characters (other values: "
                                                            "their JSON form)")
    max_correction_chars: int = Field(20_000, ge=1, description="longest feedback correction (its JSON form)")
    keys: dict[str, KeyLimitSettings] = Field(default_factory=dict, description="per API key name: its rate")
    signatures: dict[str, SignatureLimitSettings] = Field(default_factory=dict,
                                                          description="per signature: its input lengths")
