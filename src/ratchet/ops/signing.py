"""Keyed signatures of backup manifests: HMAC-SHA256 with a secret from the environment.

The manifest lists every member's size and SHA-256, so signing the manifest signs the whole
archive. The key comes only from ``RATCHET_BACKUP_KEY`` (``Settings.backup_key``, never from a
file). Without one, ``ratchet backup`` writes an unsigned archive, which ``ratchet restore``
refuses unless told ``allow_unsigned``; a signed archive must verify with the configured key.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

from ratchet.errors import BackupError

__all__ = ["ALGORITHM", "KEY_ENV", "check_signature", "key_id", "sign_manifest"]

ALGORITHM = "hmac-sha256"
KEY_ENV = "RATCHET_BACKUP_KEY"
_MIN_KEY_BYTES = 16


def _canonical(manifest: dict[str, Any]) -> bytes:
    """The manifest without its signature, as canonical JSON (sorted keys, no spaces)."""
    body = {key: value for key, value in manifest.items() if key != "signature"}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def _key_bytes(key: str) -> bytes:
    data = key.encode("utf-8")
    if len(data) < _MIN_KEY_BYTES:
        raise BackupError(f"{KEY_ENV} is too short: use at least {_MIN_KEY_BYTES} random bytes "
                          "(e.g. `openssl rand -hex 32`)")
    return data


def key_id(key: str) -> str:
    """A short public fingerprint of ``key`` (names which key signed an archive, reveals nothing of it)."""
    return hmac.new(_key_bytes(key), b"ratchet backup key id", hashlib.sha256).hexdigest()[:16]


def sign_manifest(manifest: dict[str, Any], key: str) -> dict[str, Any]:
    """``manifest`` with a ``signature`` entry: HMAC-SHA256 of its canonical JSON under ``key``."""
    digest = hmac.new(_key_bytes(key), _canonical(manifest), hashlib.sha256).hexdigest()
    return {**manifest, "signature": {"algorithm": ALGORITHM, "key_id": key_id(key), "value": digest}}


def check_signature(manifest: dict[str, Any], key: str | None, *, allow_unsigned: bool = False) -> str:
    """``"signed"`` or ``"unsigned"`` (only with ``allow_unsigned``); ``BackupError`` for anything else.

    A signed archive needs ``key`` and must match it exactly; an unsigned one is refused unless
    ``allow_unsigned``, because anyone could have written or changed it.
    """
    signature = manifest.get("signature")
    if signature is None:
        if allow_unsigned:
            return "unsigned"
        raise BackupError(f"the archive is not signed (it was written without {KEY_ENV}): anyone could have "
                          "changed it. Restore it only if you trust where it came from, with --allow-unsigned")
    if (not isinstance(signature, dict) or signature.get("algorithm") != ALGORITHM
            or not isinstance(signature.get("value"), str)):
        raise BackupError(f"the archive's signature is malformed (expected {ALGORITHM})")
    if not key:
        raise BackupError(f"the archive is signed but {KEY_ENV} is not set: set it to the key used by "
                          "`ratchet backup` to verify it")
    expected = hmac.new(_key_bytes(key), _canonical(manifest), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, signature["value"]):
        if signature.get("key_id") != key_id(key):
            raise BackupError(f"the archive was signed with another key (key id {signature.get('key_id')}, "
                              f"{KEY_ENV} has {key_id(key)}): refused")
        raise BackupError("the archive's signature does not match: it was changed after `ratchet backup` "
                          "(refused)")
    return "signed"
