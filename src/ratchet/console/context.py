"""What every console page works with: settings, programs, the state database, the key checker, the session signer.

Under ``ratchet serve`` they come from the serving runtime (built at startup); under ``ratchet ui`` the console's
own lifespan makes them. Either way they are built once per process and kept on ``app.state.console``.
"""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import Request

from ratchet.config import Settings
from ratchet.console.session import SessionSigner
from ratchet.programs.registry import ProgramRegistry
from ratchet.serve.auth import Authenticator
from ratchet.serve.rate_limit import TokenBuckets
from ratchet.store.db import StateDB
from ratchet.store.secrets import derived_key

__all__ = ["ConsoleContext", "console_context"]

SESSION_HOURS = 12.0
LOGINS_PER_MINUTE = 10.0
LOGIN_BURST = 5


@dataclass
class ConsoleContext:
    """The console's shared state in one process."""

    settings: Settings
    registry: ProgramRegistry
    db: StateDB
    auth: Authenticator
    signer: SessionSigner
    logins: TokenBuckets  # login attempts per client address

    @classmethod
    def build(cls, settings: Settings, registry: ProgramRegistry, db: StateDB, auth: Authenticator
              ) -> ConsoleContext:
        return cls(settings=settings, registry=registry, db=db, auth=auth,
                   signer=SessionSigner(derived_key(settings, "console-session"), ttl_s=SESSION_HOURS * 3600),
                   logins=TokenBuckets(10_000))


def console_context(request: Request) -> ConsoleContext:
    """The console's state for ``request``'s app (made from the serving runtime the first time)."""
    state = request.app.state
    ctx: ConsoleContext | None = getattr(state, "console", None)
    if ctx is None:
        runtime = state.runtime
        ctx = ConsoleContext.build(runtime.settings, runtime.registry, runtime.db, state.auth)
        state.console = ctx
    return ctx
