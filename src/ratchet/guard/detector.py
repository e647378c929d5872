"""Find the first rule a text breaks: in its normalised form, and in payloads it hides in base64, hex or %-escapes.

A payload is decoded from the text as written (only NFKC and invisible characters undone:
case matters to base64), up to two layers deep; when the decoded text breaks a rule the
detection's rule is ``encoded_payload`` and ``inner`` names the rule the payload broke.
"""

from __future__ import annotations

import base64
import binascii
import re
import unicodedata
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from urllib.parse import unquote

from ratchet.guard.normalize import normalize
from ratchet.guard.rules import SHIPPED_RULES, Rule

__all__ = ["ENCODED_PAYLOAD", "Detection", "Detector"]

ENCODED_PAYLOAD = "encoded_payload"
_BASE64 = re.compile(r"[A-Za-z0-9+/_-]{16,}={0,2}")
_HEX = re.compile(r"\b(?:[0-9a-fA-F]{2}[ :]?){12,}")
_PERCENT = re.compile(r"(?:%[0-9a-fA-F]{2}){4,}")
_DEPTH = 2


@dataclass(frozen=True)
class Detection:
    """A rule the text broke, and the (normalised) words that broke it."""

    rule: str
    matched: str
    inner: str | None = None  # for encoded_payload: the rule the decoded payload broke


class Detector:
    """Scan texts with a fixed set of rules (default: the shipped ones)."""

    def __init__(self, rules: Sequence[Rule] = SHIPPED_RULES) -> None:
        self.rules = tuple(rules)
        self._decodes = any(rule.name == ENCODED_PAYLOAD for rule in self.rules)

    def scan(self, text: str) -> Detection | None:
        """The first rule ``text`` breaks (in the rules' order), else None."""
        return self._scan(unicodedata.normalize("NFKC", text), _DEPTH)

    def _scan(self, text: str, depth: int) -> Detection | None:
        found = self._match(normalize(text))
        if found is not None or not self._decodes or depth == 0:
            return found
        for payload in _payloads(text):
            inner = self._scan(payload, depth - 1)
            if inner is not None:
                return Detection(ENCODED_PAYLOAD, inner.matched, inner.inner or inner.rule)
        return None

    def _match(self, normalised: str) -> Detection | None:
        for rule in self.rules:
            match = rule.search(normalised)
            if match is not None:
                return Detection(rule.name, match.group(0))
        return None


def _payloads(text: str) -> Iterator[str]:
    """Texts hidden in ``text`` as base64, hex or %-escapes (only those that decode to readable text)."""
    for match in _BASE64.finditer(text):
        token = match.group(0)
        if token.isalpha() and (token.islower() or token.isupper()):
            continue  # a long plain word, not an encoding
        try:
            raw = base64.b64decode(token.replace("-", "+").replace("_", "/") + "=" * (-len(token) % 4))
        except (binascii.Error, ValueError):
            continue
        if (decoded := _readable(raw)) is not None:
            yield decoded
    for match in _HEX.finditer(text):
        try:
            raw = bytes.fromhex(re.sub(r"[ :]", "", match.group(0)))
        except ValueError:
            continue
        if (decoded := _readable(raw)) is not None:
            yield decoded
    if "%" in text and _PERCENT.search(text):
        yield unquote(text)


def _readable(raw: bytes) -> str | None:
    """``raw`` as text when it is UTF-8 made mostly of letters, spaces and punctuation, else None."""
    try:
        decoded = raw.decode("utf-8")
    except UnicodeDecodeError:
        return None
    printable = sum(1 for c in decoded if c.isprintable() or c in "\n\t")
    return decoded if decoded and printable >= 0.9 * len(decoded) and any(c.isalpha() for c in decoded) else None
