from __future__ import annotations

from collections import Counter, namedtuple
from pathlib import Path

import pytest

from ratchet.config import load_settings
from ratchet.errors import ConfigError
from ratchet.telemetry import Redactor
from ratchet.telemetry.redact import BUILTIN_KINDS, iban_valid, luhn_valid, token_for

R = Redactor()


def redacted(text: str) -> str:
    return R.redact_text(text)[0]


def assert_redacted(text: str, value: str, kind: str) -> None:
    """``value`` inside ``text`` becomes exactly one token of ``kind``, and nothing else changes."""
    out, counts = R.redact_text(text)
    assert out == text.replace(value, token_for(kind)), out
    assert counts == Counter({kind: text.count(value)})


def assert_untouched(text: str) -> None:
    out, counts = R.redact_text(text)
    assert (out, counts) == (text, Counter())


# ---------------------------------------------------------------- e-mail


@pytest.mark.parametrize("value", [
    "john.smith@example.com", "j.smith+news@mail.example.co.uk", "first_last99@corp.acme-industries.io",
    "O'Brien@Example.ORG", "x@students.uni-heidelberg.de", "josé.garcía@correo.es",
])
@pytest.mark.parametrize("template", ["my email is {}.", "Email:{} thanks", "<{}>", "({}) please", "{}"])
def test_emails_are_redacted(template: str, value: str) -> None:
    assert_redacted(template.format(value), value, "email")


@pytest.mark.parametrize("text", [
    "follow us @ratchet_dev", "email support@ for help", "user@localhost is not an address", "a @ b . com",
    "llamacpp/gemma-3-270m-q4_k_m@sha256:a5fd3b62230aa5ec",
])
def test_email_lookalikes_are_not(text: str) -> None:
    assert_untouched(text)


# ---------------------------------------------------------------- phones


@pytest.mark.parametrize("value", [
    "(555) 123-4567", "555-123-4567", "555.123.4567", "+1 555 123 4567", "+1-555-123-4567", "+1 (555) 123-4567",
    "1-800-555-0199", "+44 20 7946 0958", "+44 (0)20 7946 0958", "+44 7700 900123", "07700 900123",
    "020 7946 0958", "0161 496 0000", "+33 6 12 34 56 78", "06 12 34 56 78", "+49 30 12345678", "030 12345678",
    "+91 98765 43210", "+61 4 1234 5678", "+81 3-1234-5678", "+4420 7946 0958", "0044 20 7946 0958",
])
def test_phones_are_redacted(value: str) -> None:
    assert_redacted(f"you can reach me on {value}, thanks", value, "phone")
    assert_redacted(f"{value}", value, "phone")


@pytest.mark.parametrize(("text", "value"), [
    ("call me on 5551234567", "5551234567"),
    ("07700900123 is my number", "07700900123"),
    ("text me at 555-1234.", "555-1234"),
])
def test_unformatted_numbers_are_phones_next_to_a_phone_word(text: str, value: str) -> None:
    assert_redacted(text, value, "phone")


def test_a_following_number_is_not_swallowed_by_a_phone() -> None:
    assert redacted("+1 555 123 4567 for 12 people") == "[PHONE] for 12 people"
    assert redacted("ring 020 7946 0958 12 times") == "ring [PHONE] 12 times"


@pytest.mark.parametrize("text", [
    "I was charged £1,250.00 instead of £125.00", "the payment of $12,499.99 is pending", "€ 1.250.000,00",
    "on 2024-05-01", "since 05/01/2024", "on 01.05.2024 at 19:30", "around 10:30:45", "at 7.30pm",
    "table for 12", "a party of 4 on the 12th", "call 911", "extension 1234", "room 305", "10-12 people",
    "order #AB12345678", "order number 1234567890 has not arrived", "my order number is ORD-2024-000123",
    "reference 1234-ABC-5678", "sort code 20-00-00, account 12345678", "ISBN 978-3-16-148410-0",
    "limit of 1,000,000", "the code 613441 did not work", "I tried to call you 3 times",
    "550e8400-e29b-41d4-a716-446655440000", "12 34 56", "on 2024-05-01 19:30",
])
def test_phone_lookalikes_are_not(text: str) -> None:
    assert_untouched(text)


# ---------------------------------------------------------------- cards


@pytest.mark.parametrize("value", [
    "4111 1111 1111 1111", "4111-1111-1111-1111", "4111111111111111", "5500 0000 0000 0004",
    "2223 0031 2200 3222", "3782 822463 10005", "378282246310005", "6011 1111 1111 1117", "4222222222222",
])
def test_luhn_valid_cards_are_redacted(value: str) -> None:
    assert_redacted(f"my card number is {value} exp 09/27", value, "card")


@pytest.mark.parametrize("text", [
    "my card number is 4111 1111 1111 1112", "card 4111111111111112", "3782 822463 10006",
    "the card 2309 0470 5538 4857 keeps failing",  # Luhn-invalid: neither a card nor, in part, a phone
    "411111111111",  # 12 digits
    "41111111111111111111",  # 20 digits
    "ID4111111111111111",
])
def test_luhn_invalid_or_wrong_length_numbers_are_not_cards(text: str) -> None:
    assert_untouched(text)


def test_a_card_followed_by_another_number_is_still_found() -> None:
    assert redacted("charged on 4111 1111 1111 1111 12 times") == "charged on [CARD] 12 times"


def test_luhn_check() -> None:
    assert luhn_valid("4111111111111111") and luhn_valid("378282246310005") and luhn_valid("0")
    assert not luhn_valid("4111111111111112") and not luhn_valid("378282246310006")


# ---------------------------------------------------------------- IBAN


@pytest.mark.parametrize("value", [
    "DE89 3704 0044 0532 0130 00", "DE89370400440532013000", "GB82 WEST 1234 5698 7654 32", "GB82WEST12345698765432",
    "FR14 2004 1010 0505 0001 3M02 606", "NL91 ABNA 0417 1643 00", "BE68 5390 0754 7034", "NO93 8601 1117 947",
    "CH93 0076 2011 6238 5295 7", "IT60 X054 2811 1010 0000 0123 456", "ES91 2100 0418 4502 0005 1332",
    "gb82 west 1234 5698 7654 32",
])
def test_valid_ibans_are_redacted(value: str) -> None:
    assert_redacted(f"IBAN: {value}, thanks", value, "iban")
    assert_redacted(f"please transfer it to {value} OK", value, "iban")


@pytest.mark.parametrize("text", [
    "IBAN GB82 WEST 1234 5698 7654 33",  # bad check digits
    "DE89 3704 0044 0532 0130 01",
    "IBAN DE56 9690 1330 2592 6168 00 was rejected",  # and no card inside it either
    "XX89 3704 0044 0532 0130 00",  # unknown country
    "DE89 3704 0044 0532 0130",  # too short for DE
    "AB12 CDEF GHIJ KLMN OPQR",
])
def test_invalid_ibans_are_not(text: str) -> None:
    assert_untouched(text)


def test_iban_check() -> None:
    assert iban_valid("GB82WEST12345698765432") and iban_valid("de89370400440532013000")
    assert not iban_valid("GB82WEST12345698765433") and not iban_valid("GB82WEST1234569876543")
    assert not iban_valid("ZZ82WEST12345698765432")


# ---------------------------------------------------------------- IP addresses


@pytest.mark.parametrize("value", [
    "192.168.1.1", "10.0.0.255", "8.8.8.8", "255.255.255.255", "0.0.0.0", "2001:db8::8a2e:370:7334",
    "2001:0db8:85a3:0000:0000:8a2e:0370:7334", "fe80::1ff:fe23:4567:890a", "::1", "::ffff:192.0.2.128",
])
def test_ip_addresses_are_redacted(value: str) -> None:
    assert_redacted(f"login alert from {value}, not me", value, "ip")
    assert_redacted(f"my IP is {value}.", value, "ip")


def test_ip_with_port_or_in_url() -> None:
    assert redacted("http://192.168.1.1:8080/admin") == "http://[IP]:8080/admin"
    assert redacted("[2001:db8::1]:443") == "[[IP]]:443"


@pytest.mark.parametrize("text", [
    "999.1.1.1", "256.1.1.1", "1.2.3", "1.2.3.4.5", "v1.2.3", "version 1.2.3.4", "app v1.2.3.4", "Chrome/120.0.0.0",
    "10:30:45", "at 19:30", "00:1A:2B:3C:4D:5E", "std::vector", "Note:: see below", "a :: b", "3.14",
    "iOS 17.4.1", "1.250.000",
])
def test_ip_lookalikes_are_not(text: str) -> None:
    assert_untouched(text)


# ---------------------------------------------------------------- secrets


@pytest.mark.parametrize("value", [
    "sk-" + "a1B2c3D4e5" * 5,
    "sk-proj-" + "Ab3_dE-9" * 12,
    "sk-ant-api03-" + "xY7_-kLm" * 12 + "AA",
    "AKIAIOSFODNN7EXAMPLE",
    "ghp_" + "a1B2c3D4e5F6" * 3,
    "github_pat_11ABCDEFG0123456789abc_" + "x1Y2z3" * 10,
    "xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx",
    "sk_live_" + "4eC39HqLyjWDarjtT1zdp7dc",
    "pk_live_" + "4eC39HqLyjWDarjtT1zdp7dc",
    "rk_live_" + "4eC39HqLyjWDarjtT1zdp7dc",
    "AIza" + "SyD-1234567890abcdefghijklmnopqrstu",
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
])
def test_provider_keys_and_tokens_are_redacted(value: str) -> None:
    assert_redacted(f"here is my key {value} thanks", value, "secret")
    assert_redacted(f"({value}).", value, "secret")


@pytest.mark.parametrize(("text", "expected"), [
    ("Authorization: Bearer abcdef1234567890ABCDEF", "Authorization: Bearer [SECRET]"),
    ("the header was 'Bearer UiMuGaVclmiGFJv3Edkl3idjru_408o2gyrZ5'", "the header was 'Bearer [SECRET]'"),
    ("Authorization: Bearer utDBlT3IrKFiHhc3K823ixBe21TTsw3. We are 7", "Authorization: Bearer [SECRET]. We are 7"),
    ("Authorization: Basic dXNlcjpwYXNzd29yZDEyMw==", "Authorization: Basic [SECRET]"),
    ("api_key=abc123", "api_key=[SECRET]"),
    ("OPENAI_API_KEY=whatever", "OPENAI_API_KEY=[SECRET]"),
    ("https://x.io/v1?api_key=abc123&page=2", "https://x.io/v1?api_key=[SECRET]&page=2"),
    ("password: hunter2", "password: [SECRET]"),
    ("passwd: princess", "passwd: [SECRET]"),
    ("Username: john, Password: sunshine, thanks", "Username: john, Password: [SECRET], thanks"),
    ("X-Api-Key: abcd1234efgh", "X-Api-Key: [SECRET]"),
    ("api key: abc123def", "api key: [SECRET]"),
    ("client_secret = 'plain words here'", "client_secret = '[SECRET]'"),
    ('{"apiKey": "AbCd1234", "password": "sunshine"}', '{"apiKey": "[SECRET]", "password": "[SECRET]"}'),
    ('{\\"access_token\\": \\"zyx987\\"}', '{\\"access_token\\": \\"[SECRET]\\"}'),
    ("aws_secret_access_key=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "aws_secret_access_key=[SECRET]"),
    ("my password is Summer2024!", "my password is [SECRET]"),
    ("my PIN is 4821.", "my PIN is [SECRET]."),
    ("token: 123456", "token: [SECRET]"),
    ("postgres://app:s3cr3t@db.internal:5432/app", "postgres://app:[SECRET]@db.internal:5432/app"),
])
def test_secret_values_are_redacted_and_names_kept(text: str, expected: str) -> None:
    out, counts = R.redact_text(text)
    assert out == expected
    assert counts == Counter({"secret": expected.count("[SECRET]")})


def test_private_key_blocks_are_redacted_whole() -> None:
    block = "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA1234abcd\nZ9y8x7w6==\n-----END RSA PRIVATE KEY-----"
    assert_redacted(f"my key:\n{block}\nwhat now?", block, "secret")
    escaped = block.replace("\n", "\\n")
    assert_redacted(f'"key": "{escaped}"', escaped, "secret")
    truncated = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmU"
    assert_redacted(truncated, truncated, "secret")


@pytest.mark.parametrize("text", [
    "I never got the token", "what is a secret question?", "How do I reset my password?", "Password: forgot it",
    "my password is not working", "my password is wrong", "the API key field is empty", "token: none",
    "password=null", "token: what", "max_tokens=256", "tokens: 512", "token_count=3", "api_key_env = OPENAI",
    "spin: 1234", "The secret: be nice", "Bearer of this card 12", "Basic account with 2 cards",
    "risk-free sk-learn model", "My PIN is blocked: what can I do now?", "password: reset please",
    "password=[SECRET]", "token: ${API_TOKEN}",
])
def test_secret_lookalikes_are_not(text: str) -> None:
    assert_untouched(text)


# ---------------------------------------------------------------- overlaps, tokens, idempotence

SAMPLES = [
    "mail j.smith+x@mail.example.co.uk or call +44 20 7946 0958; card 4111 1111 1111 1111",
    "IBAN GB82 WEST 1234 5698 7654 32 from 192.168.0.1 with api_key=sk-" + "a1B2c3D4e5" * 5,
    "password: john@example.com and token=AKIAIOSFODNN7EXAMPLE",
    "postgres://app:s3cr3t@db.example.com/app",
    "Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.abc123 at 2001:db8::1",
    "[EMAIL] [PHONE] [CARD] [IBAN] [IP] [SECRET] password=[SECRET] Bearer [SECRET]",
    "I was charged £1,250.00 on 2024-05-01 at 19:30 for order #AB12345678",
]


def test_overlapping_matches_become_one_token_of_the_higher_priority_kind() -> None:
    out, counts = R.redact_text("password: john@example.com")
    assert (out, counts) == ("password: [SECRET]", Counter({"secret": 1}))
    out, counts = R.redact_text("postgres://app:s3cr3t@db.example.com/app")
    assert counts == Counter({"secret": 1})
    assert "s3cr3t" not in out and "[EMAIL]" not in out


@pytest.mark.parametrize("text", SAMPLES)
def test_redacting_twice_changes_nothing_more(text: str) -> None:
    once, _ = R.redact_text(text)
    twice, counts = R.redact_text(once)
    assert twice == once
    assert counts == Counter()


def test_replacement_tokens_are_never_redacted_even_by_greedy_extra_patterns() -> None:
    greedy = Redactor({"shout": r"[A-Z]{2,}", "bracket": r"\[\w+"})
    text = " ".join(token_for(kind) for kind in greedy.kinds)
    assert greedy.redact_text(text) == (text, Counter())
    out, counts = greedy.redact_text("mail a@b.com NOW")
    assert out == "mail [EMAIL] [SHOUT]"
    assert counts == Counter({"email": 1, "shout": 1})


# ---------------------------------------------------------------- values


def test_nested_values_are_redacted_with_counts_and_keys_untouched() -> None:
    Point = namedtuple("Point", "label weight")
    record = {
        "signature": "triage",
        "input": {"text": "call me on 555-123-4567 or mail a@b.com", "a@b.com": "key is kept"},
        "history": ["card 4111 1111 1111 1111", ("from 10.0.0.1", 3), Point("x@y.org", 0.5)],
        "tokens": 512,
        "latency_ms": 12.5,
        "success": True,
        "error": None,
        "raw": b"a@b.com",
    }
    out, counts = R.redact(record)
    assert out == {
        "signature": "triage",
        "input": {"text": "call me on [PHONE] or mail [EMAIL]", "a@b.com": "key is kept"},
        "history": ["card [CARD]", ("from [IP]", 3), Point("[EMAIL]", 0.5)],
        "tokens": 512,
        "latency_ms": 12.5,
        "success": True,
        "error": None,
        "raw": b"a@b.com",
    }
    assert type(out["history"][2]) is Point and type(out["history"][1]) is tuple
    assert counts == Counter({"phone": 1, "email": 2, "card": 1, "ip": 1})
    assert record["input"]["text"].startswith("call me on 555")  # the input is not modified


@pytest.mark.parametrize("value", [None, 0, 3.5, True, b"a@b.com", "", "no pii here"])
def test_values_without_pii_come_back_unchanged(value: object) -> None:
    assert R.redact(value) == (value, Counter())


# ---------------------------------------------------------------- configuration


def test_kinds_and_tokens() -> None:
    assert R.kinds == BUILTIN_KINDS == ("email", "phone", "card", "iban", "ip", "secret", "ssn")
    assert Redactor({"employee_id": r"EMP-\d{6}"}).kinds == (*BUILTIN_KINDS, "employee_id")
    assert token_for("employee_id") == "[EMPLOYEE_ID]"


def test_extra_patterns_from_the_config_file(tmp_path: Path) -> None:
    (tmp_path / "ratchet.toml").write_text(
        "[telemetry.redact_patterns]\n"
        "employee_id = 'EMP-\\d{6}'\n"
        "postcode = '\\b[A-Z]{1,2}\\d{1,2}[A-Z]? \\d[A-Z]{2}\\b'\n"
    )
    redactor = Redactor(load_settings().telemetry.redact_patterns)
    out, counts = redactor.redact_text("EMP-123456 lives at SW1A 1AA, mail a@b.com")
    assert out == "[EMPLOYEE_ID] lives at [POSTCODE], mail [EMAIL]"
    assert counts == Counter({"employee_id": 1, "postcode": 1, "email": 1})


def test_an_invalid_regex_names_the_key_and_the_error() -> None:
    with pytest.raises(ConfigError) as err:
        Redactor({"fine": r"\d+", "order_id": r"ORD-(\d+"})
    message = str(err.value)
    assert "telemetry.redact_patterns.order_id" in message
    assert "missing ), unterminated subpattern" in message


@pytest.mark.parametrize(("kind", "says"), [("email", "built-in"), ("bad kind!", "a kind is a name")])
def test_extra_kinds_must_be_new_names(kind: str, says: str) -> None:
    with pytest.raises(ConfigError, match=says):
        Redactor({kind: r"x"})


def test_empty_matches_of_extra_patterns_are_ignored() -> None:
    assert Redactor({"maybe": r"z*"}).redact_text("abc") == ("abc", Counter())


@pytest.mark.parametrize(("text", "expected", "kind"), [
    ("card 4111.1111.1111.1111 please", "card [CARD] please", "card"),
    ("card 4111/1111/1111/1111 please", "card [CARD] please", "card"),
    ("write to jane.roe @ example.com today", "write to [EMAIL] today", "email"),
    ("it is john dot doe at gmail dot com", "it is [EMAIL]", "email"),
    ("reach alice[at]example[dot]org now", "reach [EMAIL] now", "email"),
    ("alice (at) example (dot) org", "[EMAIL]", "email"),
    ("use sk-abcdefghijklmnopqrstuvwxyzABCD here", "use [SECRET] here", "secret"),
    ("my ssn is 123-45-6789.", "my ssn is [SSN].", "ssn"),
])
def test_formats_written_to_slip_past_are_caught(text: str, expected: str, kind: str) -> None:
    """Issue 13: these reached telemetry unredacted."""
    out, counts = Redactor().redact_text(text)
    assert out == expected and counts == Counter({kind: 1})
    assert Redactor().redact_text(out) == (out, Counter())  # idempotent


@pytest.mark.parametrize("text", [
    "I looked at google.com for rates", "dates 12/05/2024 and 2024.05.12", "version 4.1.11.1111",
    "ref 4111.1111.1111.1112 (not Luhn)", "sk-some-hyphenated-words-here", "order 123-00-4567 and 666-12-3456",
    "meet at 5.30 at the bank", "the dot com bubble was at its peak",
])
def test_the_new_formats_leave_lookalikes_alone(text: str) -> None:
    assert Redactor().redact_text(text) == (text, Counter())


def test_numbers_are_redacted_by_their_string_form() -> None:
    value = {"card": 4111111111111111, "count": 3, "flag": True, "rate": 1.5, "none": None, "n": [4111111111111111]}
    out, counts = Redactor().redact(value)
    assert out == {"card": "[CARD]", "count": 3, "flag": True, "rate": 1.5, "none": None, "n": ["[CARD]"]}
    assert counts == Counter({"card": 2})
