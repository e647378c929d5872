"""Credentials in configuration values: find them, and mask them before anything is printed or logged.

Secrets reach Ratchet only through the environment. Two kinds hide in ordinary-looking values:
keys whose *name* says secret (``smtp_password``, ``api_key``) and URLs that carry a password,
whatever their key (``postgresql+psycopg://ratchet:pw@db/ratchet``, ``https://h/v1?api_key=…``).
Every place that shows a URL (``ratchet config show``, ``StateDB.url``, log lines, backup
manifests, error messages) passes it through :func:`mask_url` or :func:`mask_urls_in_text`::

    >>> mask_url("postgresql+psycopg://ratchet:s3cret@db/ratchet?sslmode=require&sslpassword=x")
    'postgresql+psycopg://ratchet:********@db/ratchet?sslmode=require&sslpassword=********'

Only the password is masked: the user name, host, path and other parameters stay readable. A ``?``
or ``#`` in a password must be percent-encoded (``%3F``, ``%23``), as URLs require.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any

__all__ = ["MASK", "is_secret_key", "mask_secrets", "mask_url", "mask_urls_in_text", "url_credentials"]

MASK = "********"

_SECRET_KEY = re.compile(r"(password|secret|token|api_key$|webhook_url|credential|^headers$)", re.IGNORECASE)
_SECRET_WORDS = frozenset({"pass", "pwd", "secret", "token", "key", "apikey", "accesskey", "sig", "signature",
                           "credential", "credentials"})
_URL = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*)://(?P<head>[^?#]*)"
                  r"(?:\?(?P<query>[^#]*))?(?:#(?P<fragment>.*))?$", re.DOTALL)
_USERINFO = re.compile(r"^(?P<user>[^:/@]*):(?P<password>.*)@", re.DOTALL)  # greedy: up to the last "@"
_URL_IN_TEXT = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>`]+")


def is_secret_key(key: str) -> bool:
    """True for a settings key that holds a secret (``*_env`` keys name a variable and are not secret)."""
    return bool(_SECRET_KEY.search(key)) and not key.endswith("_env")


def _is_secret_param(name: str) -> bool:
    """True for a query parameter that carries a credential: ``password``, ``sslpassword``, ``token``,
    ``api_key``, ``access_token``, ``key``, ``sig``… (not ``sslkey`` or ``sslcert``, which name files)."""
    words = re.split(r"[-_.]", name.lower())
    return any(word.endswith(("password", "passwd")) or word in _SECRET_WORDS for word in words)


@dataclass(frozen=True)
class _Url:
    """A ``scheme://`` URL cut into the pieces masking needs, each kept as written."""

    scheme: str
    user: str | None  # set when the URL has ``user:password@``
    password: str | None
    rest: str  # host, port, path: everything after the user info up to ``?``
    query: str | None  # None when there is no ``?``
    fragment: str | None  # None when there is no ``#``

    def render(self) -> str:
        auth = f"{self.user}:{self.password}@" if self.user is not None else ""
        query = f"?{self.query}" if self.query is not None else ""
        fragment = f"#{self.fragment}" if self.fragment is not None else ""
        return f"{self.scheme}://{auth}{self.rest}{query}{fragment}"


def _parse(url: str) -> _Url | None:
    """``url`` cut into pieces, or None when it is not a ``scheme://`` URL.

    The password runs from the first ``:`` of the user info to the *last* ``@`` before the first ``?``
    or ``#``, so an unencoded ``@`` or ``/`` in a password (SQLAlchemy accepts both) is still masked whole.
    """
    match = _URL.match(url)
    if match is None:
        return None
    head, query, fragment = match.group("head"), match.group("query"), match.group("fragment")
    auth = _USERINFO.match(head)
    if auth is None:
        return _Url(match.group("scheme"), None, None, head, query, fragment)
    return _Url(match.group("scheme"), auth.group("user"), auth.group("password"), head[auth.end():], query,
                fragment)


def _query_pairs(query: str) -> Iterator[tuple[str, str | None]]:
    """``(name, value)`` of each ``&``-separated query item, undecoded (value None when there is no ``=``)."""
    for item in query.split("&"):
        name, eq, value = item.partition("=")
        yield name, (value if eq else None)


def url_credentials(url: str) -> list[str]:
    """What in ``url`` is a credential: ``"password"`` and/or ``"query parameter 'NAME'"`` entries (never values)."""
    parts = _parse(url)
    if parts is None:
        return []
    found = ["password"] if parts.password else []
    for name, value in _query_pairs(parts.query or ""):
        if value and _is_secret_param(name):
            found.append(f"query parameter '{name}'")
    return found


def mask_url(url: str) -> str:
    """``url`` with the password of its user info and every secret query parameter replaced by ``MASK``.

    Anything that is not a ``scheme://`` URL is returned unchanged; the rest of the URL stays as written.
    """
    parts = _parse(url)
    if parts is None or not url_credentials(url):
        return url
    query = parts.query
    if query:
        query = "&".join(name if value is None else f"{name}={MASK if value and _is_secret_param(name) else value}"
                         for name, value in _query_pairs(query))
    return replace(parts, password=MASK if parts.password else parts.password, query=query).render()


def mask_urls_in_text(text: str) -> str:
    """``text`` (a message, an exception's string) with every URL in it passed through :func:`mask_url`."""
    return _URL_IN_TEXT.sub(lambda m: mask_url(m.group(0)), text)


def mask_secrets(node: Any, key: str = "") -> Any:
    """A copy of JSON data with secrets masked: values of secret-looking keys, and credentials in any URL."""
    if isinstance(node, dict):
        return {k: mask_secrets(v, k) for k, v in node.items()}
    if isinstance(node, list):
        return [mask_secrets(v, key) for v in node]
    if node not in (None, "") and is_secret_key(key):
        return MASK
    if isinstance(node, str):
        return mask_urls_in_text(node)
    return node
