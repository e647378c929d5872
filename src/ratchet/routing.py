"""The routing state: which program version serves which share of traffic, per signature.

This module is the contract between the rollout controller (which writes
``routing_config.json``) and every serving process (which reads it). The file::

    {
      "version": 12,                               # bumped on every write
      "updated_at": "2026-11-25T12:00:00+00:00",
      "signatures": {
        "classify_intent": {
          "baseline_version": "v3",
          "candidate_version": "v4",               # null when no experiment runs
          "candidate_share": 0.25,                 # 0..1 of request keys sent to the candidate
          "salt": "exp-intent-v4",                 # one salt per experiment
          "experiment_id": "exp-intent-v4",
          "state": "running",                      # informational: shadow, running, paused, rolled_back, promoted
          "shadow_share": 0.0                      # in shadow: 0..1 of request keys the candidate also answers
        }
      },
      "checksum": "<sha256 of the canonical JSON of everything else>"
    }

A request goes to the candidate when ``stable_bucket(salt, key) < share × 10000``,
where the key is the user id when given, else the request id. The rule is
monotone: raising the share only adds keys to the candidate. In shadow (``candidate_share``
0) a request whose ``stable_bucket(salt + ":shadow", key) < shadow_share × 10000`` is answered
by the baseline and also run on the candidate, whose answer is compared and dropped. Traffic follows
``candidate_share`` alone; the state field never changes routing (a paused
experiment keeps its current split; a rollback writes share 0).
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from ratchet.errors import DataError
from ratchet.hashing import BUCKETS, canonical_json, sha256_hex, stable_bucket
from ratchet.store.atomic import atomic_write_text
from ratchet.store.private import SHARED_FILE

__all__ = [
    "ROUTING_FILENAME",
    "Arm",
    "RoutingState",
    "RoutingWatcher",
    "SignatureRoute",
    "choose_arm",
    "read_routing",
    "routing_lock_path",
    "shadows",
    "write_routing",
]

ROUTING_FILENAME = "routing_config.json"
Arm = Literal["baseline", "candidate", "shadow"]  # shadow: the candidate answering unseen


@dataclass(frozen=True)
class SignatureRoute:
    """How one signature's traffic is split."""

    baseline_version: str
    candidate_version: str | None = None
    candidate_share: float = 0.0
    salt: str = ""
    experiment_id: str | None = None
    state: str = "none"
    shadow_share: float = 0.0

    def __post_init__(self) -> None:
        for name in ("candidate_share", "shadow_share"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1, got {value}")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SignatureRoute:
        if not isinstance(data.get("baseline_version"), str) or not data["baseline_version"]:
            raise ValueError("baseline_version must be a non-empty string")
        candidate = data.get("candidate_version")
        if candidate is not None and not isinstance(candidate, str):
            raise ValueError("candidate_version must be a string or null")
        share, shadow = data.get("candidate_share", 0.0), data.get("shadow_share", 0.0)
        for name, value in (("candidate_share", share), ("shadow_share", shadow)):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError(f"{name} must be a number")
        return cls(
            baseline_version=data["baseline_version"],
            candidate_version=candidate,
            candidate_share=float(share),
            salt=str(data.get("salt") or ""),
            experiment_id=data.get("experiment_id"),
            state=str(data.get("state") or "none"),
            shadow_share=float(shadow),
        )


@dataclass(frozen=True)
class RoutingState:
    """The whole routing file."""

    signatures: dict[str, SignatureRoute] = field(default_factory=dict)
    version: int = 0
    updated_at: str = ""

    def route(self, signature: str) -> SignatureRoute | None:
        return self.signatures.get(signature)

    def with_route(self, signature: str, route: SignatureRoute | None) -> RoutingState:
        """A copy with ``signature``'s route replaced (or removed when None)."""
        routes = dict(self.signatures)
        if route is None:
            routes.pop(signature, None)
        else:
            routes[signature] = route
        return replace(self, signatures=routes)

    def to_dict(self) -> dict[str, Any]:
        body = {
            "version": self.version,
            "updated_at": self.updated_at,
            "signatures": {name: asdict(route) for name, route in sorted(self.signatures.items())},
        }
        return {**body, "checksum": sha256_hex(canonical_json(body))}

    @classmethod
    def from_dict(cls, data: Any) -> RoutingState:
        if not isinstance(data, dict):
            raise ValueError("the routing file must hold a JSON object")
        body = {k: v for k, v in data.items() if k != "checksum"}
        if "checksum" not in data:
            raise ValueError("no checksum (only Ratchet writes this file: it is a projection of the state database)")
        if data["checksum"] != sha256_hex(canonical_json(body)):
            raise ValueError("checksum mismatch (the file was edited or damaged)")
        signatures = data.get("signatures", {})
        if not isinstance(signatures, dict):
            raise ValueError("'signatures' must be an object")
        routes = {}
        for name, route in signatures.items():
            if not isinstance(route, dict):
                raise ValueError(f"route of {name!r} must be an object")
            try:
                routes[name] = SignatureRoute.from_dict(route)
            except ValueError as exc:
                raise ValueError(f"route of {name!r}: {exc}") from None
        version = data.get("version", 0)
        if isinstance(version, bool) or not isinstance(version, int):
            raise ValueError("'version' must be an integer")
        return cls(signatures=routes, version=version, updated_at=str(data.get("updated_at", "")))


def choose_arm(route: SignatureRoute | None, key: str) -> Arm:
    """The arm for a request key under ``route`` (baseline when there is no candidate)."""
    if route is None or not route.candidate_version or route.candidate_share <= 0.0:
        return "baseline"
    if route.candidate_share >= 1.0:
        return "candidate"
    return "candidate" if stable_bucket(route.salt, key) < route.candidate_share * BUCKETS else "baseline"


def shadows(route: SignatureRoute | None, key: str) -> bool:
    """Whether the request with ``key`` also runs on the candidate in shadow (its answer unseen)."""
    if route is None or not route.candidate_version or route.shadow_share <= 0.0:
        return False
    return route.shadow_share >= 1.0 or stable_bucket(f"{route.salt}:shadow", key) < route.shadow_share * BUCKETS


def read_routing(path: Path) -> RoutingState:
    """Parse a routing file; a missing file is an empty state. Raises ``DataError`` when unreadable."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return RoutingState()
    except OSError as exc:
        raise DataError(f"{path}: cannot read routing state: {exc.strerror}") from None
    try:
        return RoutingState.from_dict(json.loads(raw.decode("utf-8")))
    except (UnicodeDecodeError, json.JSONDecodeError, ValueError) as exc:
        raise DataError(f"{path}: invalid routing state: {exc}") from None


_WRITE_LOCK = threading.Lock()


def routing_lock_path(path: Path) -> Path:
    """The lock file writers of ``path`` hold across processes while they read the database and write it."""
    return path.with_name(path.name + ".lock")


def write_routing(path: Path, state: RoutingState) -> RoutingState:
    """Write ``state`` atomically with the next version number and a fresh checksum; return what was written.

    Writers that derive ``state`` from the database hold :func:`routing_lock_path`'s lock across the
    read and this write (:func:`ratchet.rollout.projection.publish_routing`); this lock only orders
    threads of one process.
    """
    with _WRITE_LOCK:
        try:
            current = read_routing(path).version
        except DataError:
            current = 0
        written = replace(state, version=max(current, state.version) + 1,
                          updated_at=datetime.now(UTC).isoformat(timespec="seconds"))
        # No user text (names, versions, percentages), read by every serving process: not owner-only.
        atomic_write_text(path, json.dumps(written.to_dict(), indent=2) + "\n", mode=SHARED_FILE)
        return written


class RoutingWatcher:
    """The routing state as a serving process sees it: reloaded when the file changes.

    ``current()`` is called on the request path; it looks at the file at most
    every ``check_interval_s`` (a ``stat``), re-reads it only when its size or
    mtime changed, and keeps the last good state when the new file is unreadable
    (counting the error). A missing file means no experiments.
    """

    def __init__(self, path: Path, *, check_interval_s: float = 1.0) -> None:
        self.path = Path(path)
        self.check_interval_s = check_interval_s
        self.errors = 0
        self.last_error: str | None = None
        self.reloads = 0
        self._state = RoutingState()
        self._identity: tuple[int, int, int] | None = None
        self._next_check = 0.0
        self._lock = threading.Lock()
        self.refresh()

    def current(self) -> RoutingState:
        if time.monotonic() >= self._next_check:
            self.refresh()
        return self._state

    def refresh(self) -> bool:
        """Check the file now; return True when a new state was loaded."""
        with self._lock:
            self._next_check = time.monotonic() + self.check_interval_s
            try:
                st = os.stat(self.path)
                identity = (st.st_ino, st.st_size, st.st_mtime_ns)  # atomic writes get a new inode
            except FileNotFoundError:
                identity = None
            except OSError as exc:
                self._fail(str(exc))
                return False
            if identity == self._identity:
                return False
            try:
                state = read_routing(self.path) if identity is not None else RoutingState()
            except DataError as exc:
                self._fail(str(exc))
                self._identity = identity  # do not re-read the same bad file until it changes
                return False
            self._state, self._identity = state, identity
            self.reloads += 1
            return True

    def _fail(self, message: str) -> None:
        self.errors += 1
        self.last_error = message
