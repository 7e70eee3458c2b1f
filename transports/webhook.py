"""Webhooks: the payload as signed JSON, and Slack-compatible incoming webhooks."""
from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

import urllib3

from alert_content import headline, text_body
from transports.base import (
    USER_AGENT,
    Destination,
    Transport,
    permanent,
    retry_after_seconds,
    transient,
)
from utils.ssrf_guard import ForbiddenTarget
from utils.webhook_headers import deliverable_headers


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
