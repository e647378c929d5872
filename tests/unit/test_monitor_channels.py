"""Alert channels against real local servers: an HTTP receiver (Slack, webhook) and an SMTP server (aiosmtpd)."""

import json
import shutil
import ssl
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from email import message_from_bytes, policy
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from ratchet.config import Settings
from ratchet.errors import ConfigError, DeliveryError
from ratchet.monitor import Alert, AlertDispatcher, build_channels
from ratchet.monitor.channels import EmailChannel, FileChannel, LogChannel, SlackChannel, WebhookChannel
from ratchet.monitor.channels.slack import COLORS
from ratchet.monitor.results import CheckResult

ALERT = Alert("error", "Orchestration Run Failures", "Orchestration has failed 2 consecutive times",
              {"run_id": "run_20261125_020000", "consecutive_failures": 2,
               "last_error": "Quality gates failed: classify_intent quality=65.0 < 70.0"},
              timestamp="2026-11-25T12:00:00+00:00", condition="orchestration/consecutive_failures")


# -- a real HTTP receiver ------------------------------------------------------------------------------


class Receiver:
    """A local HTTP server recording every POST; answers ``status`` after ``delay`` seconds."""

    def __init__(self, port: int, *, status: int = 200, delay: float = 0.0, body: str = "ok") -> None:
        self.requests: list[dict[str, Any]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                receiver.requests.append({"path": self.path, "headers": dict(self.headers), "body": json.loads(raw),
                                          "at": time.monotonic()})
                if delay:
                    time.sleep(delay)
                payload = body.encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except OSError:  # the client gave up (timeout)
                    pass

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        self.server.block_on_close = False
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{port}/hooks/T000/B000/secret-token"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver(free_port: Callable[[], int]) -> Iterator[Callable[..., Receiver]]:
    started: list[Receiver] = []

    def start(**kwargs: Any) -> Receiver:
        started.append(Receiver(free_port(), **kwargs))
        return started[-1]

    yield start
    for r in started:
        r.close()


def test_slack_posts_an_attachment_coloured_by_level(receiver: Callable[..., Receiver]) -> None:
    slack = receiver()
    SlackChannel(slack.url, timeout_s=2).send(ALERT)
    (request,) = slack.requests
    assert request["path"] == "/hooks/T000/B000/secret-token"
    assert request["headers"]["Content-Type"] == "application/json"
    body = request["body"]
    assert body["text"] == "[ERROR] Orchestration Run Failures"
    (attachment,) = body["attachments"]
    assert attachment["color"] == "danger" and attachment["title"] == ALERT.title
    assert attachment["text"] == ALERT.message
    assert attachment["ts"] == 1795608000  # 2026-11-25T12:00:00Z
    fields = {f["title"]: f for f in attachment["fields"]}
    assert fields["consecutive_failures"] == {"title": "consecutive_failures", "value": "2", "short": True}
    assert fields["last_error"]["value"].startswith("Quality gates failed") and not fields["last_error"]["short"]
    assert (COLORS["info"], COLORS["warning"], COLORS["critical"]) == ("good", "#daa038", "danger")


def test_webhook_posts_the_alert_json(receiver: Callable[..., Receiver]) -> None:
    hook = receiver()
    WebhookChannel(hook.url, timeout_s=2).send(ALERT)
    assert hook.requests[0]["body"] == ALERT.to_dict()
    assert set(ALERT.to_dict()) == {"level", "title", "message", "timestamp", "details"}


def test_http_failures_raise_without_the_secret_url(receiver: Callable[..., Receiver],
                                                    free_port: Callable[[], int]) -> None:
    failing = receiver(status=500, body="internal error")
    with pytest.raises(DeliveryError, match="slack: HTTP 500 Internal Server Error: internal error") as info:
        SlackChannel(failing.url, timeout_s=2).send(ALERT)
    assert "secret-token" not in str(info.value)
    slow = receiver(delay=0.6)
    started = time.monotonic()
    with pytest.raises(DeliveryError, match=r"webhook: no answer within 0.2 s"):
        WebhookChannel(slow.url, timeout_s=0.2).send(ALERT)
    assert time.monotonic() - started < 0.55
    with pytest.raises(DeliveryError, match="webhook: ConnectError") as info:
        WebhookChannel(f"http://127.0.0.1:{free_port()}/x/secret-token", timeout_s=1).send(ALERT)
    assert "secret-token" not in str(info.value)
    assert "secret" not in repr(SlackChannel(failing.url))


def test_dispatcher_retries_with_backoff_reports_and_other_channels_deliver(
        tmp_path: Path, receiver: Callable[..., Receiver]) -> None:
    good, failing, slow = receiver(), receiver(status=500), receiver(delay=0.6)
    settings = Settings(home=tmp_path / "home")
    settings.monitor.retry_attempts = 3
    settings.monitor.retry_backoff_s = 0.05
    channels = [SlackChannel(failing.url, timeout_s=0.2), WebhookChannel(slow.url, timeout_s=0.2),
                WebhookChannel(good.url, timeout_s=2), FileChannel(settings.home_dir / "alerts")]
    channels[2].name = "webhook-good"  # two channels of one kind: tell them apart in the report
    dispatcher = AlertDispatcher(settings, channels)
    started = time.monotonic()
    (delivery,) = dispatcher.dispatch([CheckResult("orchestration", alerts=[ALERT], scopes=["orchestration"])])
    elapsed = time.monotonic() - started
    assert delivery.action == "new" and delivery.delivered
    results = {r.channel: r for r in delivery.results}
    assert results["slack"].ok is False and results["slack"].attempts == 3
    assert results["slack"].describe() == "failed after 3 attempts: slack: HTTP 500 Internal Server Error: ok"
    assert results["webhook"].ok is False and results["webhook"].attempts == 3
    assert "no answer within 0.2 s" in results["webhook"].error
    assert results["webhook-good"].ok and results["file"].ok
    assert len(good.requests) == 1 and len(failing.requests) == 3
    gaps = [b["at"] - a["at"] for a, b in zip(failing.requests, failing.requests[1:], strict=False)]
    assert gaps[0] >= 0.05 and gaps[1] >= 0.1  # exponential backoff: 0.05 s, then 0.1 s
    assert elapsed < 2.0  # channels in parallel: the slow one does not hold up the others
    state = json.loads((settings.home_dir / "monitoring_state.json").read_text())
    recent = state["recent_alerts"][-1]
    assert recent["delivered"] is True and recent["channels"]["slack"].startswith("failed after 3 attempts")
    assert recent["channels"]["webhook-good"] == "sent"
    # A channel that used up its attempts gets a single try for the rest of the run.
    again = dispatcher.send(Alert("warning", "Another", "x"))
    assert {r.channel: r.attempts for r in again}["slack"] == 1


def test_no_channel_delivering_keeps_the_alert_due(tmp_path: Path, receiver: Callable[..., Receiver]) -> None:
    failing = receiver(status=503)
    settings = Settings(home=tmp_path / "home")
    settings.monitor.retry_attempts = 2
    settings.monitor.retry_backoff_s = 0
    dispatcher = AlertDispatcher(settings, [WebhookChannel(failing.url, timeout_s=1)])
    result = CheckResult("orchestration", alerts=[ALERT], scopes=["orchestration"])
    first = dispatcher.dispatch([result])[0]
    assert not first.delivered and first.action == "new"
    second = AlertDispatcher(settings, [LogChannel()]).dispatch([result])[0]
    assert second.action == "new" and second.delivered  # never delivered: not held back by the cooldown


# -- e-mail against aiosmtpd --------------------------------------------------------------------------


class Sink:
    def __init__(self) -> None:
        self.envelopes: list[Any] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.envelopes.append(envelope)
        return "250 OK"


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to make a test certificate")
    directory = tmp_path_factory.mktemp("tls")
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                    "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True)
    return cert, key


def server_context(certificate: tuple[Path, Path]) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*map(str, certificate))
    return context


def client_context(certificate: tuple[Path, Path]) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(certificate[0]))


@pytest.fixture
def smtp(free_port: Callable[[], int]) -> Iterator[Callable[..., tuple[Sink, int]]]:
    controllers: list[Controller] = []

    def start(**kwargs: Any) -> tuple[Sink, int]:
        sink, port = Sink(), free_port()
        controller = Controller(sink, hostname="127.0.0.1", port=port, **kwargs)
        controller.start()
        controllers.append(controller)
        return sink, port

    yield start
    for controller in controllers:
        controller.stop()


def accept(user: str, password: str) -> Callable[..., AuthResult]:
    def authenticator(server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any) -> AuthResult:
        ok = isinstance(auth_data, LoginPassword) and (auth_data.login, auth_data.password) == (
            user.encode(), password.encode())
        return AuthResult(success=ok, handled=False)

    return authenticator


def email(port: int, **kwargs: Any) -> EmailChannel:
    defaults = {"sender": "ratchet@example.com", "recipients": ["team@example.com", "oncall@example.com"],
                "starttls": False, "timeout_s": 5}
    return EmailChannel("127.0.0.1", port, **{**defaults, **kwargs})


def test_email_plain_smtp(smtp: Callable[..., tuple[Sink, int]]) -> None:
    sink, port = smtp()
    email(port).send(ALERT)
    (envelope,) = sink.envelopes
    assert envelope.mail_from == "ratchet@example.com"
    assert envelope.rcpt_tos == ["team@example.com", "oncall@example.com"]
    message = message_from_bytes(envelope.content, policy=policy.default)
    assert message["Subject"] == "[Ratchet ERROR] Orchestration Run Failures"
    assert message["To"] == "team@example.com, oncall@example.com" and message["From"] == "ratchet@example.com"
    text = message.get_content().replace("\r\n", "\n")
    assert text.startswith("Orchestration has failed 2 consecutive times\n")
    assert json.loads(text.split("Details:\n", 1)[1]) == ALERT.details


def test_email_starttls_with_login(smtp: Callable[..., tuple[Sink, int]], certificate: tuple[Path, Path]) -> None:
    sink, port = smtp(tls_context=server_context(certificate), require_starttls=True,
                      authenticator=accept("alerts", "s3cret"), auth_require_tls=True)
    with pytest.raises(DeliveryError, match="STARTTLS"):  # the server insists on TLS
        email(port).send(ALERT)
    with pytest.raises(DeliveryError, match="CERTIFICATE_VERIFY_FAILED"):  # certificates are verified
        email(port, starttls=True).send(ALERT)
    with pytest.raises(DeliveryError, match="SMTPAuthenticationError"):
        email(port, starttls=True, ssl_context=client_context(certificate), username="alerts",
              password="wrong").send(ALERT)
    email(port, starttls=True, ssl_context=client_context(certificate), username="alerts",
          password="s3cret").send(ALERT)
    assert len(sink.envelopes) == 1


def test_email_login_without_tls_when_the_server_allows(smtp: Callable[..., tuple[Sink, int]]) -> None:
    sink, port = smtp(authenticator=accept("alerts", "pw"), auth_require_tls=False)
    email(port, username="alerts", password="pw").send(ALERT)
    assert len(sink.envelopes) == 1


def test_email_implicit_tls(smtp: Callable[..., tuple[Sink, int]], certificate: tuple[Path, Path]) -> None:
    sink, port = smtp(ssl_context=server_context(certificate))
    email(port, use_ssl=True, starttls=True, ssl_context=client_context(certificate)).send(ALERT)
    assert len(sink.envelopes) == 1


def test_email_failures(free_port: Callable[[], int]) -> None:
    with pytest.raises(DeliveryError, match=r"email: 127.0.0.1:\d+: ConnectionRefusedError"):
        email(free_port()).send(ALERT)
    import socket

    with socket.socket() as silent:  # accepts connections, never greets
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        started = time.monotonic()
        with pytest.raises(DeliveryError, match=r"no answer within 0\.3 s"):
            email(silent.getsockname()[1], timeout_s=0.3).send(ALERT)
        assert time.monotonic() - started < 2


# -- building channels from settings --------------------------------------------------------------------


def test_build_channels_from_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = Settings(home=tmp_path / "home")
    assert [c.name for c in build_channels(settings)] == ["file", "log"]
    settings.monitor.file_alerts = settings.monitor.log_alerts = False
    assert build_channels(settings) == []

    settings.monitor.slack_enabled = True
    with pytest.raises(ConfigError, match=r"monitor\.slack_webhook_url is not set: export "
                                          r"RATCHET_MONITOR__SLACK_WEBHOOK_URL"):
        build_channels(settings)
    monkeypatch.setenv("RATCHET_MONITOR__SLACK_WEBHOOK_URL", "ftp://hooks/secret")
    with pytest.raises(ConfigError, match="must be an http\\(s\\) URL") as info:
        build_channels(Settings(home=tmp_path / "home", monitor={"slack_enabled": True}))
    assert "secret" not in str(info.value)

    settings = Settings(home=tmp_path / "home", monitor={"email_enabled": True})
    with pytest.raises(ConfigError, match=r"monitor\.email_to"):
        build_channels(settings)
    settings.monitor.email_to = ["team@example.com"]
    settings.monitor.smtp_username = "alerts"
    with pytest.raises(ConfigError, match="RATCHET_MONITOR__SMTP_PASSWORD"):
        build_channels(settings)

    settings = Settings(home=tmp_path / "home", monitor={"webhook_enabled": True})
    with pytest.raises(ConfigError, match="RATCHET_MONITOR__WEBHOOK_URL"):
        build_channels(settings)

    monkeypatch.setenv("RATCHET_MONITOR__SLACK_WEBHOOK_URL", "https://hooks.slack.com/services/T/B/x")
    monkeypatch.setenv("RATCHET_MONITOR__SMTP_PASSWORD", "pw")
    monkeypatch.setenv("RATCHET_MONITOR__WEBHOOK_URL", "https://example.com/hook")
    settings = Settings(home=tmp_path / "home", monitor={
        "slack_enabled": True, "email_enabled": True, "webhook_enabled": True, "email_to": ["a@example.com"],
        "smtp_username": "alerts", "smtp_ssl": True, "smtp_port": 465, "channel_timeout_s": 3})
    channels = build_channels(settings)
    assert [c.name for c in channels] == ["file", "log", "slack", "email", "webhook"]
    mail = channels[3]
    assert isinstance(mail, EmailChannel) and mail.use_ssl and mail.port == 465 and mail.timeout_s == 3
    assert "pw" not in repr(mail)
