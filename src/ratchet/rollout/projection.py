"""The routing state from the database, and ``routing_config.json`` as its projection.

What serves traffic is decided by the live experiments in the state database and nothing
else: a live experiment routes its candidate share of its signature to the candidate, every
other request goes to the signature's production version. ``routing_config.json`` is written
from that state for people and tools, under a lock held across the database read and the
write (so the last writer is the one that read last). Serving processes never obey the file;
they repair it when it does not match (:mod:`ratchet.serve.state_follower`).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from ratchet.errors import DataError
from ratchet.rollout.experiments import LIVE, Experiment, ExperimentStore
from ratchet.routing import RoutingState, SignatureRoute, read_routing, routing_lock_path, write_routing
from ratchet.store.filelock import file_lock

__all__ = ["publish_routing", "route_of", "routing_from"]


def route_of(experiment: Experiment) -> SignatureRoute:
    """The route a live experiment gives its signature."""
    return SignatureRoute(baseline_version=experiment.baseline_version, candidate_version=experiment.candidate_version,
                          candidate_share=experiment.candidate_share, salt=experiment.salt,
                          experiment_id=experiment.experiment_id, state=experiment.status,
                          shadow_share=experiment.shadow_share)


def routing_from(live: Iterable[Experiment]) -> RoutingState:
    """The routing state of these live experiments (a signature without one has no route)."""
    return RoutingState(signatures={e.signature: route_of(e) for e in live if e.live})


def publish_routing(store: ExperimentStore, path: Path) -> tuple[RoutingState, str]:
    """Make ``path`` match the database; returns the state on disk and what was found there.

    ``unchanged`` (it matched), ``created`` (there was none), ``stale`` (a valid file with other routes:
    usually a writer's projection not yet written, or a forgery with a recomputed checksum) or
    ``invalid`` (unreadable, unsigned or a wrong checksum: someone edited it).
    """
    with file_lock(routing_lock_path(path)):
        wanted = routing_from(store.list(statuses=LIVE))
        found = "stale"
        try:
            current: RoutingState | None = read_routing(path)
        except DataError:  # damaged, edited or unsigned: replaced by what the database says
            current, found = None, "invalid"
        if current is not None and current.signatures == wanted.signatures:
            return current, "unchanged"
        if current is None and found == "invalid" and not path.exists():
            found = "created"
        return write_routing(path, wanted), found
