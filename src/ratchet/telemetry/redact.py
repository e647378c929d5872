"""PII redaction for telemetry: e-mails, phones, cards, IBANs, IPs and secrets become ``[KIND]`` tokens.

Every detector reads the same text. Overlapping matches are merged into one span that is
replaced once, by the token of the highest-priority kind among them (secret, email, iban, card,
ip, phone, then the configured extra kinds), so nothing a detector matched survives and no token
is cut in half. Tokens already in the text are never matched, and the output is redacted again
until nothing changes, so redacting twice is a no-op. Validators keep precision: cards must pass
Luhn, IBANs mod-97, IPs their octet and group rules, phones a plausible length. Cheap pre-checks
(an ``@``, enough digits, marker substrings) skip detectors that cannot match, and the number
detectors only look at the windows where digits cluster, so clean text costs a few microseconds.
"""

from __future__ import annotations

import ipaddress
import re
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from ratchet.errors import ConfigError

__all__ = ["BUILTIN_KINDS", "Redactor", "iban_valid", "luhn_valid", "token_for"]

BUILTIN_KINDS: tuple[str, ...] = ("email", "phone", "card", "iban", "ip", "secret", "ssn")
_PRIORITY: tuple[str, ...] = ("secret", "email", "iban", "card", "ip", "phone", "ssn")
_KIND_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_-]*")
_MAX_PASSES = 4

Span = tuple[int, int]


def token_for(kind: str) -> str:
    """The replacement token of a kind: ``email`` → ``[EMAIL]``."""
    return f"[{kind.upper()}]"


# ---------------------------------------------------------------- secrets

_SECRET_TOKEN = re.compile(
    r"""(?<![\w-])(?:
        sk-(?:proj-|svcacct-|admin-|ant-)?(?=[\w-]*\d|[\w-]*[A-Z][\w-]*[a-z]|[\w-]*[a-z][\w-]*[A-Z]|\w{32})
           [A-Za-z0-9_-]{20,}
      | (?:sk|pk|rk)_(?:live|test)_[A-Za-z0-9]{10,}
      | (?:AKIA|ASIA)[0-9A-Z]{16}
      | gh[pousr]_[A-Za-z0-9]{30,}
      | github_pat_[A-Za-z0-9_]{22,}
      | xox[abprs]-(?=[\w-]*\d)[A-Za-z0-9-]{10,}
      | AIza[0-9A-Za-z_-]{35}
      | eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*
    )(?![\w-])""",
    re.VERBOSE,
)
_TOKEN_MARKERS = ("sk-", "AKIA", "ASIA", "xox", "AIza", "eyJ")
_UNDERSCORE_MARKERS = ("_live_", "_test_", "ghp_", "gho_", "ghs_", "ghu_", "ghr_", "github_pat_")
_PEM = re.compile(
    r"-----BEGIN[A-Z ]*PRIVATE KEY(?: BLOCK)?-----"
    r"(?:.*?-----END[A-Z ]*PRIVATE KEY(?: BLOCK)?-----|[A-Za-z0-9+/=\s\\:,-]*)",  # or truncated: to the end
    re.DOTALL,
)
_URL_CREDENTIALS = re.compile(r"(?<=://)[^\s/@:]+:(?P<value>[^\s/@]+)@")
_AUTH_SCHEME = re.compile(
    r"(?i:\b(?:bearer|basic|token))[ \t]+(?P<value>(?=[\w.~+/-]*\d)[A-Za-z0-9._~+/-]{15,}[A-Za-z0-9_~+/-]=*)"
)
# Assignments (`api_key=…`, `"password": "…"`, `X-Api-Key: …`, `my PIN is 1234`) are found from their
# separator; the name before it must end in a secret word. The name is kept, the value redacted.
_SEPARATOR = re.compile(r"[:=]")
_NAME_TAIL = re.compile(r"[\w.-]+$")
# A name ending like this (lower case, "-" read as "_") names a secret: OPENAI_API_KEY, client_secret, accessToken.
_SECRET_NAME_ENDS = (
    "api_key", "apikey", "secret_key", "secretkey", "access_key", "accesskey", "access_key_id", "accesskeyid",
    "private_key", "privatekey", "signing_key", "signingkey", "encryption_key", "encryptionkey", "master_key",
    "masterkey", "secret", "token", "password", "passwd", "passcode", "passphrase", "credential", "credentials",
    "authorization",
)
_PASSWORD_NAMES = ("password", "passwd", "passcode", "passphrase", "pwd")
_SHORT_SECRET_NAMES = ("pwd", "pin")  # only alone or after a separator: db_pwd, card-pin (not "spin")
_NAME_QUALIFIERS = frozenset({"api", "access", "secret", "private", "auth"})  # "api key: …", "access token: …"
_VALUE = re.compile(r"""[ \t]*(?:\\?"[^"\\\n]{1,512}\\?"|'[^'\n]{1,512}'|(?![\[=])[^\s,;"'<>]{1,512})""")
_NEXT_QUERY_PARAM = re.compile(r"&[\w.-]+=")  # "?api_key=abc&page=2": the value ends before "&page="
_NAME_MARKERS = ("key", "secret", "token", "pass", "pwd", "pin", "credential", "authoriz")
_PLACEHOLDERS = frozenset({"none", "null", "nil", "true", "false", "undefined", "redacted"})
_TRAILING_PUNCT = ".,;:?)]}"


def _contains_any(text: str, markers: tuple[str, ...]) -> bool:
    for marker in markers:  # noqa: SIM110 - twice as fast as any() over a generator, on the hot path
        if marker in text:
            return True
    return False


def _secret_spans(text: str, n_digits: int) -> Iterator[Span]:
    if _contains_any(text, _TOKEN_MARKERS) or ("_" in text and _contains_any(text, _UNDERSCORE_MARKERS)):
        for m in _SECRET_TOKEN.finditer(text):
            yield m.span()
    if "PRIVATE KEY" in text:
        for m in _PEM.finditer(text):
            yield m.span()
    if "://" in text and "@" in text:
        for m in _URL_CREDENTIALS.finditer(text):
            yield m.span("value")
    lower = text.lower()
    if n_digits and ("bearer" in lower or "basic" in lower or "token" in lower):
        for m in _AUTH_SCHEME.finditer(text):
            yield m.span("value")
    has_separator = ":" in text or "=" in text
    if not (has_separator or n_digits or " is " in lower) or not _contains_any(lower, _NAME_MARKERS):
        return
    if has_separator:
        for m in _SEPARATOR.finditer(text):
            span = _assignment_value(text, m.start(), m.end(), equals=m.group() == "=")
            if span:
                yield span
    at = lower.find(" is ")
    while at >= 0:
        span = _assignment_value(text, at, at + 4, equals=False)
        if span:
            yield span
        at = lower.find(" is ", at + 3)


def _secret_name_before(text: str, sep_start: int) -> str | None:
    """The name just before a separator (quotes and blanks skipped), normalised, if it names a secret."""
    before = text[max(0, sep_start - 48) : sep_start].rstrip(" \t")
    if before.endswith(('"', "'")):
        before = before[:-1].removesuffix("\\")
    words = before.rsplit(None, 2)
    if not words:
        return None
    name = _NAME_TAIL.search(words[-1])
    if not name:
        return None
    name = name.group().lower().replace("-", "_")
    if len(words) > 1 and words[-1] == name and words[-2].lower() in _NAME_QUALIFIERS:
        name = f"{words[-2].lower()}_{name}"
    if name.endswith(_SECRET_NAME_ENDS):
        return name
    return name if name.endswith(_SHORT_SECRET_NAMES) and (len(name) == 3 or name[-4] in "_.") else None


def _looks_secret(value: str) -> bool:
    """A bare value after ``name:`` / ``name is`` that is not just a word of prose."""
    if len(value) < 4:
        return False
    return len(value) >= 20 or not value.replace("-", "").isalpha() or not value[1:].islower()


def _ends_clause(text: str, end: int) -> bool:
    tail = text[end : end + 2]
    return not tail or tail[0] == "\n" or (tail[0] in ".,;!?" and (len(tail) == 1 or tail[1].isspace()))


def _assignment_value(text: str, sep_start: int, sep_end: int, equals: bool) -> Span | None:
    """The value after a separator worth redacting, or None."""
    name = _secret_name_before(text, sep_start)
    if not name:
        return None
    if sep_end < len(text) and text[sep_end] in "=>" and text[sep_start] != " ":  # ":=", "=>"
        sep_end += 1
    m = _VALUE.match(text, sep_end)
    if not m:
        return None
    start, end = m.span()
    while text[start] in " \t":
        start += 1
    quoted = text[start] in "\"'\\"
    if quoted:
        while start < end and text[start] in "\"'\\":
            start += 1
        while end > start and text[end - 1] in "\"'\\":
            end -= 1
    else:
        if "&" in text[start:end] and (param := _NEXT_QUERY_PARAM.search(text, start, end)):
            end = param.start()
        while end - start > 1 and text[end - 1] in _TRAILING_PUNCT:
            end -= 1
    value = text[start:end]
    if not value or value.lower() in _PLACEHOLDERS or value.startswith("${") or set(value) == {"*"}:
        return None
    if equals or quoted or _looks_secret(value):
        return start, end
    # "Password: sunshine" (a lone word ending the clause), but not "my password is wrong"
    if text[sep_start] == ":" and name.endswith(_PASSWORD_NAMES) and len(value) >= 4 and _ends_clause(text, end):
        return start, end
    return None


# ---------------------------------------------------------------- e-mail

_EMAIL = re.compile(r"(?<![\w.%+'-])[\w%+-][\w.%+'-]*@(?:[^\W_](?:[\w-]{0,61}[^\W_])?\.)+[^\W\d_]{2,63}(?![\w-])")
_URL_USER_BEFORE = re.compile(r"://[^\s/@:]+:$")


def _email_spans(text: str) -> Iterator[Span]:
    for m in _EMAIL.finditer(text):
        start = m.start()
        if start and text[start - 1] == ":" and _URL_USER_BEFORE.search(text, max(0, start - 100), start):
            continue  # "scheme://user:password@host": the password is a secret, the host stays
        yield m.span()


# Written to slip past filters: "jane.roe @ example.com", "john dot doe at gmail dot com",
# "alice[at]example[dot]org". A spelled-out " at " counts only with a spelled-out dot in the
# address, and the address must end in a common top-level domain, so "look at google.com" stays.
_O_AT = r"(?:[ \t]*@[ \t]*|[ \t]*[\[({][ \t]*at[ \t]*[\])}][ \t]*|[ \t]+at[ \t]+)"
_O_DOT = r"(?:\.|[ \t]*[\[({][ \t]*dot[ \t]*[\])}][ \t]*|[ \t]+dot[ \t]+)"
_O_TLD = (r"(?:com|org|net|edu|gov|mil|int|info|biz|io|co|me|us|uk|de|fr|es|it|nl|be|ch|at|se|no|dk|fi|pl|pt|ie|"
          r"eu|ru|ua|jp|cn|kr|in|au|nz|ca|br|mx|ar|za|ai|app|dev|email|mail)")
_OBFUSCATED_EMAIL = re.compile(
    rf"(?<![\w.%+'-])[\w%+-]+(?:{_O_DOT}[\w%+-]+)*(?P<at>{_O_AT})[^\W_][\w-]*(?:{_O_DOT}[^\W_][\w-]*)*?"
    rf"{_O_DOT}{_O_TLD}(?![\w-])",
    re.IGNORECASE,
)
_SPELLED_DOT = re.compile(r"[ \t]dot[ \t]|[\[({][ \t]*dot[ \t]*[\])}]", re.IGNORECASE)
_OBFUSCATION_MARKERS = ("@", " dot ", "[dot]", "(dot)", "{dot}", "[at]", "(at)", "{at}")


def _obfuscated_email_spans(text: str, lower: str) -> Iterator[Span]:
    if not _contains_any(lower, _OBFUSCATION_MARKERS):
        return
    for m in _OBFUSCATED_EMAIL.finditer(text):
        if m.group("at").strip().lower() == "at" and not _SPELLED_DOT.search(m.group()):
            continue  # "meet me at example.com" reads as prose
        yield m.span()


# ---------------------------------------------------------------- numbers: clusters

# Digits joined by at most two of " ().-". Every card, phone and IPv4 lies inside one cluster, so the
# number detectors only scan a small window around clusters with enough digits.
_CLUSTER = re.compile(r"\d(?:[ ().-]{0,2}\d)*", re.ASCII)
_DIGIT_RUN = re.compile(r"\d+", re.ASCII)


Cluster = tuple[int, int, int]  # start, end, number of digits


def _clusters(text: str) -> list[Cluster]:
    out = []
    for m in _CLUSTER.finditer(text):
        start, end = m.span()
        out.append((start, end, end - start if end - start < 4 else _digit_count(m.group())))
    return out


def _digit_count(run: str) -> int:
    return len(run) - run.count(" ") - run.count("-") - run.count(".") - run.count("(") - run.count(")")


def _windows(text: str, clusters: Sequence[Cluster], min_digits: int) -> Iterator[tuple[int, int, int]]:
    """``(pos, endpos, digits)`` around clusters of ``min_digits`` or more digits, with room for "+(" and lookaheads."""
    for start, end, digits in clusters:
        if digits >= min_digits:
            yield max(0, start - 2), min(len(text), end + 3), digits


# ---------------------------------------------------------------- cards

_CARD = re.compile(r"(?<![\w+.,/-])(?<!\d[ -])(?:\d{4}(?:[ -]\d{2,6}){2,4}|\d{13,19})(?![\w]|[.,/-]\d)", re.ASCII)


def luhn_valid(digits: str) -> bool:
    """The Luhn checksum of a string of ASCII digits."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


# "4111.1111.1111.1111", "4111/1111/1111/1111": four-digit groups joined by one repeated "." or "/".
_CARD_SEPARATED = re.compile(r"(?<![\w+.,/-])\d{4}([./])\d{4}\1\d{4}\1\d{1,7}(?![\w]|[.,/-]\d)", re.ASCII)


def _separated_card_spans(text: str) -> Iterator[Span]:
    for m in _CARD_SEPARATED.finditer(text):
        digits = m.group().replace(m.group(1), "")
        if 13 <= len(digits) <= 19 and luhn_valid(digits):
            yield m.span()


# US social security numbers, as written: 123-45-6789 (never 000, 666 or 9xx areas, 00 groups, 0000 serials).
_SSN = re.compile(r"(?<![\w+.,/-])(?!000|666|9)\d{3}-(?!00)\d{2}-(?!0000)\d{4}(?![\w]|[.,/-]\d)", re.ASCII)


def _ssn_spans(text: str, clusters: Sequence[Cluster]) -> Iterator[Span]:
    for pos, endpos, _ in _windows(text, clusters, 9):
        for m in _SSN.finditer(text, pos, endpos):
            yield m.span()


def _card_spans(text: str, clusters: Sequence[Cluster]) -> Iterator[Span]:
    for pos, endpos, _ in _windows(text, clusters, 13):
        for m in _CARD.finditer(text, pos, endpos):
            runs = [(r.group(), r.end()) for r in _DIGIT_RUN.finditer(text, m.start(), m.end())]
            # Longest candidate first: a trailing group may be a neighbouring number ("… 1111 12 people").
            for count in range(len(runs), 0, -1):
                digits = "".join(run for run, _ in runs[:count])
                if len(digits) < 13:
                    break
                if len(digits) <= 19 and luhn_valid(digits):
                    yield m.start(), runs[count - 1][1]
                    break


# ---------------------------------------------------------------- IBAN

# ISO 13616 registry: country → IBAN length.
_IBAN_LENGTHS = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22, "BI": 27, "BR": 29,
    "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DJ": 27, "DK": 18, "DO": 28, "EE": 20, "EG": 29,
    "ES": 24, "FI": 18, "FK": 18, "FO": 18, "FR": 27, "GB": 22, "GE": 22, "GI": 23, "GL": 18, "GR": 27, "GT": 28,
    "HN": 28, "HR": 21, "HU": 28, "IE": 22, "IL": 23, "IQ": 23, "IS": 26, "IT": 27, "JO": 30, "KW": 30, "KZ": 20,
    "LB": 28, "LC": 32, "LI": 21, "LT": 20, "LU": 20, "LV": 21, "LY": 25, "MC": 27, "MD": 24, "ME": 22, "MK": 19,
    "MN": 20, "MR": 27, "MT": 31, "MU": 30, "NI": 28, "NL": 18, "NO": 15, "OM": 23, "PK": 24, "PL": 28, "PS": 29,
    "PT": 25, "QA": 29, "RO": 24, "RS": 22, "RU": 33, "SA": 24, "SC": 31, "SD": 18, "SE": 24, "SI": 19, "SK": 24,
    "SM": 27, "SO": 23, "ST": 25, "SV": 28, "TL": 23, "TN": 24, "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20,
    "YE": 30,
}  # fmt: skip
_IBAN = re.compile(r"[A-Za-z]{2}\d{2}(?: ?[A-Za-z0-9]){11,32}", re.ASCII)
_IBAN_SHAPE = re.compile(r"[A-Z]{2}\d{2}(?:(?: [A-Z0-9]{4}){2,7}(?: [A-Z0-9]{1,3})?|[A-Z0-9]{11,30})(?![A-Za-z0-9])")
_DIGIT_PAIR = re.compile(r"\d\d", re.ASCII)


def iban_valid(iban: str) -> bool:
    """ISO 13616: a known country, its length, and the mod-97 check (spaces are ignored)."""
    iban = iban.replace(" ", "").upper()
    if _IBAN_LENGTHS.get(iban[:2]) != len(iban) or not iban.isalnum() or not iban[2:4].isdigit():
        return False
    rearranged = iban[4:] + iban[:4]
    return int("".join(str(int(ch, 36)) for ch in rearranged)) % 97 == 1


def _ibans(text: str) -> tuple[list[Span], list[Span]]:
    """Valid IBANs, and IBAN-shaped strings that fail the check (nothing inside them is a card or phone)."""
    valid: list[Span] = []
    shaped: list[Span] = []
    for pair in _DIGIT_PAIR.finditer(text):  # the check digits, right after the two letters of the country
        start = pair.start() - 2
        if start < 0 or not text[start : start + 2].isalpha() or (start and text[start - 1].isalnum()):
            continue
        m = _IBAN.match(text, start)
        length = _IBAN_LENGTHS.get(text[start : start + 2].upper()) if m else None
        pos = count = 0
        if m and length:
            pos = start  # exactly the country's length: the regex may have run on into the next words
            while pos < m.end() and count < length:
                count += text[pos] != " "
                pos += 1
        if count == length and not (pos < len(text) and text[pos].isalnum()) and iban_valid(text[start:pos]):
            valid.append((start, pos))
        elif shape := _IBAN_SHAPE.match(text, start):
            shaped.append(shape.span())
    return valid, shaped


# ---------------------------------------------------------------- IP addresses

_OCTET = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
_IPV4 = re.compile(rf"(?<![\w.])(?:{_OCTET}\.){{3}}{_OCTET}(?![\w]|\.\d)", re.ASCII)
_IPV6 = re.compile(
    r"(?<![\w:.])(?:[0-9A-Fa-f]{0,4}:){2,7}(?:(?:\d{1,3}\.){3}\d{1,3}|[0-9A-Fa-f]{0,4})(?![\w:]|\.\d)", re.ASCII
)
_VERSION_BEFORE = re.compile(r"(?i)(?:\bv|\bversion|\bver\.?|\brelease|\bbuild|[a-z]/)\s*$")


def _ip_spans(text: str, clusters: Sequence[Cluster]) -> Iterator[Span]:
    if text.count(":") >= 2:
        for m in _IPV6.finditer(text):
            candidate = m.group()
            if candidate.endswith(":") and not candidate.endswith("::"):
                candidate = candidate[:-1]
            if not any(c.isdigit() for c in candidate):
                continue
            try:
                ipaddress.IPv6Address(candidate)
            except ValueError:
                continue
            yield m.start(), m.start() + len(candidate)
    if text.count(".") >= 3:
        for pos, endpos, _ in _windows(text, clusters, 4):
            for m in _IPV4.finditer(text, pos, endpos):
                if not _VERSION_BEFORE.search(text, max(0, m.start() - 12), m.start()):
                    yield m.span()


# ---------------------------------------------------------------- phones

# Country code → (min, max) digits of the national number; other codes need 8–15 digits in all (E.164).
_NATIONAL_LENGTHS = {
    "1": (10, 10), "7": (10, 10), "20": (8, 10), "27": (9, 9), "30": (10, 10), "31": (9, 9), "32": (8, 9),
    "33": (9, 9), "34": (9, 9), "36": (8, 9), "39": (6, 11), "40": (9, 9), "41": (9, 9), "43": (4, 13),
    "44": (9, 10), "45": (8, 8), "46": (7, 9), "47": (8, 8), "48": (9, 9), "49": (6, 13), "51": (8, 9),
    "52": (10, 10), "54": (10, 11), "55": (10, 11), "56": (9, 9), "57": (10, 10), "60": (8, 10), "61": (9, 9),
    "62": (8, 12), "63": (10, 10), "64": (8, 10), "65": (8, 8), "66": (8, 9), "81": (9, 10), "82": (8, 10),
    "84": (9, 10), "86": (10, 11), "90": (10, 10), "91": (10, 10), "92": (9, 10), "234": (8, 10), "254": (9, 9),
    "351": (9, 9), "353": (7, 9), "358": (5, 12), "420": (9, 9), "852": (8, 8), "966": (9, 9), "971": (8, 9),
    "972": (8, 9),
}  # fmt: skip
# +CC or 00CC, then groups separated by one space, dot or dash; "(0)" trunk prefixes and "(area)" codes allowed.
_PHONE_INTL = re.compile(
    r"(?<![\w+])(?:\+|(?<!\d[ .-])00)(?=[1-9])\d{1,4}(?:(?:[ .-]?\(\d{1,4}\)[ .-]?|[ .-])?\d{1,5}){1,7}(?!\d)", re.ASCII
)
# North America: (555) 123-4567, 555-123-4567, 555.123.4567, 1-800-555-0199 (one separator style).
_PHONE_NANP = re.compile(
    r"(?<![\w+.,/-])(?<!\d[ .-])(?:1[ .-]?)?(?:\(\d{3}\)[ ]?\d{3}[ .-]|\d{3}(?P<sep>[ .-])\d{3}(?P=sep))\d{4}"
    r"(?![\w]|[.,/-]\d)",
    re.ASCII,
)
# National numbers with a trunk 0: 07700 900123, 020 7946 0958, (0161) 496 0000, 06 12 34 56 78.
_PHONE_TRUNK = re.compile(
    r"(?<![\w+.,/-])(?<!\d[ .-])(?:\(0\d{1,4}\)[ ]?\d{2,8}(?:[ -]\d{2,8}){0,3}"
    r"|0\d{1,4}(?P<sep>[ .-])\d{2,8}(?:(?P=sep)\d{2,8}){0,3})(?![\w]|[.,/:-]\d)",
    re.ASCII,
)
# Shapes that are phones only next to a phone word: "call me on 5551234567", "07700900123 is my number".
_PHONE_BARE = re.compile(r"(?<![\w+.,/-])(?<!\d[ .-])(?:\d{3}[ .-]\d{4}|\d{10,11})(?![\w]|[.,/:-]\d)", re.ASCII)
_PHONE_CONTEXT = re.compile(
    r"(?i)\b(?:call(?:ed|ing)?|phone|mobile|cell(?:phone)?|tel|telephone|text|sms|whatsapp|reach|contact|ring|fax"
    r"|landline|dial|(?:my|your|his|her|our|their)\s+(?:number|no\b|\#))"
)
_ID_WORD = re.compile(
    r"(?i)\b(?:order|ref|reference|invoice|tracking|account|transaction|booking|confirmation|reservation|receipt"
    r"|policy|case|ticket|serial|id)\b"
)
_CLAUSE_END = re.compile(r"[.;!?\n]\s")
_GROUP = re.compile(r"\(\d{1,4}\)|\d+", re.ASCII)


def _phone_spans(text: str, clusters: Sequence[Cluster]) -> Iterator[Span]:
    for pos, endpos, digits in _windows(text, clusters, 7):
        if digits >= 8 and ("+" in text[pos:endpos] or "00" in text[pos:endpos]):
            for m in _PHONE_INTL.finditer(text, pos, endpos):
                end = _international_end(m)
                if end is not None:
                    yield m.start(), end
        if digits >= 9:
            for m in _PHONE_NANP.finditer(text, pos, endpos):
                yield m.span()
            for m in _PHONE_TRUNK.finditer(text, pos, endpos):
                end = _trimmed_end(m, low=9, high=12, trim_above=11)
                if end is not None:
                    yield m.start(), end
        for m in _PHONE_BARE.finditer(text, pos, endpos):
            if len(m.group()) == 11 and m.group()[0] not in "01":
                continue
            before = _CLAUSE_END.split(text[max(0, m.start() - 40) : m.start()])[-1]
            after = _CLAUSE_END.split(text[m.end() : m.end() + 25])[0]
            if _ID_WORD.search(before[-20:]):
                continue
            if _PHONE_CONTEXT.search(before) or _PHONE_CONTEXT.search(after):
                yield m.span()


def _groups(m: re.Match[str], skip: int = 0) -> list[tuple[str, int]]:
    """Digit groups of a match with their end offsets; a "(0)" trunk prefix counts no digits."""
    out = []
    for g in _GROUP.finditer(m.string, m.start() + skip, m.end()):
        run = g.group()
        out.append(("" if run == "(0)" else run.strip("()"), g.end()))
    return out


def _trimmed_end(m: re.Match[str], low: int, high: int, trim_above: int) -> int | None:
    """End of the match, dropping trailing groups (a neighbouring number) when there are too many digits."""
    groups = _groups(m)
    total = sum(len(run) for run, _ in groups)
    if total <= high:
        return m.end() if total >= low else None
    while len(groups) > 1 and total > trim_above:
        total -= len(groups.pop()[0])
    return groups[-1][1] if low <= total <= trim_above else None


def _international_end(m: re.Match[str]) -> int | None:
    groups = _groups(m, skip=1 if m.group().startswith("+") else 2)
    digits = "".join(run for run, _ in groups)
    code = next((digits[:n] for n in (1, 2, 3) if digits[:n] in _NATIONAL_LENGTHS), None)
    if code:
        (low, high), total = _NATIONAL_LENGTHS[code], len(digits) - len(code)
    else:
        (low, high), total = (8, 15), len(digits)
    while len(groups) > 1 and total > high:
        total -= len(groups.pop()[0])
    return groups[-1][1] if low <= total <= high else None


# ---------------------------------------------------------------- the redactor


class Redactor:
    """Replace PII in text and JSON-like values by ``[KIND]`` tokens, counting what was replaced.

    ``extra_patterns`` (``telemetry.redact_patterns``) adds kinds: kind → regex, whose matches
    become ``[KIND]``. Instances are immutable and thread-safe.
    """

    def __init__(self, extra_patterns: Mapping[str, str] | None = None) -> None:
        extras: list[tuple[str, re.Pattern[str]]] = []
        for kind, pattern in (extra_patterns or {}).items():
            where = f"telemetry.redact_patterns.{kind}"
            if not _KIND_NAME.fullmatch(kind):
                raise ConfigError(f"{where}: a kind is a name of letters, digits, '_' or '-'")
            if kind.lower() in BUILTIN_KINDS:
                raise ConfigError(f"{where}: '{kind}' is a built-in kind")
            try:
                extras.append((kind, re.compile(pattern)))
            except (re.error, TypeError) as exc:
                raise ConfigError(f"{where}: invalid regular expression {pattern!r}: {exc}") from None
        self._extras = tuple(extras)
        self.kinds: tuple[str, ...] = BUILTIN_KINDS + tuple(kind for kind, _ in extras)
        self._ranked = _PRIORITY + tuple(kind for kind, _ in extras)
        self._tokens = tuple(token_for(kind) for kind in self._ranked)
        self._token_re = re.compile("|".join(re.escape(t) for t in sorted(set(self._tokens), key=len, reverse=True)))

    def redact_text(self, text: str) -> tuple[str, Counter[str]]:
        """``text`` with every PII span replaced by its token, and how many spans of each kind were replaced.

        A replacement changes its neighbours' context ("x1::" → "[SHOUT]1::"), so the output is
        redacted again until nothing changes (at most ``_MAX_PASSES``): redacting it once more is a no-op.
        """
        counts: Counter[str] = Counter()
        for _ in range(_MAX_PASSES):
            text, found = self._redact_once(text)
            if not found:
                break
            counts.update(found)
        return text, counts

    def _redact_once(self, text: str) -> tuple[str, Counter[str]]:
        spans = self._spans(text)
        counts: Counter[str] = Counter()
        if not spans:
            return text, counts
        spans.sort()
        parts, pos = [], 0
        start, end, rank = spans[0]
        for s, e, r in spans[1:]:
            if s < end:  # overlap: one span, the higher-priority kind
                end, rank = max(end, e), min(rank, r)
                continue
            parts += (text[pos:start], self._tokens[rank])
            counts[self._ranked[rank]] += 1
            pos, (start, end, rank) = end, (s, e, r)
        parts += (text[pos:start], self._tokens[rank], text[end:])
        counts[self._ranked[rank]] += 1
        return "".join(parts), counts

    def redact(self, value: Any) -> tuple[Any, Counter[str]]:
        """Redact strings anywhere in dicts (values only), lists and tuples.

        A number is redacted by its string form (a card number sent as an integer becomes ``"[CARD]"``);
        other values (``None``, booleans, numbers that hold nothing) are returned as they are.
        """
        counts: Counter[str] = Counter()
        return self._redact(value, counts), counts

    def _redact(self, value: Any, counts: Counter[str]) -> Any:
        if isinstance(value, str):
            text, found = self.redact_text(value)
            counts.update(found)
            return text
        if isinstance(value, dict):
            return {key: self._redact(item, counts) for key, item in value.items()}
        if isinstance(value, list):
            return [self._redact(item, counts) for item in value]
        if isinstance(value, tuple):
            items = [self._redact(item, counts) for item in value]
            return type(value)(*items) if hasattr(value, "_fields") else tuple(items)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            text, found = self.redact_text(str(value))
            if found:
                counts.update(found)
                return text
        return value

    def _spans(self, text: str) -> list[tuple[int, int, int]]:
        """Candidate spans ``(start, end, rank)`` of every detector whose pre-check passes."""
        raw = text.encode("utf-8", "surrogatepass")
        n_digits = len(raw) - len(raw.translate(None, b"0123456789"))
        finders: list[tuple[int, Iterator[Span]]] = [(0, _secret_spans(text, n_digits))]
        if "@" in text:
            finders.append((1, _email_spans(text)))
        finders.append((1, _obfuscated_email_spans(text, text.lower())))
        shaped: list[Span] = []
        if n_digits >= 2:
            valid, shaped = _ibans(text)
            finders.append((2, iter(valid)))
        if n_digits >= 7 or (n_digits >= 4 and text.count(".") >= 3):
            clusters = _clusters(text)
            if n_digits >= 13:
                finders.append((3, _card_spans(text, clusters)))
                if "/" in text or "." in text:
                    finders.append((3, _separated_card_spans(text)))
            finders += [(4, _ip_spans(text, clusters)), (5, _phone_spans(text, clusters))]
            if n_digits >= 9 and "-" in text:
                finders.append((6, _ssn_spans(text, clusters)))
        elif n_digits and text.count(":") >= 2:
            finders.append((4, _ip_spans(text, ())))
        for rank, (_kind, pattern) in enumerate(self._extras, start=len(_PRIORITY)):
            finders.append((rank, (m.span() for m in pattern.finditer(text) if m.end() > m.start())))
        found = [(s, e, rank) for rank, spans in finders for s, e in spans]
        if shaped:  # digits of an invalid IBAN are neither a card nor a phone
            found = [f for f in found if f[2] not in (3, 5) or not any(f[0] < e and s < f[1] for s, e in shaped)]
        if found and "[" in text:  # existing tokens are never redacted again
            kept = [t.span() for t in self._token_re.finditer(text)]
            found = [f for f in found if not any(f[0] < e and s < f[1] for s, e in kept)]
        return found
