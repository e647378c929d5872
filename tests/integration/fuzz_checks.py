"""Schemathesis checks of Ratchet's own, loaded by ``st run`` through ``SCHEMATHESIS_HOOKS=fuzz_checks``
(``tests/integration/test_api_fuzz.py`` puts this folder on ``PYTHONPATH``)."""

from __future__ import annotations

import schemathesis

ROLE_EXTENSION = "x-ratchet-role"  # ratchet.serve.auth.ROLE_EXTENSION (this module runs in st's process)


@schemathesis.check
def refused_without_a_key(ctx, response, case) -> bool | None:
    """A request without a key to an operation that declares a role is answered 401, whatever else it holds."""
    role = case.operation.definition.raw.get(ROLE_EXTENSION)
    if role in (None, "public") or case.method.upper() != case.operation.method.upper():
        return None  # a public probe, or an undocumented method (405: Schemathesis' own check)
    if response.status_code != 401:
        raise AssertionError(f"{case.operation.label} needs the '{role}' role and answered "
                             f"{response.status_code} to a request without a key")
    return True
