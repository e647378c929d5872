"""Who is acting and through what: the defaults an audit entry takes when its caller does not say.

The ``ratchet`` command sets them once per process (``operator:<user>@<host>``, source ``cli``);
a cycle's child processes record ``cycle:<run_id>``; an HTTP request can scope its own
(``audit_context(actor=key_name, source="http", client=address)``). Outside all of these an
entry names the process (``process:<user>@<host>:<pid>``, source ``library``).
"""

from __future__ import annotations

import contextlib
import getpass
import os
import socket
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass, replace

__all__ = ["AuditContext", "audit_context", "current_context", "operator_actor", "process_actor", "resolve_actor",
           "set_audit_defaults"]


@dataclass(frozen=True)
class AuditContext:
    """The actor, source (``cli``, ``http``, ``controller``, ``cycle``, ``library``) and client address to record."""

    actor: str | None = None
    source: str | None = None
    client: str | None = None


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (a container running as a bare uid)
        return f"uid{os.getuid()}"


def operator_actor() -> str:
    """``operator:<user>@<host>``: a person at a terminal."""
    return f"operator:{_user()}@{socket.gethostname()}"


def process_actor() -> str:
    """``process:<user>@<host>:<pid>``: code that called Ratchet without saying who it acts for."""
    return f"process:{_user()}@{socket.gethostname()}:{os.getpid()}"


_process_defaults = AuditContext()
_scoped: ContextVar[AuditContext | None] = ContextVar("ratchet_audit_context", default=None)


def set_audit_defaults(*, actor: str | None = None, source: str | None = None) -> None:
    """This process's defaults (the CLI's root command, a cycle's child process)."""
    global _process_defaults
    _process_defaults = AuditContext(actor=actor, source=source)


@contextlib.contextmanager
def audit_context(*, actor: str | None = None, source: str | None = None, client: str | None = None
                  ) -> Iterator[AuditContext]:
    """Within the block (this thread or task), record ``actor``/``source``/``client`` unless a call names its own."""
    outer = current_context()
    scoped = replace(outer, **{k: v for k, v in (("actor", actor), ("source", source), ("client", client))
                               if v is not None})
    token = _scoped.set(scoped)
    try:
        yield scoped
    finally:
        _scoped.reset(token)


def current_context() -> AuditContext:
    """The innermost :func:`audit_context`, else the process defaults, with the fallbacks filled in."""
    base = _scoped.get() or _process_defaults
    return AuditContext(actor=base.actor or process_actor(), source=base.source or "library", client=base.client)


def resolve_actor(actor: str | None) -> str:
    """The actor to record: a bare ``operator`` (the library's default) becomes ``operator:<user>@<host>``."""
    if actor is None:
        return current_context().actor or process_actor()
    if actor == "operator":
        context = current_context().actor or ""
        return context if context.startswith("operator:") else operator_actor()
    return actor
