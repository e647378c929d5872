"""Build the labelled PII evaluation set: real customer messages carrying inserted PII, and hard negatives.

    python benchmarks/make_pii_set.py [--seed 13] [--out benchmarks/data/pii_labelled.jsonl]

Carriers are the ``text`` of the bundled Banking77 and Restaurant-8k messages (messages that
already look like they hold PII, an ``@`` or 7+ digits in a row, are skipped). Into them go
realistic values at natural places ("my email is …", "call me on …") with the exact character
offsets of each value: e-mails, phones of several countries, Luhn-valid Visa/Mastercard/Amex
numbers, mod-97-valid IBANs, IPv4/IPv6 addresses and API keys, tokens and passwords (for
``key=value`` forms only the value is labelled). Negatives carry look-alikes that are not PII:
amounts, dates, times, order ids, Luhn-invalid card numbers, bad IBANs and IPs, versions, short
numbers, "token" without a value. Deterministic: a seeded ``random.Random``, no network, and no
use of the redactor, so the set does not lean on its rules.

Each line: ``{"text": ..., "spans": [{"kind": "email", "start": i, "end": j}, ...]}`` (``spans`` is
empty for negatives); ``group`` says which generator made the line.
"""

from __future__ import annotations

import argparse
import base64
import json
import random
import re
import string
from collections import Counter
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "src" / "ratchet" / "examples" / "data"
DEFAULT_OUT = ROOT / "benchmarks" / "data" / "pii_labelled.jsonl"

Segment = tuple[str, str | None]  # text, kind (None: not PII)
Snippet = list[Segment]

FIRST = ["john", "maria", "wei", "aisha", "oliver", "sofia", "lucas", "emma", "raj", "chloe", "mateo", "hana",
         "tom", "fatima", "noah", "ines", "kenji", "zoe", "liam", "olga", "pedro", "anna", "sam", "julia"]
LAST = ["smith", "garcia", "chen", "khan", "brown", "rossi", "muller", "dubois", "patel", "kowalski", "silva",
        "tanaka", "nguyen", "obrien", "jensen", "novak", "ivanova", "haddad", "lopez", "martin"]
DOMAINS = ["gmail.com", "yahoo.co.uk", "outlook.com", "hotmail.fr", "proton.me", "icloud.com", "gmx.de",
           "mail.example.com", "corp.acme-industries.io", "students.uni-heidelberg.de", "bigbank.co.uk",
           "example.org", "web.de", "fastmail.fm", "company.travel", "mx.sub.example.net"]
B62 = string.ascii_letters + string.digits
B64URL = B62 + "-_"
ALNUM_UPPER = string.ascii_uppercase + string.digits
BBAN_ALPHABETS = {"n": string.digits, "A": string.ascii_uppercase, "c": ALNUM_UPPER}


# ---------------------------------------------------------------- values


def rand(rng: random.Random, alphabet: str, n: int) -> str:
    return "".join(rng.choice(alphabet) for _ in range(n))


def email(rng: random.Random) -> str:
    first, last = rng.choice(FIRST), rng.choice(LAST)
    local = rng.choice([
        f"{first}.{last}", f"{first}{last}", f"{first[0]}.{last}", f"{first}_{last}{rng.randint(1, 99)}",
        f"{first}.{last}+{rng.choice(['news', 'bank', 'shopping', 'tag1'])}", f"{last}.{first}{rng.randint(70, 99)}",
        f"{first}-{last}", f"{first}{rng.randint(100, 9999)}", f"{first[0].upper()}{last.capitalize()}",
    ])
    domain = rng.choice(DOMAINS)
    if rng.random() < 0.1:
        domain = domain.upper() if rng.random() < 0.5 else domain.capitalize()
    return f"{local}@{domain}"


def luhn_digit(body: str) -> str:
    total = 0
    for i, ch in enumerate(reversed(body)):
        d = int(ch)
        if i % 2 == 0:  # these are doubled once the check digit is appended
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return str((10 - total % 10) % 10)


def card_number(rng: random.Random, *, valid: bool = True) -> tuple[str, str]:
    """A formatted card number and its brand; ``valid=False`` breaks the Luhn check."""
    brand = rng.choice(["visa", "visa", "mastercard", "mastercard", "amex"])
    if brand == "visa":
        body = "4" + rand(rng, string.digits, 14)
    elif brand == "mastercard":
        prefix = str(rng.randint(51, 55)) if rng.random() < 0.7 else str(rng.randint(2221, 2720))
        body = prefix + rand(rng, string.digits, 15 - len(prefix))
    else:
        body = rng.choice(["34", "37"]) + rand(rng, string.digits, 12)
    check = luhn_digit(body)
    if not valid:
        check = str((int(check) + rng.randint(1, 9)) % 10)
    digits = body + check
    style = rng.choice(["space", "space", "dash", "plain"])
    if style == "plain":
        return digits, brand
    sep = " " if style == "space" else "-"
    groups = [digits[:4], digits[4:10], digits[10:]] if brand == "amex" else [digits[i:i + 4] for i in range(0, 16, 4)]
    return sep.join(groups), brand


IBAN_FORMATS = {  # country: BBAN as (alphabet, length) parts
    "DE": [("n", 18)], "GB": [("A", 4), ("n", 14)], "FR": [("n", 10), ("c", 11), ("n", 2)], "ES": [("n", 20)],
    "IT": [("A", 1), ("n", 10), ("c", 12)], "NL": [("A", 4), ("n", 10)], "BE": [("n", 12)],
    "CH": [("n", 5), ("c", 12)], "PL": [("n", 24)], "IE": [("A", 4), ("n", 14)], "AT": [("n", 16)],
    "PT": [("n", 21)], "SE": [("n", 20)], "NO": [("n", 11)], "DK": [("n", 14)],
}
BANK_CODES = ["NWBK", "BARC", "HBUK", "LOYD", "MIDL", "ABNA", "INGB", "RABO", "AIBK", "BOFI"]


def iban_check(country: str, bban: str) -> str:
    digits = "".join(str(int(ch, 36)) for ch in bban + country + "00")
    return f"{98 - int(digits) % 97:02d}"


def iban(rng: random.Random, *, valid: bool = True) -> str:
    country = rng.choice(list(IBAN_FORMATS))
    parts = []
    for kind, n in IBAN_FORMATS[country]:
        if kind == "A" and n == 4:
            parts.append(rng.choice(BANK_CODES))
        else:
            parts.append(rand(rng, BBAN_ALPHABETS[kind], n))
    bban = "".join(parts)
    check = iban_check(country, bban)
    if not valid:
        check = f"{(int(check) + rng.randint(1, 50)) % 97 + 2:02d}"
    value = country + check + bban
    style = rng.random()
    if style < 0.6:
        value = " ".join(value[i:i + 4] for i in range(0, len(value), 4))
    if rng.random() < 0.08:
        value = value.lower()
    return value


def phone(rng: random.Random) -> str:
    d = lambda n: rand(rng, string.digits, n)  # noqa: E731
    area = lambda: str(rng.randint(2, 9)) + d(2)  # noqa: E731
    return rng.choice([
        lambda: f"({area()}) {d(3)}-{d(4)}",
        lambda: f"{area()}-{d(3)}-{d(4)}",
        lambda: f"{area()}.{d(3)}.{d(4)}",
        lambda: f"+1 {area()} {d(3)} {d(4)}",
        lambda: f"+1-{area()}-{d(3)}-{d(4)}",
        lambda: f"+1 ({area()}) {d(3)}-{d(4)}",
        lambda: f"1-800-{d(3)}-{d(4)}",
        lambda: f"+44 20 {d(4)} {d(4)}",
        lambda: f"+44 7{d(3)} {d(6)}",
        lambda: f"07{d(3)} {d(6)}",
        lambda: f"020 {d(4)} {d(4)}",
        lambda: f"+44 (0)20 {d(4)} {d(4)}",
        lambda: f"0161 {d(3)} {d(4)}",
        lambda: f"+33 6 {d(2)} {d(2)} {d(2)} {d(2)}",
        lambda: f"06 {d(2)} {d(2)} {d(2)} {d(2)}",
        lambda: f"+33 1 {d(2)} {d(2)} {d(2)} {d(2)}",
        lambda: f"+49 30 {d(8)}",
        lambda: f"+49 151 {d(8)}",
        lambda: f"030 {d(8)}",
        lambda: f"+91 9{d(4)} {d(5)}",
        lambda: f"+91-9{d(4)}-{d(5)}",
        lambda: f"+61 4{d(2)} {d(3)} {d(3)}",
        lambda: f"04{d(2)} {d(3)} {d(3)}",
        lambda: f"+34 6{d(2)} {d(3)} {d(3)}",
        lambda: f"+39 06 {d(4)} {d(4)}",
        lambda: f"+31 6 {d(8)}",
        lambda: f"+81 3-{d(4)}-{d(4)}",
        lambda: f"+55 11 9{d(4)}-{d(4)}",
        lambda: f"+353 87 {d(3)} {d(4)}",
        lambda: f"+4420{d(8)}",
    ])()


def bare_phone(rng: random.Random) -> str:
    """Unformatted numbers that are phones only because the sentence says so."""
    d = lambda n: rand(rng, string.digits, n)  # noqa: E731
    return rng.choice([f"{rng.randint(2, 9)}{d(9)}", f"07{d(9)}", f"{rng.randint(2, 9)}{d(2)}-{d(4)}"])


def ipv4(rng: random.Random) -> str:
    return rng.choice([
        lambda: f"192.168.{rng.randint(0, 255)}.{rng.randint(1, 254)}",
        lambda: f"10.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}",
        lambda: f"172.{rng.randint(16, 31)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}",
        lambda: ".".join(str(rng.randint(1, 223)) for _ in range(4)),
        lambda: f"203.0.113.{rng.randint(1, 254)}",
    ])()


def ipv6(rng: random.Random) -> str:
    groups = [f"{rng.randint(0, 0xFFFF):x}" for _ in range(8)]
    return rng.choice([
        lambda: ":".join(groups),
        lambda: ":".join(g.zfill(4) for g in groups),
        lambda: f"2001:db8::{groups[0]}:{groups[1]}",
        lambda: f"fe80::{groups[2]}:{groups[3]}:{groups[4]}:{groups[5]}",
        lambda: f"2a02:{groups[1]}:{groups[2]}::{groups[3]}",
        lambda: "::1",
        lambda: f"::ffff:{ipv4(rng)}",
    ])()


def b64url(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data, separators=(",", ":")).encode()).decode().rstrip("=")


def jwt(rng: random.Random) -> str:
    header = b64url({"alg": rng.choice(["HS256", "RS256"]), "typ": "JWT"})
    payload = b64url({"sub": str(rng.randint(10**6, 10**9)), "name": rng.choice(FIRST).title(),
                      "iat": rng.randint(1_600_000_000, 1_750_000_000)})
    return f"{header}.{payload}.{rand(rng, B64URL, 43)}"


def password(rng: random.Random) -> str:
    word = rng.choice(["summer", "dragon", "monkey", "sunshine", "football", "shadow", "london", "princess"])
    return rng.choice([
        lambda: f"{word.capitalize()}{rng.randint(1, 2025)}{rng.choice('!@#$%&*?')}",
        lambda: f"{word}{rng.randint(10, 99)}",
        lambda: rand(rng, B62 + "!@#$%^&*", rng.randint(10, 16)),
        lambda: f"{rand(rng, string.ascii_letters, 3)}{rng.randint(100, 999)}{rand(rng, string.ascii_letters, 3)}",
        lambda: "-".join(rng.sample(["correct", "horse", "battery", "staple", "purple", "river", "cloud"], 4)),
        lambda: word,  # a plain word: a real (weak) password
    ])()


def api_token(rng: random.Random) -> str:
    """A provider key or token in its real shape."""
    return rng.choice([
        lambda: "sk-" + rand(rng, B62, 48),
        lambda: "sk-proj-" + rand(rng, B64URL, rng.randint(48, 150)),
        lambda: "sk-ant-api03-" + rand(rng, B64URL, 93) + "AA",
        lambda: "AKIA" + rand(rng, string.ascii_uppercase + "234567", 16),
        lambda: rng.choice(["ghp_", "gho_", "ghs_"]) + rand(rng, B62, 36),
        lambda: "github_pat_" + rand(rng, B62, 22) + "_" + rand(rng, B62, 59),
        lambda: f"xox{rng.choice('bpa')}-{rand(rng, string.digits, 12)}-{rand(rng, string.digits, 13)}-"
                + rand(rng, B62, 24),
        lambda: rng.choice(["sk_live_", "pk_live_", "rk_live_"]) + rand(rng, B62, rng.choice([24, 34, 99])),
        lambda: "AIza" + rand(rng, B64URL, 35),
        lambda: jwt(rng),
    ])()


def pem_block(rng: random.Random) -> str:
    label = rng.choice(["RSA PRIVATE KEY", "PRIVATE KEY", "OPENSSH PRIVATE KEY", "EC PRIVATE KEY"])
    lines = [rand(rng, string.ascii_letters + string.digits + "+/", 64) for _ in range(rng.randint(2, 4))]
    newline = "\n" if rng.random() < 0.7 else "\\n"
    return f"-----BEGIN {label}-----{newline}{newline.join(lines)}{newline}-----END {label}-----"


# ---------------------------------------------------------------- snippets: where values go


def snippet(template: str, value: str, kind: str | None) -> Snippet:
    """``template`` with ``{v}`` replaced by ``value``, labelled ``kind``."""
    before, after = template.split("{v}")
    return [(before, None), (value, kind), (after, None)]


def email_snippet(rng: random.Random) -> Snippet:
    return snippet(rng.choice([
        "My email is {v}.", "You can reach me at {v}", "Email: {v}", "please send the statement to {v}, thanks",
        "my e-mail address is {v} if you need it", "(contact: {v})", "I changed my email to {v} last week.",
        "Send the confirmation to {v} please", "reply to {v}", "my old address {v} no longer works",
        "is {v} still the email on file?",
    ]), email(rng), "email")


def phone_snippet(rng: random.Random) -> Snippet:
    if rng.random() < 0.15:
        return snippet(rng.choice(["call me on {v}", "my number is {v}", "text me at {v} please",
                                   "{v} is my mobile"]), bare_phone(rng), "phone")
    return snippet(rng.choice([
        "Call me on {v}.", "my number is {v}", "You can text me at {v}", "Phone: {v}", "reach me on {v} after 6pm",
        "{v} is my mobile.", "my phone number changed to {v}", "please ring {v} if there is a problem",
        "Contact number {v}", "I tried calling from {v} but nobody answered.",
    ]), phone(rng), "phone")


def card_snippet(rng: random.Random) -> Snippet:
    number, _ = card_number(rng)
    return snippet(rng.choice([
        "My card number is {v}.", "card ending {last4}, no wait the full number is {v}", "I was charged twice on {v}",
        "Card: {v} exp 09/27", "the card {v} was declined", "please block {v} immediately",
        "can you check card {v}?", "my new card is {v} and it still is not active",
    ]).replace("{last4}", number[-4:]), number, "card")


def iban_snippet(rng: random.Random) -> Snippet:
    return snippet(rng.choice([
        "My IBAN is {v}.", "please transfer it to {v}", "IBAN: {v}", "the money went to {v} instead of my account",
        "send the refund to {v} please", "is {v} correct for a SEPA transfer?",
    ]), iban(rng), "iban")


def ip_snippet(rng: random.Random) -> Snippet:
    value = ipv4(rng) if rng.random() < 0.6 else ipv6(rng)
    return snippet(rng.choice([
        "My IP address is {v}.", "I got a login alert from {v}, that was not me", "the app says {v} is blocked",
        "logged in from {v} yesterday", "connecting from {v} fails", "(ip {v})", "security email mentioned {v}",
    ]), value, "ip")


def secret_snippet(rng: random.Random) -> Snippet:
    choice = rng.random()
    if choice < 0.45:
        return snippet(rng.choice([
            "here is my API key {v}", "I pasted {v} into the app", "my key {v} stopped working",
            "Using key {v} in the integration.", "is {v} a valid key?", "the token {v} expired",
        ]), api_token(rng), "secret")
    if choice < 0.55:
        token = jwt(rng) if rng.random() < 0.5 else rand(rng, B64URL, rng.randint(24, 40)) + str(rng.randint(0, 9))
        return snippet(rng.choice(["Authorization: Bearer {v}", "the header was 'Bearer {v}'",
                                   "curl -H \"Authorization: Bearer {v}\" fails"]), token, "secret")
    if choice < 0.62:
        return snippet(rng.choice(["my key:\n{v}\nwhat now?", "{v}", "I accidentally sent {v} in chat"]),
                       pem_block(rng), "secret")
    name = rng.choice(["api_key", "API_KEY", "apiKey", "client_secret", "access_token", "password", "db_password",
                       "SECRET_KEY", "auth_token", "passwd", "OPENAI_API_KEY", "x-api-key"])
    value = password(rng) if "pass" in name.lower() else rand(rng, B62, rng.choice([16, 24, 32, 40]))
    form = rng.random()
    if form < 0.35:
        template = f"{name}={{v}}"
    elif form < 0.6:
        template = f"{name}: {{v}}"
    elif form < 0.8:
        template = f'{{"{name}": "{{v}}"}}'
    else:
        template = rng.choice(["my password is {v}", "the password is {v}", "Password = {v}"])
    return snippet(template, value, "secret")


SNIPPETS: dict[str, Callable[[random.Random], Snippet]] = {
    "email": email_snippet, "phone": phone_snippet, "card": card_snippet, "iban": iban_snippet, "ip": ip_snippet,
    "secret": secret_snippet,
}


def negative_snippet(rng: random.Random) -> Snippet:
    """A look-alike that is not PII."""
    d = lambda n: rand(rng, string.digits, n)  # noqa: E731
    bad_card, _ = card_number(rng, valid=False)
    text = rng.choice([
        lambda: f"I was charged £{rng.randint(1, 9)},{d(3)}.{d(2)} instead of £{rng.randint(10, 999)}.{d(2)}",
        lambda: f"the payment of ${rng.randint(1, 99)},{d(3)}.{d(2)} is still pending",
        lambda: f"€ {rng.randint(1, 99)}.{d(3)},{d(2)} left my account",
        lambda: f"on {rng.randint(2019, 2025)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}",
        lambda: f"since {rng.randint(1, 12):02d}/{rng.randint(1, 28):02d}/{rng.randint(2019, 2025)}",
        lambda: f"on {rng.randint(1, 28):02d}.{rng.randint(1, 12):02d}.{rng.randint(2019, 2025)} at "
                f"{rng.randint(8, 22)}:{rng.choice(['00', '15', '30', '45'])}",
        lambda: f"around {rng.randint(10, 23)}:{rng.randint(0, 59):02d}:{rng.randint(0, 59):02d}",
        lambda: f"table for {rng.randint(2, 20)} at {rng.randint(5, 9)}.{rng.choice(['00', '15', '30'])}pm",
        lambda: f"order #{rand(rng, string.ascii_uppercase, 2)}{d(8)}",
        lambda: f"my order number is ORD-{rng.randint(2019, 2025)}-{d(6)}",
        lambda: f"order number {d(10)} has not arrived",
        lambda: f"reference {d(4)}-{rand(rng, string.ascii_uppercase, 3)}-{d(4)}",
        lambda: f"tracking 1Z{rand(rng, string.ascii_uppercase + string.digits, 16)}",
        lambda: f"the card {bad_card} keeps failing",
        lambda: f"number {bad_card} from the letter",
        lambda: f"app version {rng.randint(1, 20)}.{rng.randint(0, 30)}.{rng.randint(0, 99)}",
        lambda: f"on v{rng.randint(1, 9)}.{rng.randint(0, 9)}.{rng.randint(0, 20)}",
        lambda: f"version {rng.randint(1, 9)}.{rng.randint(0, 9)}.{rng.randint(0, 9)}.{rng.randint(0, 99)}",
        lambda: f"iOS {rng.randint(14, 18)}.{rng.randint(0, 6)}.{rng.randint(1, 3)}",
        lambda: f"the address {rng.randint(256, 999)}.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(0, 255)}"
                " from the error",
        lambda: f"error code {rng.randint(100, 599)}-{d(3)}",
        lambda: f"extension {d(4)}",
        lambda: f"call {rng.choice(['911', '999', '112', '111'])}",
        lambda: f"room {rng.randint(100, 999)}",
        lambda: f"I tried to call you {rng.randint(2, 9)} times",
        lambda: f"the code {d(6)} did not work",
        lambda: "I never got the token",
        lambda: "what is a secret question?",
        lambda: "Password: forgot it",
        lambda: "my password is not working",
        lambda: "the API key field is empty",
        lambda: "token: none",
        lambda: f"IBAN {iban(rng, valid=False)} was rejected",
        lambda: f"follow us @{rng.choice(FIRST)}_{rng.choice(LAST)}",
        lambda: f"{rng.randint(2, 12)}-{rng.randint(2, 12)} people",
        lambda: f"ISBN 978-{d(1)}-{d(2)}-{d(6)}-{d(1)}",
        lambda: f"sort code {d(2)}-{d(2)}-{d(2)}, account {d(8)}",
        lambda: f"{rng.randint(1, 99)}.{rng.randint(0, 9)}% interest",
        lambda: f"between {rng.randint(1, 12)} and {rng.randint(1, 12)}",
        lambda: f"limit of {rng.randint(1, 9)},{d(3)},{d(3)}",
        lambda: f"postcode SW{rng.randint(1, 20)}A {rng.randint(1, 9)}AA",
        lambda: f"commit {rand(rng, '0123456789abcdef', 12)}",
        lambda: f"{rng.randint(10, 99)} {rng.randint(10, 99)} {rng.randint(10, 99)}",
        lambda: f"ratio {rng.randint(1, 9)}:{rng.randint(1, 9)}:{rng.randint(1, 9)}",
    ])()
    return [(text, None)]


# ---------------------------------------------------------------- assembling texts


def load_carriers() -> list[str]:
    texts = []
    for path in sorted(DATA.glob("*/*.jsonl")):
        for line in path.read_text().splitlines():
            text = json.loads(line)["text"].strip()
            if text and "@" not in text and not re.search(r"\d{7}", re.sub(r"[ ().-]", "", text)):
                texts.append(text)
    return texts


def place(rng: random.Random, carrier: str, snippets: list[Snippet]) -> dict:
    """Put snippets before, after or inside the carrier; return the text and its labelled spans."""
    pieces: list[Snippet] = [[(carrier, None)]]
    for snip in snippets:
        where = rng.random()
        if where < 0.55:
            glue = rng.choice([" ", ". ", ", ", " - "]) if carrier[-1:] not in ".?!" else " "
            pieces.append([(glue, None), *snip])
        elif where < 0.85:
            pieces.insert(0, [*snip, (rng.choice([". ", " ", ", ", "\n"]), None)])
        else:  # between two sentences or clauses of the carrier
            index = next(i for i, piece in enumerate(pieces) if piece == [(carrier, None)])
            cuts = [m.end() for m in re.finditer(r"[.?!,] ", carrier)]
            if not cuts:
                pieces.append([(" ", None), *snip])
            else:
                cut = rng.choice(cuts)
                pieces[index] = [(carrier[:cut], None), *snip, (rng.choice([" ", ". "]), None)]
                carrier = carrier[cut:]  # later snippets may go into the rest
                pieces.insert(index + 1, [(carrier, None)])
    out, spans = [], []
    pos = 0
    for segment, kind in (seg for piece in pieces for seg in piece):
        if kind:
            spans.append({"kind": kind, "start": pos, "end": pos + len(segment)})
        out.append(segment)
        pos += len(segment)
    return {"text": "".join(out), "spans": spans}


def build(seed: int) -> list[dict]:
    rng = random.Random(seed)
    carriers = load_carriers()
    plan = [("email", 85), ("card", 85), ("secret", 120), ("phone", 75), ("iban", 50), ("ip", 50), ("multi", 45),
            ("negative", 190), ("plain", 50)]
    rows = []
    for group, count in plan:
        for _ in range(count):
            carrier = rng.choice(carriers)
            if group in SNIPPETS:
                snippets = [SNIPPETS[group](rng)]
            elif group == "multi":
                snippets = [SNIPPETS[k](rng) for k in rng.sample(list(SNIPPETS), 2)]
                if rng.random() < 0.4:
                    snippets.append(negative_snippet(rng))
            elif group == "negative":
                snippets = [negative_snippet(rng) for _ in range(rng.choice([1, 1, 2]))]
            else:
                snippets = []
            row = place(rng, carrier, snippets)
            rows.append({**row, "group": group})
    rng.shuffle(rows)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()
    rows = build(args.seed)
    for row in rows:  # offsets are exact
        for span in row["spans"]:
            assert span["end"] > span["start"] and row["text"][span["start"]:span["end"]].strip()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    kinds = Counter(span["kind"] for row in rows for span in row["spans"])
    negatives = sum(1 for row in rows if not row["spans"])
    print(f"{len(rows)} texts → {args.out}: {dict(sorted(kinds.items()))}, {negatives} without PII")


if __name__ == "__main__":
    main()
