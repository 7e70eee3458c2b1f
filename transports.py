"""Alert destinations: one small class per channel kind, one error that says if a retry can help.

A transport delivers one alert to one channel, or raises DeliveryError: permanent (a 4xx other
than 429, a refused target, a missing setting) or transient (a timeout, a connection error, a
5xx or 429), with the Retry-After the destination asked for. The delivery engine (delivery.py)
and the channel test (channels.py) both go through `Transports.attempt`, which turns one
delivery into the outcome that is recorded. A new kind is a new class in TRANSPORTS.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import email.utils
import hashlib
import hmac
import json
import smtplib
import ssl
import threading
import time
from email.message import EmailMessage
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import urllib3

from alert_content import headline, html_body, text_body
from config import Settings
from utils.clock import Clock
from utils.ssrf_guard import ForbiddenTarget, guarded_pool_manager
from utils.webhook_headers import deliverable_headers

USER_AGENT = "HeartbeatMonitor/1.0"


class DeliveryError(Exception):
    """A failed delivery; `permanent` when retrying cannot help."""

    def __init__(self, message: str, *, permanent: bool, retry_after_seconds: float | None = None,
                 http_status: int | None = None):
        super().__init__(message)
        self.permanent = permanent
        self.retry_after_seconds = retry_after_seconds
        self.http_status = http_status


def transient(message: str, **details: Any) -> DeliveryError:
    return DeliveryError(message, permanent=False, **details)


def permanent(message: str, **details: Any) -> DeliveryError:
    return DeliveryError(message, permanent=True, **details)


def is_breaker_failure(error: BaseException) -> bool:
    """What counts against a channel's breaker: a transient failure only (SPEC §6.4)."""
    return isinstance(error, DeliveryError) and not error.permanent


@dataclasses.dataclass(frozen=True)
class Destination:
    """What a transport needs of a channel."""

    id: int
    kind: str
    url: str | None = None
    headers: dict | None = None
    secret: str | None = None
    addresses: list | None = None

    @classmethod
    def of(cls, channel: Any) -> "Destination":
        return cls(channel.id, channel.kind, channel.url, channel.headers, channel.secret,
                   channel.addresses)


@dataclasses.dataclass(frozen=True)
class Attempt:
    """One delivery attempt as recorded: delivered, transient_error or permanent_error."""

    outcome: str
    http_status: int | None
    error: str | None
    retry_after_seconds: float | None
    duration_seconds: float
    # A transport that raised something other than DeliveryError (a bug): kept for the error log.
    unexpected: BaseException | None = None

    @property
    def delivered(self) -> bool:
        return self.outcome == "delivered"


def retry_after_seconds(value: str | None, now: dt.datetime) -> float | None:
    """A Retry-After header (seconds or an HTTP date) as seconds from `now`."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        moment = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.timezone.utc)
    return max(0.0, (moment - now).total_seconds())


class Transport:
    """Delivers alerts to channels of one kind."""

    def __init__(self, settings: Settings, clock: Clock, pools: "HttpPools"):
        self.settings = settings
        self.clock = clock
        self.pools = pools

    def deliver(self, destination: Destination, alert_uuid: str,
                payload: dict[str, Any]) -> int | None:
        """Deliver, returning the HTTP status if there is one; raise DeliveryError otherwise."""
        raise NotImplementedError


class Webhook(Transport):
    """POSTs the payload as JSON, signed with the channel's secret when it has one."""

    signed = True

    def body(self, payload: dict[str, Any]) -> dict[str, Any]:
        return payload

    def deliver(self, destination: Destination, alert_uuid: str,
                payload: dict[str, Any]) -> int | None:
        body = json.dumps(self.body(payload), separators=(",", ":")).encode()
        headers = {**deliverable_headers(destination.headers), "User-Agent": USER_AGENT,
                   "Content-Type": "application/json", "Idempotency-Key": alert_uuid}
        if self.signed and destination.secret:
            digest = hmac.new(destination.secret.encode(), body, hashlib.sha256).hexdigest()
            headers["X-Signature"] = f"sha256={digest}"
        return self.post(destination.url, body, headers)

    # urllib3 directly: requests costs twice its CPU per post, and delivery is bound by CPU.
    def post(self, url: str | None, body: bytes, headers: dict[str, str]) -> int:
        timeout = self.settings.ALERT_TIMEOUT_SECONDS
        try:
            response = self.pools.get().request(
                "POST", url, body=body, headers=headers, redirect=False, retries=False,
                timeout=urllib3.Timeout(connect=min(timeout, 5.0), read=timeout))
        except ForbiddenTarget as error:
            raise permanent(f"refused: {error}") from error
        except urllib3.exceptions.NewConnectionError as error:  # a TimeoutError subclass, too
            raise transient(f"connection failed: {type(error).__name__}") from error
        except urllib3.exceptions.TimeoutError as error:
            raise transient(f"timed out after {timeout:g} s") from error
        except (urllib3.exceptions.HTTPError, OSError) as error:
            raise transient(f"connection failed: {type(error).__name__}") from error
        status = response.status
        if 200 <= status < 300:
            return status
        if status == 429 or status >= 500:
            raise transient(f"HTTP {status}", http_status=status, retry_after_seconds=(
                retry_after_seconds(response.headers.get("Retry-After"), self.clock.now())))
        if 300 <= status < 400:
            raise permanent(f"HTTP {status}: redirects are not followed", http_status=status)
        raise permanent(f"HTTP {status}", http_status=status)


class Slack(Webhook):
    """A Slack-compatible incoming webhook: a short text, the payload attached."""

    signed = False

    def body(self, payload: dict[str, Any]) -> dict[str, Any]:
        return {"text": headline(payload), "attachments": [
            {"text": text_body(payload), "fallback": headline(payload)}]}


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


TRANSPORTS: dict[str, type[Transport]] = {"webhook": Webhook, "slack": Slack, "email": Email}
CHANNEL_KINDS = tuple(TRANSPORTS)


class HttpPools:
    """urllib3 connection pools, one set per thread (each keeps its own connections alive)."""

    def __init__(self, allow_private_targets: bool):
        self.allow_private_targets = allow_private_targets
        self._local = threading.local()

    def get(self) -> urllib3.PoolManager:
        pools = getattr(self._local, "pools", None)
        if pools is None:
            pools = self._local.pools = guarded_pool_manager(self.allow_private_targets)
        return pools


class Transports:
    """The transport of each kind, sharing connection pools; `attempt` delivers and classifies."""

    def __init__(self, settings: Settings, clock: Clock):
        pools = HttpPools(settings.ALLOW_PRIVATE_WEBHOOK_TARGETS)
        self.by_kind = {kind: transport(settings, clock, pools)
                        for kind, transport in TRANSPORTS.items()}

    def attempt(self, destination: Destination, alert_uuid: str,
                payload: dict[str, Any]) -> Attempt:
        """Deliver once; never raises."""
        started = time.perf_counter()
        http_status, error_text, retry_after, unexpected = None, None, None, None
        transport = self.by_kind.get(destination.kind)
        try:
            if transport is None:
                raise permanent(f"unknown channel kind {destination.kind!r}")
            http_status = transport.deliver(destination, alert_uuid, payload)
            outcome = "delivered"
        except DeliveryError as error:
            outcome = "permanent_error" if error.permanent else "transient_error"
            error_text, http_status = str(error), error.http_status
            retry_after = error.retry_after_seconds
        except Exception as error:  # a bug in a transport: keep the alert, retry later
            outcome, error_text = "transient_error", f"internal error: {type(error).__name__}"
            unexpected = error
        return Attempt(outcome, http_status, error_text, retry_after,
                       time.perf_counter() - started, unexpected)
