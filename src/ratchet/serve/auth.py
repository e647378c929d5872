"""Who is calling: API keys checked on every request, and the role each endpoint declares.

Every route is declared with :func:`role_route` (``app.get(path, **role_route("read"))``) on an app whose
routes are :class:`RoleRoute` (the key is checked before the body is read): its
dependency finds the key in ``X-API-Key`` or ``Authorization: Bearer``, checks it (a revoked or
expired key stops working within ``auth.cache_seconds``), refuses 401 without a valid key and 403
when the key lacks the role, and leaves the :class:`Principal` on ``request.state.principal``.
Refusals are audited (``auth.failure`` / ``auth.denied``, at most one entry per client and reason a
minute, with the count of the ones folded into it).

Keys are required when :func:`auth_required` says so: ``auth.mode = "required"``, or ``"auto"``
(the default) with ``serve.host`` not a loopback address. Otherwise a request without a key acts as
``local`` with every role (a laptop); a request that shows a key is still held to it.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import threading
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from fastapi import Depends, HTTPException, Request, Response, Security
from fastapi.routing import APIRoute
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from ratchet.audit import audit
from ratchet.auth import PUBLIC, ROLES, ApiKey, grants, key_id_of
from ratchet.auth.keys import lookup_key, matches, touch_key
from ratchet.config import Settings
from ratchet.serve.api_models import error_responses
from ratchet.store.db import StateDB

__all__ = ["ROLE_EXTENSION", "Authenticator", "Principal", "Refusal", "RoleRoute", "auth_required", "authorize",
           "is_loopback", "presented_key", "role_route"]

log = logging.getLogger(__name__)

ROLE_EXTENSION = "x-ratchet-role"
"""The OpenAPI extension that names the role an operation requires (``public`` for none)."""

_API_KEY = APIKeyHeader(name="X-API-Key", auto_error=False, description="a Ratchet API key (`ratchet keys create`)")
_BEARER = HTTPBearer(auto_error=False, description="the same key as `Authorization: Bearer <key>`")
_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="ratchet"'}
_TOUCH_EVERY_S = 60.0
_AUDIT_EVERY_S = 60.0
_MISSING_MESSAGE = "an API key is required: send it as X-API-Key or Authorization: Bearer"


@dataclass(frozen=True)
class Principal:
    """Who a request acts for: a key (``name``, ``key_id``) or ``local`` when keys are not required."""

    name: str
    roles: tuple[str, ...]
    key_id: str | None = None

    @property
    def authenticated(self) -> bool:
        """Whether a key vouches for the request (False for ``local`` on an open loopback server)."""
        return self.key_id is not None

    @property
    def actor(self) -> str:
        """How the audit log names it: ``key:<name>/<key id>`` or ``local``."""
        return f"key:{self.name}/{self.key_id}" if self.key_id else "local"


LOCAL = Principal(name="local", roles=ROLES)


def is_loopback(host: str) -> bool:
    """Whether binding ``host`` only accepts connections from this machine."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def auth_required(settings: Settings) -> bool:
    """Whether requests need a key: ``auth.mode`` required, or auto on a non-loopback ``serve.host``."""
    mode = settings.auth.mode
    return mode == "required" or (mode == "auto" and not is_loopback(settings.serve.host))


class Refusal(Exception):
    """Why a presented key was refused: the HTTP status (401, 403), a short reason and the message."""

    def __init__(self, status: int, reason: str, message: str, key_id: str | None = None) -> None:
        super().__init__(message)
        self.status, self.reason, self.key_id = status, reason, key_id


class Authenticator:
    """Checks presented keys against the state database, with a short cache, and audits refusals."""

    def __init__(self, settings: Settings, db: StateDB, *, required: bool | None = None) -> None:
        self.settings = settings
        self.db = db
        self.required = auth_required(settings) if required is None else required
        self.cache_s = settings.auth.cache_seconds
        self._cache: dict[str, tuple[ApiKey | None, float]] = {}
        self._touched: dict[str, float] = {}
        self._refusals: dict[tuple[str, str], tuple[float, int]] = {}
        self._lock = threading.Lock()

    def principal(self, presented: str | None, now: float | None = None) -> Principal:
        """The principal ``presented`` (a key or None) stands for; raises ``Refusal`` (401) when it stands for none."""
        now = time.time() if now is None else now
        if not presented:
            if self.required:
                raise Refusal(401, "missing", _MISSING_MESSAGE)
            return LOCAL
        key_id = key_id_of(presented)
        if key_id is None:
            raise Refusal(401, "malformed", "the API key is not valid")
        key = self._key(key_id, now)
        if key is None or not matches(key, presented):
            raise Refusal(401, "unknown", "the API key is not valid", key_id)
        status = key.status(now)
        if status != "active":
            raise Refusal(401, status, f"the API key is {status}", key_id)
        self._touch(key_id, now)
        return Principal(name=key.name, roles=key.roles, key_id=key_id)

    def principal_of_key_id(self, key_id: str, now: float | None = None) -> Principal | None:
        """The principal of a key already checked once (a console session names its id): None when the key is
        unknown, revoked or expired by now."""
        now = time.time() if now is None else now
        key = self._key(key_id, now)
        if key is None or key.status(now) != "active":
            return None
        self._touch(key_id, now)
        return Principal(name=key.name, roles=key.roles, key_id=key_id)

    def _key(self, key_id: str, now: float) -> ApiKey | None:
        with self._lock:
            cached = self._cache.get(key_id)
        if cached is not None and now - cached[1] < self.cache_s:
            return cached[0]
        key = lookup_key(self.db, key_id)
        with self._lock:
            if len(self._cache) > 10_000:  # unknown ids sent by a scanner must not grow it without bound
                self._cache.clear()
            self._cache[key_id] = (key, now)
        return key

    def _touch(self, key_id: str, now: float) -> None:
        with self._lock:
            due = now - self._touched.get(key_id, 0.0) >= _TOUCH_EVERY_S
            if due:
                self._touched[key_id] = now
        if due:
            try:
                touch_key(self.db, key_id, now)
            except Exception:  # last-used is bookkeeping: never refuse a request over it
                log.warning("could not record the use of key %s", key_id, exc_info=True)

    def refused(self, refusal: Refusal, *, client: str | None, path: str, role: str, now: float | None = None) -> None:
        """Audit a refusal: the first per client and reason each minute, with how many were folded into it."""
        now = time.time() if now is None else now
        action = "auth.denied" if refusal.status == 403 else "auth.failure"
        slot = (client or "?", f"{action}:{refusal.reason}")
        with self._lock:
            last, folded = self._refusals.get(slot, (0.0, 0))
            if now - last < _AUDIT_EVERY_S:
                self._refusals[slot] = (last, folded + 1)
                return
            if len(self._refusals) > 10_000:
                self._refusals.clear()
            self._refusals[slot] = (now, 0)
        audit(self.settings, action, target=path, outcome="refused", reason=refusal.reason,
              actor=f"key:{refusal.key_id}" if refusal.key_id else "anonymous", source="http", client=client,
              details={"role": role, "status": refusal.status, "repeats_folded": folded})


async def _presented(api_key: str | None = Security(_API_KEY),
                     bearer: HTTPAuthorizationCredentials | None = Security(_BEARER)) -> str | None:
    return api_key or (bearer.credentials if bearer is not None else None)


def presented_key(request: Request) -> str | None:
    """The key a request shows, read as the OpenAPI security dependencies read it (``X-API-Key``, else
    ``Authorization: Bearer``)."""
    api_key = request.headers.get("x-api-key")
    if api_key:
        return api_key
    scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
    return credentials.strip() or None if scheme.lower() == "bearer" else None


async def authorize(request: Request, role: str, presented: str | None) -> Principal:
    """The principal ``request`` acts for when its key holds ``role`` (kept on ``request.state``: checked once per
    request); an audited ``HTTPException`` 401 (no valid key) or 403 (the key lacks the role) otherwise."""
    known: Principal | None = getattr(request.state, "principal", None)
    if known is not None:
        return known
    auth: Authenticator = request.app.state.auth
    client = request.client.host if request.client else None
    try:
        principal = await asyncio.to_thread(auth.principal, presented)
        if not grants(principal.roles, role):
            raise Refusal(403, "role", f"this key does not hold the '{role}' role", principal.key_id)
    except Refusal as refusal:
        await asyncio.to_thread(auth.refused, refusal, client=client, path=request.url.path, role=role)
        raise HTTPException(status_code=refusal.status, detail=str(refusal),
                            headers=_CHALLENGE if refusal.status == 401 else None) from None
    request.state.principal = principal
    return principal


def _dependency(role: str) -> Any:
    async def check(request: Request, presented: str | None = Depends(_presented)) -> Principal:
        return await authorize(request, role, presented)

    return Depends(check)


class RoleRoute(APIRoute):
    """A route that checks the key for its declared role before FastAPI reads and validates the body.

    FastAPI parses a JSON body before it solves dependencies, so without this a request with no key
    but a body that is not JSON (or not UTF-8) was answered 422, not 401 (found by fuzzing the API
    without a key), and the server parsed bodies of anonymous requests. The role dependency stays
    (it documents the security schemes and hands the principal to the endpoint); it finds the
    principal already checked. Set as the app's ``router.route_class`` before routes are added.
    """

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        role = (self.openapi_extra or {}).get(ROLE_EXTENSION)
        if role is None or role == PUBLIC:
            return handler

        async def key_first(request: Request) -> Response:
            await authorize(request, role, presented_key(request))
            return await handler(request)

        return key_first


def role_route(role: str, *, responses: dict[int | str, Any] | None = None) -> dict[str, Any]:
    """Keyword arguments that declare a route's role: its key check, its OpenAPI extension and its refusals
    (added to the route's own ``responses``)."""
    if role != PUBLIC and role not in ROLES:
        raise ValueError(f"unknown role {role!r}")
    if role == PUBLIC:
        return {"openapi_extra": {ROLE_EXTENSION: PUBLIC}, "responses": dict(responses or {})}
    return {"dependencies": [_dependency(role)], "openapi_extra": {ROLE_EXTENSION: role},
            "responses": {**(responses or {}),
                          **error_responses(401, 403, s401="no valid API key (unauthorized)",
                                            s403=f"the key lacks the '{role}' role (forbidden)")}}
