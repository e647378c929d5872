"""The program versions a serving process runs: loaded once, with their metric children and the routing gauges.

A version is loaded the first time a request (or the warm-up) needs it, per (signature,
version, arm), together with the Prometheus children its requests update, so the call path
only looks up a dict. The production pointer of each signature is re-read at most every
``serve.routing_check_interval_s``; the routing gauges (state version, candidate shares,
which version serves each arm) are published whenever the routing state changes.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

import dspy

from ratchet.errors import RatchetError
from ratchet.programs import ProgramRegistry, ProgramSpec
from ratchet.programs.versions import BASE_VERSION, VersionStore
from ratchet.routing import Arm, RoutingState, RoutingWatcher
from ratchet.serve import metrics

__all__ = ["ServedVersion", "ServedVersions"]

log = logging.getLogger(__name__)


@dataclass
class ServedVersion:
    """A loaded program version and its cached metric children."""

    spec: ProgramSpec
    version: str
    module: dspy.Module
    module_name: str
    fingerprint: str
    requests: Any
    duration: Any
    tokens_in: Any
    tokens_out: Any
    cost: Any
    arm: Arm


class ServedVersions:
    """Loaded versions by (signature, version, arm), the production pointers, and the routing gauges."""

    def __init__(self, registry: ProgramRegistry, versions: VersionStore, routing: RoutingWatcher, *, lm_id: str,
                 adapter: str, recheck_s: float) -> None:
        self.registry = registry
        self.versions = versions
        self.routing = routing
        self.lm_id = lm_id
        self.adapter = adapter
        self.recheck_s = recheck_s
        self._loaded: dict[tuple[str, str, str], ServedVersion] = {}
        self._lock = threading.Lock()
        self._production: dict[str, tuple[str, float]] = {}
        self._errors_seen = 0
        self._version_seen = -1

    def get(self, spec: ProgramSpec, version: str, arm: Arm) -> ServedVersion:
        """The loaded ``version`` of ``spec`` for ``arm`` (loaded now if needed; ``VersionError`` if it cannot be)."""
        key = (spec.name, version, arm)
        served = self._loaded.get(key)
        if served is not None:
            return served
        with self._lock:
            served = self._loaded.get(key)
            if served is None:
                module = self.versions.load(spec, version)
                name = type(module).__name__
                labels = (spec.name, name, arm)
                served = ServedVersion(
                    spec=spec, version=version, module=module, module_name=name,
                    fingerprint=self.versions.fingerprint_of(spec, version, lm=self.lm_id, adapter=self.adapter),
                    requests=metrics.REQUESTS.labels(*labels), duration=metrics.DURATION.labels(*labels),
                    tokens_in=metrics.TOKENS.labels(*labels, "input"),
                    tokens_out=metrics.TOKENS.labels(*labels, "output"), cost=metrics.COST.labels(*labels),
                    arm=arm,
                )
                self._loaded[key] = served
            self.publish_routing()
        return served

    def production(self, signature: str) -> str:
        """The production version of ``signature`` (re-read at most every ``recheck_s``; the last good one on error)."""
        cached = self._production.get(signature)
        now = time.monotonic()
        if cached is not None and cached[1] > now:
            return cached[0]
        try:
            version = self.versions.production(signature)
        except RatchetError as exc:
            log.error("%s; serving %s", exc, BASE_VERSION)
            version = cached[0] if cached else BASE_VERSION
        self._production[signature] = (version, now + self.recheck_s)
        return version

    def serving_now(self, signature: str, state: RoutingState) -> list[tuple[Arm, str]]:
        """The (arm, version) pairs that take ``signature``'s traffic in ``state``: the baseline, and a candidate
        with a share."""
        route = state.route(signature)
        pairs: list[tuple[Arm, str]] = [("baseline", route.baseline_version if route else self.production(signature))]
        if route is not None and route.candidate_version and route.candidate_share > 0:
            pairs.append(("candidate", route.candidate_version))
        return pairs

    def routing_changed(self, state: RoutingState) -> bool:
        """Whether ``state`` (or a reload error) is news since the gauges were last published."""
        return state.version != self._version_seen or self.routing.errors != self._errors_seen

    def publish_routing(self) -> None:
        """Update the routing gauges: state version, candidate shares, and which versions serve each arm."""
        state = self.routing.current()
        if self.routing.errors != self._errors_seen:
            metrics.ROUTING_RELOAD_ERRORS.inc(self.routing.errors - self._errors_seen)
            self._errors_seen = self.routing.errors
        self._version_seen = state.version
        metrics.ROUTING_VERSION.set(state.version)
        current: set[tuple[str, str, str]] = set()
        for signature in self.registry.names():
            route = state.route(signature)
            metrics.EXPERIMENT_SHARE.labels(signature).set(route.candidate_share if route else 0.0)
            current.update((signature, arm, version) for arm, version in self.serving_now(signature, state))
        for (name, version, arm), served in list(self._loaded.items()):
            metrics.MODULE_VERSION.labels(name, served.module_name, arm, version).set(
                1 if (name, arm, version) in current else 0)
