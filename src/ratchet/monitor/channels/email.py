"""E-mail channel: one plain-text message per alert over SMTP (STARTTLS or implicit TLS, optional login)."""

from __future__ import annotations

import json
import smtplib
import ssl
from collections.abc import Sequence
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import ClassVar

from ratchet.errors import DeliveryError
from ratchet.monitor.alerts import Alert

__all__ = ["EmailChannel", "email_message"]


def email_message(alert: Alert, *, sender: str, recipients: Sequence[str]) -> EmailMessage:
    """Subject ``[Ratchet LEVEL] title``; the body holds the message, level, time and details as JSON."""
    message = EmailMessage()
    message["Subject"] = f"[Ratchet {alert.level.upper()}] {alert.title}"
    message["From"] = sender
    message["To"] = ", ".join(recipients)
    message["Date"] = formatdate(localtime=False, usegmt=True)
    message["Message-ID"] = make_msgid(domain=sender.rpartition("@")[2] or None)
    details = json.dumps(alert.details, indent=2, ensure_ascii=False, default=str)
    message.set_content(f"{alert.message}\n\nLevel: {alert.level}\nTime: {alert.timestamp}\n\nDetails:\n{details}\n")
    return message


class EmailChannel:
    name: ClassVar[str] = "email"

    def __init__(
        self,
        host: str,
        port: int,
        *,
        sender: str,
        recipients: Sequence[str],
        starttls: bool = True,
        use_ssl: bool = False,
        username: str | None = None,
        password: str | None = None,
        timeout_s: float = 10.0,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        if not recipients:
            raise ValueError("an e-mail channel needs at least one recipient")
        self.host, self.port = host, port
        self.sender, self.recipients = sender, list(recipients)
        self.starttls, self.use_ssl = starttls, use_ssl
        self.username = username
        self._password = password
        self.timeout_s = timeout_s
        self._context = ssl_context

    def __repr__(self) -> str:
        tls = "ssl" if self.use_ssl else "starttls" if self.starttls else "plain"
        return f"EmailChannel({self.host}:{self.port}, {tls}, to={self.recipients})"

    def send(self, alert: Alert) -> None:
        message = email_message(alert, sender=self.sender, recipients=self.recipients)
        try:
            with self._connect() as smtp:
                if self.username:
                    smtp.login(self.username, self._password or "")
                refused = smtp.send_message(message, from_addr=self.sender, to_addrs=self.recipients)
        except (smtplib.SMTPException, OSError) as exc:
            if _timed_out(exc):
                raise DeliveryError(f"email: {self.host}:{self.port}: no answer within {self.timeout_s:g} s"
                                    ) from None
            raise DeliveryError(f"email: {self.host}:{self.port}: {type(exc).__name__}: {exc}") from None
        if refused:
            raise DeliveryError(f"email: recipients refused: {', '.join(sorted(refused))}")

    def _connect(self) -> smtplib.SMTP:
        context = self._context or ssl.create_default_context()
        if self.use_ssl:
            return smtplib.SMTP_SSL(self.host, self.port, timeout=self.timeout_s, context=context)
        smtp = smtplib.SMTP(self.host, self.port, timeout=self.timeout_s)
        if self.starttls:
            try:
                smtp.starttls(context=context)
            except BaseException:
                smtp.close()
                raise
        return smtp


def _timed_out(exc: BaseException | None) -> bool:
    """A socket timeout, or smtplib's "connection unexpectedly closed" wrapping one."""
    while exc is not None:
        if isinstance(exc, TimeoutError):
            return True
        exc = exc.__context__
    return False
