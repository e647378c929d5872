"""API keys in the state database: created once and shown once, stored only as a hash, revoked or rotated.

A key reads ``rtk_<key id>_<secret>``. The key id (12 hex digits) is public: it names the key in
``ratchet keys list`` and in the audit log, and finds its row. Only the SHA-256 of the whole key is
stored; a presented key is checked against it in constant time. The secret is 256 random bits, so a
plain hash is as strong as a slow one would be.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select, update

from ratchet.auth.roles import Role, parse_roles
from ratchet.errors import ConfigError
from ratchet.store.db import StateDB
from ratchet.store.tables import NAME_LEN, api_keys

__all__ = ["PREFIX", "ApiKey", "create_key", "find_keys", "key_id_of", "list_keys", "lookup_key", "matches",
           "revoke_keys", "rotate_key", "touch_key"]

PREFIX = "rtk"
_ID_HEX = 12
_DAY_S = 86400.0


@dataclass(frozen=True)
class ApiKey:
    """One key's row (never its secret)."""

    key_id: str
    name: str
    roles: tuple[Role, ...]
    created_at: float
    created_by: str
    secret_sha256: str
    expires_at: float | None = None
    revoked_at: float | None = None
    last_used_at: float | None = None
    rotated_to: str | None = None

    def status(self, now: float | None = None) -> str:
        """``active``, ``revoked`` or ``expired``."""
        now = time.time() if now is None else now
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and self.expires_at <= now:
            return "expired"
        return "active"

    def to_dict(self, now: float | None = None) -> dict[str, Any]:
        now = time.time() if now is None else now
        return {"key_id": self.key_id, "name": self.name, "roles": list(self.roles), "status": self.status(now),
                "created_at": self.created_at, "created_by": self.created_by,
                "age_days": round((now - self.created_at) / _DAY_S, 1), "expires_at": self.expires_at,
                "revoked_at": self.revoked_at, "last_used_at": self.last_used_at, "rotated_to": self.rotated_to}


def _hash(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


def key_id_of(presented: str) -> str | None:
    """The key id a presented key claims (``rtk_<id>_…``), or None when it is not shaped like a Ratchet key."""
    parts = presented.split("_", 2)
    if len(parts) != 3 or parts[0] != PREFIX or len(parts[1]) != _ID_HEX or not parts[2]:
        return None
    if any(c not in "0123456789abcdef" for c in parts[1]):
        return None
    return parts[1]


def matches(key: ApiKey, presented: str) -> bool:
    """Whether ``presented`` is ``key`` (constant-time over the hashes)."""
    return hmac.compare_digest(key.secret_sha256, _hash(presented))


def _row(row: Any) -> ApiKey:
    return ApiKey(key_id=row.key_id, name=row.name, roles=parse_roles([row.roles]), created_at=row.created_at,
                  created_by=row.created_by, secret_sha256=row.secret_sha256, expires_at=row.expires_at,
                  revoked_at=row.revoked_at, last_used_at=row.last_used_at, rotated_to=row.rotated_to)


def create_key(db: StateDB, name: str, roles: list[str] | tuple[str, ...], *, created_by: str,
               expires_days: float | None = None, now: float | None = None) -> tuple[str, ApiKey]:
    """A new key: returns ``(the key, its row)``. The key is shown this once; only its hash is kept."""
    name = name.strip()
    if not name or len(name) > NAME_LEN or any(c.isspace() and c != " " for c in name):
        raise ConfigError(f"a key name is 1–{NAME_LEN} printable characters, got {name!r}")
    if expires_days is not None and expires_days <= 0:
        raise ConfigError(f"--expires-days must be positive, got {expires_days:g}")
    now = time.time() if now is None else now
    key_id = secrets.token_hex(_ID_HEX // 2)
    key = f"{PREFIX}_{key_id}_{secrets.token_urlsafe(32)}"
    row = ApiKey(key_id=key_id, name=name, roles=parse_roles(roles), created_at=now, created_by=created_by[:NAME_LEN],
                 secret_sha256=_hash(key), expires_at=None if expires_days is None else now + expires_days * _DAY_S)
    with db.begin(write=True) as conn:
        conn.execute(api_keys.insert().values(
            key_id=row.key_id, name=row.name, roles=",".join(row.roles), secret_sha256=row.secret_sha256,
            created_at=row.created_at, created_by=row.created_by, expires_at=row.expires_at))
    return key, row


def lookup_key(db: StateDB, key_id: str) -> ApiKey | None:
    """The row of ``key_id``, or None."""
    with db.begin() as conn:
        row = conn.execute(select(api_keys).where(api_keys.c.key_id == key_id)).first()
    return None if row is None else _row(row)


def list_keys(db: StateDB, *, include_inactive: bool = False, now: float | None = None) -> list[ApiKey]:
    """Every key, oldest first; revoked and expired ones only with ``include_inactive``."""
    with db.begin() as conn:
        rows = conn.execute(select(api_keys).order_by(api_keys.c.created_at, api_keys.c.key_id)).all()
    keys = [_row(row) for row in rows]
    return keys if include_inactive else [key for key in keys if key.status(now) == "active"]


def find_keys(db: StateDB, ref: str, *, now: float | None = None) -> list[ApiKey]:
    """The active keys ``ref`` names: a key id, or a name (every active key of that name); ConfigError if none."""
    active = list_keys(db, now=now)
    found = [key for key in active if key.key_id == ref] or [key for key in active if key.name == ref]
    if not found:
        raise ConfigError(f"no active key named or with id {ref!r} (see `ratchet keys list --all`)")
    return found


def revoke_keys(db: StateDB, ref: str, *, now: float | None = None) -> list[ApiKey]:
    """Revoke the active keys ``ref`` names (a key id, or every active key of a name); returns them."""
    now = time.time() if now is None else now
    found = find_keys(db, ref, now=now)
    with db.begin(write=True) as conn:
        for key in found:
            conn.execute(update(api_keys).where(api_keys.c.key_id == key.key_id, api_keys.c.revoked_at.is_(None))
                         .values(revoked_at=now))
    return found


def rotate_key(db: StateDB, ref: str, *, created_by: str, grace_hours: float = 24.0,
               expires_days: float | None = None, now: float | None = None) -> tuple[str, ApiKey, ApiKey]:
    """Replace the newest active key ``ref`` names with a new key of the same name and roles.

    The old key keeps working for ``grace_hours`` (0: stops now) so clients can switch over; a new
    expiry, if any, is ``expires_days`` or the old key's lifetime. Returns ``(new key, new row, old row)``.
    """
    if grace_hours < 0:
        raise ConfigError(f"--grace-hours cannot be negative, got {grace_hours:g}")
    now = time.time() if now is None else now
    old = find_keys(db, ref, now=now)[-1]
    if expires_days is None and old.expires_at is not None:
        expires_days = (old.expires_at - old.created_at) / _DAY_S
    key, new = create_key(db, old.name, old.roles, created_by=created_by, expires_days=expires_days, now=now)
    ends = now + grace_hours * 3600.0
    with db.begin(write=True) as conn:
        values: dict[str, Any] = {"rotated_to": new.key_id}
        if old.expires_at is None or old.expires_at > ends:
            values["expires_at"] = ends
        conn.execute(update(api_keys).where(api_keys.c.key_id == old.key_id).values(**values))
    return key, new, old


def touch_key(db: StateDB, key_id: str, at: float) -> None:
    """Record that ``key_id`` was used at ``at`` (callers throttle this to about once a minute per key)."""
    with db.begin(write=True) as conn:
        conn.execute(update(api_keys).where(api_keys.c.key_id == key_id).values(last_used_at=at))
