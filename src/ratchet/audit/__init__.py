"""The audit log: an append-only, hash-chained record of every operator and automatic action.

Who did what, to what, when, from where, and how it ended — in daily JSON Lines files under
``<home>/audit/`` that ``ratchet audit verify`` checks end to end. Record with :func:`audit`
(one entry) or :func:`audited` (around an action: ok, refused or failed)::

    from ratchet.audit import audit, audited

    audit(settings, "keys.create", target="ci-bot", details={"roles": ["predict"]})
    with audited(settings, "dataset.archive", target=signature) as note:
        note.details["versions"] = archive(...)
"""

from ratchet.audit.context import (
    AuditContext,
    audit_context,
    current_context,
    operator_actor,
    process_actor,
    resolve_actor,
    set_audit_defaults,
)
from ratchet.audit.entry import GENESIS, OUTCOMES, entry_hash
from ratchet.audit.log import AUDIT_DIRNAME, AuditLog
from ratchet.audit.query import read_entries
from ratchet.audit.record import AuditNote, audit, audited
from ratchet.audit.verify import AuditFile, AuditProblem, AuditReport, verify_audit

__all__ = [
    "AUDIT_DIRNAME",
    "GENESIS",
    "OUTCOMES",
    "AuditContext",
    "AuditFile",
    "AuditLog",
    "AuditNote",
    "AuditProblem",
    "AuditReport",
    "audit",
    "audit_context",
    "audited",
    "current_context",
    "entry_hash",
    "operator_actor",
    "process_actor",
    "read_entries",
    "resolve_actor",
    "set_audit_defaults",
    "verify_audit",
]
