"""Roles an API key can hold, and which role each grants.

``predict`` calls programs, ``feedback`` scores and corrects served requests, ``read`` sees
programs, metrics and state, ``operator`` acts on rollouts (and reads), ``annotate`` works the
annotation queue (in the web console), ``admin`` does everything (keys, deletion, restore). A key
holds one or more roles.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal, get_args

from ratchet.errors import ConfigError

__all__ = ["PUBLIC", "ROLES", "Role", "grants", "parse_roles"]

Role = Literal["predict", "feedback", "read", "operator", "annotate", "admin"]
ROLES: tuple[Role, ...] = get_args(Role)
PUBLIC = "public"
"""What an endpoint anyone may call declares (liveness and readiness probes)."""

_IMPLIED: dict[str, frozenset[str]] = {
    "admin": frozenset(ROLES),
    "operator": frozenset({"operator", "read"}),
}


def grants(held: Iterable[str], needed: str) -> bool:
    """Whether a key holding ``held`` may call an endpoint that declares ``needed``."""
    if needed == PUBLIC:
        return True
    return any(needed in _IMPLIED.get(role, frozenset({role})) for role in held)


def parse_roles(values: Iterable[str]) -> tuple[Role, ...]:
    """Roles from the command line or the database (``"read,feedback"`` or separate values), validated and sorted."""
    roles = {part.strip() for value in values for part in value.split(",") if part.strip()}
    unknown = sorted(roles - set(ROLES))
    if unknown:
        raise ConfigError(f"unknown role(s) {', '.join(unknown)}: roles are {', '.join(ROLES)}")
    if not roles:
        raise ConfigError(f"a key needs at least one role ({', '.join(ROLES)})")
    return tuple(role for role in ROLES if role in roles)
