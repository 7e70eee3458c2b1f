"""Apprise: about a hundred services, one Apprise URL per channel (SPEC §6.8).

`tgram://…`, `discord://…`, `msteams://…`, `ntfy://…`, `pover://…`, `matrix://…`,
`json://host/path`, `form://…`, `mailto://…`: the `apprise` package speaks each service's
protocol. Our delivery engine does the retrying: the plugin is called directly, once, with
Apprise's own retries off, and its "no" is a transient failure. The SSRF guard (§7) covers
every host the URL sends to (the host of self-hosted services, an email URL's SMTP server),
when the channel is saved and again before each delivery.
"""
from __future__ import annotations

from typing import Any

import apprise

from alert_content import headline, text_body
from transports.base import Destination, Transport, permanent, transient
from utils.ssrf_guard import ForbiddenTarget, check_host

NOTIFY_TYPES = {"application.down": apprise.NotifyType.FAILURE,
                "application.still_down": apprise.NotifyType.WARNING,
                "application.up": apprise.NotifyType.SUCCESS,
                "service.error_rate_high": apprise.NotifyType.WARNING}


class Apprise(Transport):
    """Sends the alert's headline and text through the channel's Apprise URL."""

    def deliver(self, destination: Destination, alert_uuid: str,
                payload: dict[str, Any]) -> int | None:
        service = apprise_service(destination.url or "")
        if service is None:
            raise permanent("not an Apprise URL this version can use")
        if not self.settings.ALLOW_PRIVATE_WEBHOOK_TARGETS:
            try:
                check_targets(service)
            except ForbiddenTarget as error:
                raise permanent(f"refused: {error}") from error
        timeout = self.settings.ALERT_TIMEOUT_SECONDS
        service.socket_connect_timeout = min(timeout, 5.0)
        service.socket_read_timeout = timeout
        if not service.notify(body=text_body(payload), title=headline(payload),
                              notify_type=NOTIFY_TYPES.get(payload.get("event", ""),
                                                           apprise.NotifyType.INFO)):
            raise transient(f"the {service.service_name} service refused or did not answer")
        return None


def apprise_service(url: str) -> Any | None:
    """The Apprise plugin for `url`, retries off; None when Apprise cannot use the URL."""
    service = apprise.Apprise.instantiate(url, suppress_exceptions=True)
    if service is not None:
        service.retry = 0
    return service


def check_targets(service: Any) -> None:
    """Raise ForbiddenTarget when a host the service sends to is not public."""
    for host, port in target_hosts(service):
        check_host(host, port)


def target_hosts(service: Any) -> list[tuple[str, int]]:
    """The hosts a service connects to that its URL chose (not a fixed public endpoint)."""
    hosts = []
    port = service.port or (443 if getattr(service, "secure", False) else 80)
    if "host" in service.template_tokens and service.host \
            and getattr(service, "mode", None) != "cloud":  # ntfy://topic goes to ntfy.sh
        hosts.append((service.host, port))
    smtp_host = getattr(service, "smtp_host", None)
    if smtp_host and smtp_host != service.host:
        hosts.append((smtp_host, port))
    return hosts


def private_url(url: str | None) -> str | None:
    """The URL with its secrets masked, as Apprise itself shows it; for API answers."""
    if not url:
        return url
    service = apprise_service(url)
    if service is None:
        return url.split("://", 1)[0] + "://…"
    return service.url(privacy=True)
