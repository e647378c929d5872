"""The audit log's chain: critical when ``ratchet audit verify`` would fail (seed 004's monthly WORM review)."""

from __future__ import annotations

from ratchet.audit import verify_audit
from ratchet.config import Settings
from ratchet.monitor.alerts import Alert
from ratchet.monitor.results import CheckResult

__all__ = ["NAME", "check_audit"]

NAME = "audit"
_SHOWN = 5


def check_audit(settings: Settings) -> CheckResult:
    """Verify ``<home>/audit/`` end to end; a broken chain (edited, removed, inserted, reordered entries, a truncated
    or deleted file) is a critical "Audit Log Broken" alert naming the first breaks."""
    report = verify_audit(settings.home_dir)
    result = CheckResult(NAME, scopes=[NAME])
    result.summary = {"ok": report.ok, "entries": report.entries, "files": len(report.files),
                      "last_seq": report.last_seq, "problems": len(report.errors),
                      "warnings": len(report.problems) - len(report.errors)}
    if report.ok:
        return result
    shown = [str(p) for p in report.errors[:_SHOWN]]
    more = f" (and {len(report.errors) - _SHOWN} more)" if len(report.errors) > _SHOWN else ""
    message = (f"The audit log under {report.directory} is broken: {len(report.errors)} problem(s){more}: "
               f"{'; '.join(shown)}. Find out who changed it (`ratchet audit verify`), keep a copy, and restore the "
               "files from a backup if they were damaged.")
    result.alerts.append(Alert("critical", "Audit Log Broken", message,
                               {"directory": str(report.directory), "problems": shown, "count": len(report.errors),
                                "check": NAME}, condition=f"{NAME}/broken"))
    return result
