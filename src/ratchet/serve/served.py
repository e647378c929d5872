"""The program versions a serving process runs: loaded once, with their metric children and the routing gauges.

A version is loaded the first time a request (or the warm-up) needs it, per (signature,
version, arm), together with the Prometheus children its requests update, so the call path
only looks up a dict. Which versions serve comes from the state follower's snapshot of the
database; the routing gauges (state version, candidate shares, which version serves each
arm) are published whenever that snapshot changes.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Any

import dspy

from ratchet.programs import ProgramRegistry, ProgramSpec
from ratchet.programs.versions import VersionStore
from ratchet.routing import Arm
from ratchet.serve import metrics
from ratchet.serve.state_follower import ServingState, StateFollower

__all__ = ["ServedVersion", "ServedVersions"]

log = logging.getLogger(__name__)


@dataclass
class ServedVersion:
    """A loaded program version and its cached metric children."""

    spec: ProgramSpec
    version: str
    module: dspy.Module | None  # None: the version's files are missing or damaged (requests fail, counted)
    module_name: str
    fingerprint: str
    requests: Any
    duration: Any
    tokens_in: Any
    tokens_out: Any
    cost: Any
    arm: Arm


class ServedVersions:
    """Loaded versions by (signature, version, arm), which of them serve now, and the routing gauges."""

    def __init__(self, registry: ProgramRegistry, versions: VersionStore, follower: StateFollower, *, lm_id: str,
                 adapter: str) -> None:
        self.registry = registry
        self.versions = versions
        self.follower = follower
        self.lm_id = lm_id
        self.adapter = adapter
        self._loaded: dict[tuple[str, str, str], ServedVersion] = {}
        self._lock = threading.Lock()
        self._seen: ServingState | None = None
        follower.on_version_changed.append(self.forget)

    def forget(self, signature: str, version: str) -> None:
        """Drop a loaded version (its files changed): the next request loads it again."""
        with self._lock:
            for key in [k for k in self._loaded if k[:2] == (signature, version)]:
                del self._loaded[key]

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

    def unavailable(self, spec: ProgramSpec, version: str, arm: Arm) -> ServedVersion:
        """Stands in for a version that cannot be loaded: its requests fail with ``version_unavailable``
        and are counted under module ``unavailable``."""
        labels = (spec.name, "unavailable", arm)
        return ServedVersion(spec=spec, version=version, module=None, module_name="unavailable", fingerprint="",
                             requests=metrics.REQUESTS.labels(*labels), duration=metrics.DURATION.labels(*labels),
                             tokens_in=metrics.TOKENS.labels(*labels, "input"),
                             tokens_out=metrics.TOKENS.labels(*labels, "output"), cost=metrics.COST.labels(*labels),
                             arm=arm)

    def production(self, signature: str) -> str:
        """The production version of ``signature`` as the database said at the last reading."""
        return self.follower.current().production_of(signature)

    def serving_now(self, signature: str, state: ServingState) -> list[tuple[Arm, str]]:
        """The (arm, version) pairs that take ``signature``'s traffic in ``state``: the baseline, and a candidate
        with a share."""
        route = state.routing.route(signature)
        pairs: list[tuple[Arm, str]] = [("baseline", route.baseline_version if route else
                                         state.production_of(signature))]
        if route is not None and route.candidate_version and route.candidate_share > 0:
            pairs.append(("candidate", route.candidate_version))
        return pairs

    def routing_changed(self, state: ServingState) -> bool:
        """Whether ``state`` is news since the gauges were last published."""
        return state is not self._seen

    def publish_routing(self) -> None:
        """Update the routing gauges: state version, candidate shares, and which versions serve each arm."""
        state = self.follower.current()
        self._seen = state
        metrics.ROUTING_VERSION.set(state.version)
        current: set[tuple[str, str, str]] = set()
        for signature in self.registry.names():
            route = state.routing.route(signature)
            metrics.EXPERIMENT_SHARE.labels(signature).set(route.candidate_share if route else 0.0)
            current.update((signature, arm, version) for arm, version in self.serving_now(signature, state))
        for (name, version, arm), served in list(self._loaded.items()):
            metrics.MODULE_VERSION.labels(name, served.module_name, arm, version).set(
                1 if (name, arm, version) in current else 0)
