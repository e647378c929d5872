"""API key hygiene (seed 004: rotate after 90 days): keys older than ``auth.max_key_age_days`` and keys unused for
``auth.max_unused_days`` are a warning naming each key and what to do."""

from __future__ import annotations

import time

from ratchet.auth import list_keys
from ratchet.config import Settings
from ratchet.monitor.alerts import Alert
from ratchet.monitor.results import CheckResult
from ratchet.store.db import StateDB

__all__ = ["NAME", "check_keys"]

NAME = "keys"
_DAY_S = 86400.0


def check_keys(settings: Settings, *, db: StateDB, now: float | None = None) -> CheckResult:
    """Warn about active keys due for rotation (too old) or for revocation (unused too long)."""
    now = time.time() if now is None else now
    keys = list_keys(db, now=now)
    max_age, max_unused = settings.auth.max_key_age_days, settings.auth.max_unused_days
    old = [k for k in keys if (now - k.created_at) / _DAY_S > max_age]
    unused = [k for k in keys if (now - (k.last_used_at or k.created_at)) / _DAY_S > max_unused]
    result = CheckResult(NAME, scopes=[NAME])
    result.summary = {"active_keys": len(keys), "older_than_max_age": len(old), "unused": len(unused)}
    if old:
        names = ", ".join(f"{k.name} ({k.key_id}, {(now - k.created_at) / _DAY_S:.0f} days)" for k in old)
        result.alerts.append(Alert(
            "warning", "API Key Rotation Due",
            f"{len(old)} API key(s) are older than {max_age:g} days (auth.max_key_age_days): {names}. Rotate each "
            "with `ratchet keys rotate <key id>` and move its clients to the new key within the grace period.",
            {"keys": [k.key_id for k in old], "check": NAME}, condition=f"{NAME}/old"))
    if unused:
        names = ", ".join(f"{k.name} ({k.key_id})" for k in unused)
        result.alerts.append(Alert(
            "warning", "API Key Unused",
            f"{len(unused)} API key(s) have not been used for {max_unused:g} days (auth.max_unused_days): {names}. "
            "Revoke keys nobody needs (`ratchet keys revoke <key id>`).",
            {"keys": [k.key_id for k in unused], "check": NAME}, condition=f"{NAME}/unused"))
    return result
