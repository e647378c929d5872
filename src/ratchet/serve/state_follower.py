"""What a serving process obeys: the state database's live experiments and production pointers.

A background thread reads both every ``serve.routing_check_interval_s`` and swaps in a new
snapshot; the request path only reads the current snapshot (no I/O). When the database
cannot be read, the last verified snapshot stays and the error is counted. The routing file
is never obeyed: after each read the follower checks that ``routing_config.json`` matches the
database and rewrites it when it does not, counting the repair by what it found
(``ratchet_routing_file_repairs_total{found="invalid"}`` for a missing or wrong checksum — an
edit; ``found="stale"`` for a valid file behind the database). An alert rule watches ``invalid``.

The follower never routes to a version this host cannot load: every version a snapshot names is
made present first (with PostgreSQL, a version saved on another host is fetched from the database,
fingerprint-checked and cached under this home). A candidate that cannot be made present gets no
traffic here (its share is withheld and ``ratchet_version_unavailable_total{arm="candidate"}``
counts each reading) until it can; a production version that cannot be made present stays named (its
requests answer 503 and ``/ready`` fails, so a load balancer sends them to the other hosts).
A cached version whose fingerprint changed in the database (the right to deletion
removed demos on another host) is fetched again and reloaded.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from ratchet.errors import VersionError
from ratchet.programs import ProgramRegistry
from ratchet.programs.production import ProductionPointers
from ratchet.programs.versions import BASE_VERSION, VersionStore
from ratchet.rollout.experiments import LIVE, ExperimentStore
from ratchet.rollout.projection import publish_routing, routing_from
from ratchet.routing import RoutingState
from ratchet.serve import metrics
from ratchet.store.db import StateDB

__all__ = ["ServingState", "StateFollower"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServingState:
    """One verified reading of the database: routes of live experiments, production versions, a version number."""

    routing: RoutingState = field(default_factory=RoutingState)
    production: dict[str, str] = field(default_factory=dict)
    version: int = 0

    def production_of(self, signature: str) -> str:
        return self.production.get(signature, BASE_VERSION)


class StateFollower:
    """Keeps a serving process's view of routing and production in step with the state database."""

    def __init__(self, db: StateDB, registry: ProgramRegistry, versions: VersionStore, routing_path: Path, *,
                 interval_s: float = 1.0, background: bool = True) -> None:
        self.experiments = ExperimentStore(db)
        self.pointers = ProductionPointers(db, versions)
        self.registry = registry
        self.routing_path = routing_path
        self.interval_s = interval_s
        self.errors = 0
        self.repairs = 0
        self.last_error: str | None = None
        self._state = ServingState()
        self.on_version_changed: list[Callable[[str, str], None]] = []  # a cached version was fetched again
        self._unavailable: set[tuple[str, str]] = set()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self.refresh()
        self._thread: threading.Thread | None = None
        if background:
            self._thread = threading.Thread(target=self._run, name="ratchet-state-follower", daemon=True)
            self._thread.start()

    def current(self) -> ServingState:
        """The last verified snapshot (never blocks on I/O)."""
        return self._state

    def refresh(self) -> bool:
        """Read the database now; True when the snapshot changed. Keeps the last one when the read fails."""
        with self._lock:
            try:
                live = self.experiments.list(statuses=LIVE)
                rows = self.pointers.all()
                production = {name: rows.get(name) or self.pointers.versions.projected_production(name)
                              for name in self.registry.names()}
                routing, production = self._loadable(routing_from(live), production)
                on_disk, found = publish_routing(self.experiments, self.routing_path)
            except Exception as exc:  # the database (or the home) is unreachable: serve what was verified last
                self.errors += 1
                metrics.ROUTING_RELOAD_ERRORS.inc()
                if self.last_error != str(exc):
                    log.error("cannot read routing from the state database (keeping the last verified state): %s",
                              exc)
                self.last_error = str(exc)
                return False
            self.last_error = None
            if found in ("invalid", "stale"):
                self.repairs += 1
                metrics.ROUTING_FILE_REPAIRS.labels(found).inc()
                if found == "invalid":
                    log.warning("%s was edited or damaged (not signed by Ratchet): rewritten from the state database",
                                self.routing_path)
            state = ServingState(routing=routing, production=production, version=on_disk.version)
            changed = (state.routing.signatures, state.production) != (self._state.routing.signatures,
                                                                      self._state.production)
            self._state = state if changed or state.version != self._state.version else self._state
            return changed

    def _loadable(self, routing: RoutingState, production: dict[str, str]) -> tuple[RoutingState, dict[str, str]]:
        """Make every named version present here; withhold what cannot be (see the module's docstring)."""
        versions = self.pointers.versions
        in_use = set(production.items())
        for signature, route in routing.signatures.items():
            in_use.add((signature, route.baseline_version))
            if route.candidate_version:
                in_use.add((signature, route.candidate_version))
        cached = versions.cached(self.registry.names()) if versions.rows is not None else []
        for signature, version in versions.refresh_cached(cached):
            log.warning("%s %s changed in the state database (demos removed): fetched again", signature, version)
            for listener in self.on_version_changed:
                listener(signature, version)
        missing = {pair for pair in in_use if not self._present(*pair)}
        for pair in missing - self._unavailable:
            log.error("%s %s is neither in this home nor in the state database: not routed to here", *pair)
        self._unavailable = missing
        routes = {}
        for signature, route in routing.signatures.items():
            if route.candidate_version and (signature, route.candidate_version) in missing:
                metrics.VERSION_UNAVAILABLE.labels(signature, route.candidate_version, "candidate").inc()
                route = replace(route, candidate_share=0.0, shadow_share=0.0)
            routes[signature] = route
        return replace(routing, signatures=routes), production

    def _present(self, signature: str, version: str) -> bool:
        try:
            return self.pointers.versions.exists(signature, version)
        except VersionError as exc:  # the database's copy does not match its fingerprint
            log.error("%s", exc)
            return False

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            started = time.monotonic()
            self.refresh()
            if time.monotonic() - started > self.interval_s:
                log.warning("reading routing from the state database took longer than serve.routing_check_interval_s")
