"""The service secret and the keys derived from it, one per purpose.

One secret keys everything a client must not be able to compute: the signature of the request
ids the service issues (:mod:`ratchet.serve.request_ids`) and the pseudonyms of user ids. It comes
from ``RATCHET_SECRET_KEY`` (set it, identical, on every host that serves one state database) or,
without one, from ``<home>/secrets/service.key``: 32 random bytes written once, owner-only, by the
first process that needs them (any number of workers may race; one file wins and all read it).
The file is part of backups so that a restored home still recognises its request ids and still
finds a user's records by pseudonym.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
import secrets
from pathlib import Path

from ratchet.config import Settings
from ratchet.errors import ConfigError
from ratchet.store.private import PRIVATE_READ_ONLY, make_private_dir

__all__ = ["SECRET_FILE", "derived_key", "service_secret"]

SECRET_FILE = Path("secrets") / "service.key"
_MIN_BYTES = 16


def service_secret(settings: Settings) -> bytes:
    """The service secret: ``RATCHET_SECRET_KEY``, else the home's generated key file (made on first use)."""
    if settings.secret_key is not None:
        value = settings.secret_key.get_secret_value().encode("utf-8")
        if len(value) < _MIN_BYTES:
            raise ConfigError(f"RATCHET_SECRET_KEY is too short: use at least {_MIN_BYTES} random bytes "
                              "(e.g. `openssl rand -hex 32`)")
        return value
    return _home_secret(settings.home_dir / SECRET_FILE)


def derived_key(settings: Settings, purpose: str) -> bytes:
    """A key for one ``purpose`` (``"request-ids"``, ``"user-pseudonyms"``): HMAC of the purpose under the secret."""
    return hmac.new(service_secret(settings), f"ratchet:{purpose}".encode(), hashlib.sha256).digest()


def _home_secret(path: Path) -> bytes:
    with contextlib.suppress(FileNotFoundError):
        return _read(path)
    make_private_dir(path.parent)
    staged = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(staged, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, PRIVATE_READ_ONLY)
    try:
        with os.fdopen(fd, "w", encoding="ascii") as handle:
            handle.write(secrets.token_hex(32) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        with contextlib.suppress(FileExistsError):  # another process won the race: its key is the key
            os.link(staged, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(staged)
    return _read(path)


def _read(path: Path) -> bytes:
    value = path.read_text(encoding="ascii").strip().encode("ascii")
    if len(value) < _MIN_BYTES:
        raise ConfigError(f"{path} holds no usable secret (shorter than {_MIN_BYTES} bytes): delete it to make a "
                          "new one, or set RATCHET_SECRET_KEY")
    return value
