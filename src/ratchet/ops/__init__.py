"""Operations: the scheduler, retention cleanup, backup and restore."""

from ratchet.ops.backup import BackupResult, RestoreResult, create_backup, restore_backup, verify_backup
from ratchet.ops.cleanup import CleanupReport, CleanupStep, run_cleanup
from ratchet.ops.scheduler import JOBS, JobRun, Scheduler, crontab_lines, job_commands, job_triggers

__all__ = [
    "JOBS",
    "BackupResult",
    "CleanupReport",
    "CleanupStep",
    "JobRun",
    "RestoreResult",
    "Scheduler",
    "create_backup",
    "crontab_lines",
    "job_commands",
    "job_triggers",
    "restore_backup",
    "run_cleanup",
    "verify_backup",
]
