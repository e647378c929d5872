"""Right to deletion: remove one user's records everywhere Ratchet keeps them (see :mod:`.service`)."""

from ratchet.privacy.report import STATUSES, DeletionReport, DeletionStep
from ratchet.privacy.service import (
    DELETE_ACTION,
    delete_pseudonym_data,
    delete_user_data,
    reapply_deletions,
    recorded_deletions,
)

__all__ = [
    "DELETE_ACTION",
    "STATUSES",
    "DeletionReport",
    "DeletionStep",
    "delete_pseudonym_data",
    "delete_user_data",
    "reapply_deletions",
    "recorded_deletions",
]
