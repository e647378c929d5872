"""API keys and roles: who may call which endpoint and run which command."""

from ratchet.auth.keys import ApiKey, create_key, find_keys, key_id_of, list_keys, revoke_keys, rotate_key
from ratchet.auth.roles import PUBLIC, ROLES, Role, grants, parse_roles

__all__ = ["PUBLIC", "ROLES", "ApiKey", "Role", "create_key", "find_keys", "grants", "key_id_of", "list_keys",
           "parse_roles", "revoke_keys", "rotate_key"]
