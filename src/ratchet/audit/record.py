"""Recording actions: :func:`audit` for one entry, :func:`audited` around an action (ok, refused or failed).

Recording never undoes or hides the action it records: when the log cannot be written (a full
disk), the error is logged at ERROR level and the action's own result or exception stands.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ratchet.audit.context import current_context, resolve_actor
from ratchet.audit.entry import validate_action
from ratchet.audit.log import AuditLog
from ratchet.errors import RatchetError

if TYPE_CHECKING:
    from ratchet.config import Settings

__all__ = ["AuditNote", "audit", "audited", "home_of"]

log = logging.getLogger(__name__)


def home_of(where: Settings | Path | str) -> Path:
    """The home directory of ``where``: settings (their ``home_dir``) or a path."""
    return Path(where) if isinstance(where, str | Path) else where.home_dir


def audit(where: Settings | Path | str, action: str, *, target: str | None = None, outcome: str = "ok",
          reason: str | None = None, actor: str | None = None, source: str | None = None,
          client: str | None = None, details: Mapping[str, Any] | None = None) -> dict[str, Any] | None:
    """Append one entry to the audit log of ``where`` (settings or a home directory); returns it.

    ``actor``, ``source`` and ``client`` default to the current :func:`~ratchet.audit.audit_context`.
    Returns None (and logs the error) when the log cannot be written; a malformed ``action`` or
    ``outcome`` raises ValueError.
    """
    validate_action(action)
    context = current_context()
    try:
        return AuditLog(home_of(where)).append(action, actor=resolve_actor(actor), source=source or context.source
                                                or "library", target=target, outcome=outcome, reason=reason,
                                                client=client or context.client, details=details)
    except OSError:
        log.exception("could not write the audit entry %s %s (%s) to %s", action, target, outcome, home_of(where))
        return None


@dataclass
class AuditNote:
    """What the block of :func:`audited` adds to its entry: the target, a reason, details; ``skip`` (while set)
    records nothing, whatever the outcome."""

    target: str | None = None
    reason: str | None = None
    details: dict[str, Any] = field(default_factory=dict)
    skip: bool = False


@contextlib.contextmanager
def audited(where: Settings | Path | str, action: str, *, target: str | None = None, actor: str | None = None,
            source: str | None = None, details: Mapping[str, Any] | None = None,
            refused: tuple[type[BaseException], ...] = (RatchetError,)) -> Iterator[AuditNote]:
    """Record the block as one entry: ``ok`` when it ends normally, ``refused`` when it raises one of ``refused``
    (Ratchet's own errors: an illegal transition, a concurrent change, a non-empty target), ``failed`` for any
    other exception (re-raised either way). The block may fill in the :class:`AuditNote` it is given."""
    validate_action(action)
    note = AuditNote(target=target, details=dict(details or {}))
    kwargs = {"actor": actor, "source": source}
    try:
        yield note
    except Exception as exc:
        if not note.skip:
            audit(where, action, target=note.target, outcome="refused" if isinstance(exc, refused) else "failed",
                  reason=_reason(exc), details=note.details, **kwargs)
        raise
    if not note.skip:
        audit(where, action, target=note.target, reason=note.reason, details=note.details, **kwargs)


def _reason(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
