"""Sharing versions saved before the move to PostgreSQL: ``ratchet programs publish``.

With SQLite the files under ``<home>/programs`` are the versions; with PostgreSQL every new version also
goes to the ``program_versions`` table, from which other hosts fetch it (:mod:`ratchet.programs.version_rows`).
Versions saved before the move exist only as files on the first host. Publishing copies each one that the
database lacks, after checking its fingerprint: a damaged version is never shared, and a number that the
database already holds with a different fingerprint (another host saved its own ``vN`` meanwhile) is
reported as a conflict and left alone. Re-running publishes nothing twice.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any, Literal

from ratchet.errors import ConfigError
from ratchet.programs.versions import ProgramVersion, VersionStore, fingerprint

__all__ = ["Published", "publish_versions"]

Outcome = Literal["published", "already", "conflict", "damaged"]


@dataclass(frozen=True)
class Published:
    """What happened to one local version."""

    signature: str
    version: str
    outcome: Outcome
    detail: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _publish_one(store: VersionStore, signature: str, version: str, recorded: str | None) -> Published:
    assert store.rows is not None
    directory = store.root / signature / version
    try:
        meta = ProgramVersion.from_dict(json.loads((directory / "metadata.json").read_text()))
        whole = json.loads((directory / "program.json").read_text())
        actual = fingerprint(store.state(signature, version), code=meta.code_version, lm=meta.lm,
                             adapter=meta.adapter, dspy_version=meta.dspy_version)
    except (OSError, ValueError, TypeError, KeyError) as exc:
        return Published(signature, version, "damaged", f"unreadable: {exc}")
    if actual != meta.fingerprint:
        return Published(signature, version, "damaged", f"its state does not match its fingerprint "
                         f"({actual[:12]} ≠ {meta.fingerprint[:12]})")
    if recorded is None and store.rows.claim(signature, version, meta.fingerprint, meta.to_dict(), whole):
        return Published(signature, version, "published")
    if recorded is None:  # another process claimed it between the read and the insert
        row = store.rows.get(signature, version)
        recorded = row.fingerprint if row is not None else ""
    if recorded == meta.fingerprint:
        return Published(signature, version, "already")
    return Published(signature, version, "conflict", f"the database holds another {version} "
                     f"(fingerprint {recorded[:12]}, here {meta.fingerprint[:12]}); left as it is")


def publish_versions(store: VersionStore, signatures: Iterable[str]) -> list[Published]:
    """Copy every local version of ``signatures`` that the shared database lacks into it."""
    if store.rows is None:
        raise ConfigError("versions are shared through PostgreSQL only (database_url = \"postgresql+psycopg://…\"); "
                          "with SQLite the files are the versions and there is nothing to publish")
    out: list[Published] = []
    for signature in signatures:
        names = store.local_names(signature)
        recorded = store.rows.fingerprints([(signature, v) for v in names])
        out.extend(_publish_one(store, signature, v, recorded.get((signature, v))) for v in names)
    return out
