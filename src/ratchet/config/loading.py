"""Find, read and validate the configuration; turn mistakes into clear errors."""

from __future__ import annotations

import os
import tomllib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from ratchet.config.secrets import mask_secrets, url_credentials
from ratchet.config.settings import SECRET_KEYS, Settings
from ratchet.errors import ConfigError

__all__ = ["CONFIG_ENV", "CONFIG_FILENAME", "find_config_file", "load_settings", "refuse_file_secrets"]

CONFIG_FILENAME = "ratchet.toml"
CONFIG_ENV = "RATCHET_CONFIG"
_ENV_PREFIX = "RATCHET_"
_NOT_URLS = frozenset({"telemetry.redact_patterns", "guard.rules"})
"""Keys whose strings are never URLs (regular expressions may look like ``https://[^:]+:[^@]+@``)."""


def find_config_file(explicit: str | Path | None = None) -> Path | None:
    """The config file to read: ``explicit``, else ``$RATCHET_CONFIG``, else ``./ratchet.toml`` if present."""
    chosen = explicit or os.environ.get(CONFIG_ENV)
    if chosen:
        path = Path(chosen).expanduser()
        if not path.is_file():
            source = "--config" if explicit else CONFIG_ENV
            raise ConfigError(f"{source}: config file {path} does not exist")
        return path.resolve()
    default = Path.cwd() / CONFIG_FILENAME
    return default.resolve() if default.is_file() else None


def load_settings(path: str | Path | None = None) -> Settings:
    """Load settings from the config file (see :func:`find_config_file`) and ``RATCHET_*`` variables."""
    config_file = find_config_file(path)
    data = _read_toml(config_file) if config_file else {}
    if config_file is not None:
        refuse_file_secrets(data, config_file)
    try:
        settings = Settings(**data)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, config_file, os.environ)) from None
    settings._config_file = config_file
    local = settings.lm.local
    if local.model_path is not None and not local.model_path.expanduser().is_absolute():
        local.model_path = settings.resolve(local.model_path)  # like `home`: relative to the config file
    return settings


def refuse_file_secrets(data: Mapping[str, Any], config_file: Path) -> None:
    """Raise ``ConfigError`` when the file's ``data`` holds a secret: a secret key, or a URL with a credential.

    The message names the key, the file and the fix; it never shows the secret.
    """
    for dotted in SECRET_KEYS:
        section, _, key = dotted.partition(".")
        if (key in data[section] if isinstance(data.get(section), dict) else not key and section in data):
            raise ConfigError(f"{config_file}: key '{dotted}' is a secret: set the environment variable "
                              f"{_env_name(dotted.split('.'))} instead of writing it in the file")
    for path, value in _strings(data):
        dotted = ".".join(path)
        found = url_credentials(value)
        if not found and dotted == "database_url" and _sqlalchemy_password(value):
            found = ["password"]
        if found:
            raise ConfigError(_credential_message(config_file, path, found))


def _credential_message(config_file: Path, path: list[str], found: list[str]) -> str:
    dotted = ".".join(path)
    message = (f"{config_file}: key '{dotted}' holds a credential in its URL ({', '.join(found)}); secrets are "
               f"never read from the config file. Remove it from the file and set the environment variable "
               f"{_env_name(path)} to the full URL instead")
    if dotted == "database_url":
        message += (", or keep the URL here without the password and give it to PostgreSQL through PGPASSWORD "
                    "or ~/.pgpass (psycopg reads both when the URL has no password)")
    return message


def _strings(node: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[list[str], str]]:
    """``(key path, value)`` of every string in TOML data (list items report their list's key)."""
    if ".".join(path) in _NOT_URLS or (path[:2] == ("guard", "signatures") and path[-1:] == ("rules",)):
        return
    if isinstance(node, str):
        yield list(path), node
    elif isinstance(node, dict):
        for key, value in node.items():
            yield from _strings(value, (*path, str(key)))
    elif isinstance(node, list):
        for value in node:
            yield from _strings(value, path)


def _sqlalchemy_password(url: str) -> bool:
    """True when SQLAlchemy would read a password from ``url`` (its parser differs from URL standards)."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        return bool(make_url(url).password)
    except (ArgumentError, ValueError, TypeError):
        return False


def _env_name(path: list[str]) -> str:
    """The ``RATCHET_*`` variable of a settings key path (``["lm", "api_base"]`` → ``RATCHET_LM__API_BASE``)."""
    return _ENV_PREFIX + "__".join(part.upper() for part in path)


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config file: {exc.strerror}") from None
    try:
        return tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: config file is not valid UTF-8") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None


def _describe(exc: ValidationError, config_file: Path | None, env: Mapping[str, str]) -> str:
    lines = []
    for err in exc.errors():
        loc = [str(part) for part in err["loc"]]
        key = ".".join(loc)
        env_name = _env_name(loc)
        env_keys = {k.upper() for k in env}
        if env_name in env_keys:
            source = f"environment variable {env_name}"
        else:
            source = str(config_file) if config_file else "configuration"
        if err["type"] == "extra_forbidden":
            lines.append(f"{source}: unknown key '{key}'")
            continue
        if not loc:  # a rule across keys: its message names them
            lines.append(f"{source}: {err['msg']}")
            continue
        expected = err["msg"]
        got = mask_secrets(err.get("input"), loc[-1] if loc else "")  # never echo a secret
        shown = f" (got {got!r})" if got is not None and not isinstance(got, dict) else ""
        lines.append(f"{source}: key '{key}': {expected}{shown}")
    return "invalid configuration:\n  " + "\n  ".join(lines) if len(lines) > 1 else lines[0]
