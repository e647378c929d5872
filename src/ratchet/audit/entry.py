"""One audit entry: its fields, its canonical form and its hash.

An entry is one JSON object on one line::

    {"v": 1, "seq": 42, "at": "2025-06-01T09:30:12.345678Z", "ts": 1748770212.345678,
     "actor": "operator:alice@build-01", "action": "experiment.rollback", "target": "classify_intent_0601",
     "outcome": "ok", "reason": "latency", "source": "cli", "client": null, "details": {...},
     "prev_hash": "<hash of entry 41>", "hash": "<sha256 of this entry's canonical JSON without 'hash'>"}

``seq`` counts every entry of the home with no gaps; ``prev_hash`` chains each entry to the one
before it (the first to :data:`GENESIS`), across daily files. Entries hold who, what, when, from
where and the outcome — never what users typed: ``details`` keeps only short scalars.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from ratchet.hashing import canonical_json, sha256_hex

__all__ = ["FIELDS", "FORMAT", "GENESIS", "OUTCOMES", "build_entry", "entry_hash", "small_details",
           "validate_action"]

FORMAT = 1
GENESIS = "0" * 64
"""The ``prev_hash`` of the very first entry."""
OUTCOMES = ("ok", "refused", "failed")
FIELDS = ("v", "seq", "at", "ts", "actor", "action", "target", "outcome", "reason", "source", "client", "details",
          "prev_hash", "hash")
_ACTION = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_-]*)+$")
_MAX_TEXT = {"actor": 200, "target": 200, "reason": 500, "source": 40, "client": 100}
_MAX_VALUE, _MAX_ITEMS, _MAX_DETAILS = 200, 20, 2048


def validate_action(action: str) -> str:
    """``action`` if it is a dotted lower-case name such as ``experiment.rollback``; ValueError otherwise."""
    if not isinstance(action, str) or not _ACTION.match(action):
        raise ValueError(f"audit action must be a dotted lower-case name like 'dataset.create', got {action!r}")
    return action


def entry_hash(entry: Mapping[str, Any]) -> str:
    """SHA-256 of the entry's canonical JSON, ``hash`` itself left out (``prev_hash`` included)."""
    return sha256_hex(canonical_json({k: v for k, v in entry.items() if k != "hash"}))


def _text(value: object, limit: int) -> str | None:
    if value is None:
        return None
    text = str(value)
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _scalar(value: object) -> object:
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, float):
        return round(value, 6)
    return _text(value, _MAX_VALUE)


def small_details(details: Mapping[str, Any] | None) -> dict[str, Any]:
    """A copy of ``details`` that stays small: scalars and short lists of scalars, strings cut at 200 characters,
    at most 2 KiB in all (otherwise only the key names are kept)."""
    out: dict[str, Any] = {}
    for key, value in (details or {}).items():
        name = _text(key, 64) or ""
        if isinstance(value, list | tuple | set | frozenset):
            items = sorted(value, key=str) if isinstance(value, set | frozenset) else list(value)
            out[name] = [_scalar(v) for v in items[:_MAX_ITEMS]] + (["…"] if len(items) > _MAX_ITEMS else [])
        elif isinstance(value, Mapping):
            out[name] = _text(canonical_json(value), _MAX_VALUE)
        else:
            out[name] = _scalar(value)
    if len(canonical_json(out)) > _MAX_DETAILS:
        return {"truncated": True, "keys": sorted(out)[:_MAX_ITEMS]}
    return out


def build_entry(*, seq: int, prev_hash: str, ts: float, actor: str, action: str, target: str | None,
                outcome: str, reason: str | None, source: str, client: str | None,
                details: Mapping[str, Any] | None) -> dict[str, Any]:
    """A complete entry (``hash`` set) from its parts; text fields are cut to their limits."""
    if outcome not in OUTCOMES:
        raise ValueError(f"audit outcome must be one of {', '.join(OUTCOMES)}, got {outcome!r}")
    entry: dict[str, Any] = {
        "v": FORMAT, "seq": seq,
        "at": datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"), "ts": ts,
        "actor": _text(actor, _MAX_TEXT["actor"]), "action": validate_action(action),
        "target": _text(target, _MAX_TEXT["target"]), "outcome": outcome,
        "reason": _text(reason, _MAX_TEXT["reason"]), "source": _text(source, _MAX_TEXT["source"]),
        "client": _text(client, _MAX_TEXT["client"]), "details": small_details(details), "prev_hash": prev_hash,
    }
    entry["hash"] = entry_hash(entry)
    return entry
