"""Per-client rate limits of the HTTP API: a token bucket per client, per serving process (``[limits]``).

A client is its API key when the request was authenticated (``request.state.principal``, with
``key_id`` and ``name``; a principal without a ``key_id`` is ``local`` on an open server), else its
address (``request.client.host``: behind a reverse proxy on another host, set ``FORWARDED_ALLOW_IPS``
to the proxy's address so that it is the client's, not the proxy's). Each bucket
holds up to ``burst`` tokens and gains ``requests_per_minute / 60`` a second; a request takes one,
and a request that finds less than one is refused with ``retry_after_s`` = the seconds until the
next token (:class:`~ratchet.errors.RateLimitedError`, HTTP 429). ``[limits.keys.<name>]`` sets
one key's own rate. Buckets live in the process: with N workers a client may send N times the
rate (set it divided by the workers for a total). At most ``limits.max_clients`` buckets are kept;
the least recently used go first (a forgotten client starts again with a full bucket).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ratchet.config.limits import KeyLimitSettings, LimitsSettings
from ratchet.errors import RateLimitedError
from ratchet.serve import metrics

__all__ = ["Client", "RateLimiter", "TokenBuckets", "client_of"]

ANONYMOUS = "anonymous"


@dataclass(frozen=True)
class Client:
    """Who sent a request, for rate limits: ``bucket`` keys its bucket, ``name`` (an API key's) picks its rate."""

    bucket: str
    name: str | None = None

    @property
    def label(self) -> str:
        """The ``key`` label of ``ratchet_rate_limited_total``: the key's name, or ``anonymous`` (never addresses)."""
        return self.name or ANONYMOUS


def client_of(request: Any) -> Client:
    """The client of a Starlette request: its authenticated API key, else its address."""
    principal = getattr(request.state, "principal", None)
    key_id = getattr(principal, "key_id", None)  # None without a key (``local`` on an open loopback server)
    if key_id is not None:
        name = getattr(principal, "name", None)
        return Client(f"key:{key_id}", str(name) if name is not None else None)
    host = request.client.host if request.client is not None else "unknown"
    return Client(f"addr:{host}")


class TokenBuckets:
    """One token bucket per key, thread-safe, at most ``max_keys`` of them (least recently used forgotten)."""

    def __init__(self, max_keys: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.max_keys = max_keys
        self.clock = clock
        self._lock = threading.Lock()
        self._buckets: dict[str, tuple[float, float]] = {}  # key → (tokens, when); insertion order = recency

    def __len__(self) -> int:
        return len(self._buckets)

    def take(self, key: str, rate_per_s: float, burst: int) -> float:
        """Take a token from ``key``'s bucket: 0.0 when there was one, else the seconds until there is one."""
        now = self.clock()
        with self._lock:
            state = self._buckets.pop(key, None)
            tokens = float(burst) if state is None else min(float(burst), state[0] + (now - state[1]) * rate_per_s)
            if tokens >= 1.0:
                tokens -= 1.0
                wait = 0.0
            else:
                wait = (1.0 - tokens) / rate_per_s
            self._buckets[key] = (tokens, now)
            while len(self._buckets) > self.max_keys:
                del self._buckets[next(iter(self._buckets))]
            return wait


class RateLimiter:
    """The ``[limits]`` rates of every client of one serving process."""

    def __init__(self, settings: LimitsSettings, clock: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings
        self.buckets = TokenBuckets(settings.max_clients, clock)

    def rate_of(self, client: Client) -> tuple[float, int]:
        """(requests per minute, burst) for ``client``: its key's own where ``[limits.keys.<name>]`` sets them."""
        rate, burst = self.settings.requests_per_minute, self.settings.burst
        own: KeyLimitSettings | None = self.settings.keys.get(client.name) if client.name is not None else None
        if own is not None:
            rate = own.requests_per_minute if own.requests_per_minute is not None else rate
            burst = own.burst if own.burst is not None else burst
        return rate, burst

    def check(self, client: Client, endpoint: str) -> RateLimitedError | None:
        """Count one request of ``client`` to ``endpoint``; the error to answer with when it is over its rate."""
        rate, burst = self.rate_of(client)
        if rate <= 0:
            return None
        wait = self.buckets.take(client.bucket, rate / 60.0, burst)
        if wait <= 0.0:
            return None
        metrics.RATE_LIMITED.labels(endpoint, client.label).inc()
        return RateLimitedError(f"too many requests: at most {rate:g} a minute (bursts of {burst}) are accepted "
                                "from this client", retry_after_s=max(1, math.ceil(wait)))
