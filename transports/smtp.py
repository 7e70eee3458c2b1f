"""Email through SMTP_URL: plain, STARTTLS or implicit TLS, one readable message per alert."""
from __future__ import annotations

import dataclasses
import email.utils
import smtplib
import ssl
from email.message import EmailMessage
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from alert_content import headline, html_body, text_body
from transports.base import Destination, Transport, permanent, transient


class Email(Transport):
    """One message to the channel's addresses through SMTP_URL: `smtp://host:port` (plain, or
    STARTTLS with `?starttls=1`, as on port 587) or `smtps://host:port` (implicit TLS, 465)."""

    def message(self, destination: Destination, alert_uuid: str,
                payload: dict[str, Any]) -> EmailMessage:
        """A readable message: subject, plain text and HTML parts, Date and Message-ID."""
        message = EmailMessage()
        message["Subject"] = headline(payload)
        message["From"] = self.settings.SMTP_FROM
        message["To"] = ", ".join(destination.addresses or [])
        message["Date"] = email.utils.format_datetime(self.clock.now())
        message["Message-ID"] = f"<{alert_uuid}@heartbeat-monitor>"
        message["X-Idempotency-Key"] = alert_uuid
        message.set_content(text_body(payload))
        message.add_alternative(html_body(payload), subtype="html")
        return message

    def deliver(self, destination: Destination, alert_uuid: str,
                payload: dict[str, Any]) -> int | None:
        if not self.settings.SMTP_URL:
            raise permanent("SMTP_URL is not configured")
        self.send(self.message(destination, alert_uuid, payload))
        return None

    def send(self, message: EmailMessage) -> None:
        target = SmtpTarget.parse(self.settings.SMTP_URL)
        tls = ssl.create_default_context(cafile=self.settings.SMTP_CA_FILE or None)
        timeout = self.settings.SMTP_TIMEOUT_SECONDS
        try:
            if target.implicit_tls:
                smtp: smtplib.SMTP = smtplib.SMTP_SSL(target.host, target.port, timeout=timeout,
                                                      context=tls)
            else:
                smtp = smtplib.SMTP(target.host, target.port, timeout=timeout)
            with smtp:
                if target.starttls:
                    smtp.starttls(context=tls)
                if target.username:
                    smtp.login(target.username, target.password)
                smtp.send_message(message)
        except smtplib.SMTPRecipientsRefused as error:
            codes = [code for code, _ in error.recipients.values()]
            if all(code >= 500 for code in codes):
                raise permanent(f"recipients refused: {codes}") from error
            raise transient(f"recipients deferred: {codes}") from error
        except smtplib.SMTPResponseException as error:
            if error.smtp_code >= 500:
                raise permanent(f"SMTP {error.smtp_code}") from error
            raise transient(f"SMTP {error.smtp_code}") from error
        except (smtplib.SMTPException, OSError) as error:  # ssl.SSLError is an OSError
            raise transient(f"SMTP connection failed: {type(error).__name__}") from error


@dataclasses.dataclass(frozen=True)
class SmtpTarget:
    """SMTP_URL taken apart."""

    host: str
    port: int
    implicit_tls: bool
    starttls: bool
    username: str
    password: str

    @classmethod
    def parse(cls, url: str) -> "SmtpTarget":
        parts = urlsplit(url)
        implicit_tls = parts.scheme == "smtps"
        starttls = not implicit_tls and parse_qs(parts.query).get("starttls", ["0"])[-1] \
            .lower() in ("1", "true", "yes", "on")
        default_port = 465 if implicit_tls else 587 if starttls else 25
        return cls(parts.hostname or "localhost", parts.port or default_port, implicit_tls,
                   starttls, unquote(parts.username or ""), unquote(parts.password or ""))
