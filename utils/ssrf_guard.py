"""Webhook targets must be public (§7): no loopback, private, link-local, multicast or metadata.

Checked twice: when a channel is created or changed (`check_webhook_url`, a 422 naming the
reason), and again on every delivery, on the address the socket actually connected to
(`guarded_pool_manager`), so a DNS record changed after creation cannot point an alert inward.
Redirects are never followed. `ALLOW_PRIVATE_WEBHOOK_TARGETS=1` turns both checks off, for
sinks on the operator's own network.
"""
from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

import certifi
from urllib3 import PoolManager
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

Address = ipaddress.IPv4Address | ipaddress.IPv6Address

# Cloud metadata services that are not already link-local (169.254.169.254 is).
METADATA_ADDRESSES = {ipaddress.ip_address("100.100.100.200"),      # Alibaba Cloud
                      ipaddress.ip_address("fd00:ec2::254")}        # AWS over IPv6


class ForbiddenTarget(Exception):
    """A webhook URL whose host is, or resolves to, an address we do not send to."""


def forbidden_reason(address: Address) -> str | None:
    """Why alerts may not go to `address`, or None when it is a public unicast address."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if address in METADATA_ADDRESSES:
        return "a cloud metadata address"
    for reason, flag in (("a loopback address", address.is_loopback),
                         ("a link-local address", address.is_link_local),
                         ("a multicast address", address.is_multicast),
                         ("a private address", address.is_private),
                         ("an unspecified address", address.is_unspecified),
                         ("a reserved address", address.is_reserved)):
        if flag:
            return reason
    if not address.is_global:  # shared (100.64/10), documentation and other special ranges
        return "not a public address"
    return None


def resolve(host: str, port: int) -> list[Address]:
    """Every address `host` resolves to (raises ForbiddenTarget when it does not resolve)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as error:
        raise ForbiddenTarget(f"the host {host!r} does not resolve") from error
    return [ipaddress.ip_address(info[4][0].split("%", 1)[0]) for info in infos]


def check_webhook_url(url: str) -> None:
    """Raise ForbiddenTarget unless every address of the URL's host is public."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ForbiddenTarget("only http and https URLs with a host are allowed")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as error:
        raise ForbiddenTarget("the port is not valid") from error
    for address in resolve(parts.hostname, port):
        reason = forbidden_reason(address)
        if reason:
            raise ForbiddenTarget(f"the host {parts.hostname!r} resolves to {reason}")


def check_host(host: str, port: int) -> None:
    """Raise ForbiddenTarget if `host` is, or resolves to, an address we do not send to.

    A host that does not resolve is not refused here (an Apprise URL's host part is often a
    token or a topic, not a host): sending to it fails on its own.
    """
    try:
        addresses = resolve(host, port)
    except ForbiddenTarget:
        return
    for address in addresses:
        reason = forbidden_reason(address)
        if reason:
            raise ForbiddenTarget(f"the host {host!r} resolves to {reason}")


def _check_peer(sock: socket.socket, host: str) -> None:
    address = ipaddress.ip_address(sock.getpeername()[0].split("%", 1)[0])
    reason = forbidden_reason(address)
    if reason:
        sock.close()
        raise ForbiddenTarget(f"the host {host!r} now resolves to {reason}")


class _PeerChecked:
    """Mixed into urllib3's connections: the peer is checked right after connecting."""

    host: str

    def _new_conn(self) -> socket.socket:
        sock = super()._new_conn()  # type: ignore[misc]
        _check_peer(sock, self.host)
        return sock


class _GuardedHTTPConnection(_PeerChecked, HTTPConnection):
    pass


class _GuardedHTTPSConnection(_PeerChecked, HTTPSConnection):
    pass


class _GuardedHTTPPool(HTTPConnectionPool):
    ConnectionCls = _GuardedHTTPConnection


class _GuardedHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _GuardedHTTPSConnection


def guarded_pool_manager(allow_private: bool) -> PoolManager:
    """Connection pools for alert delivery; guarded unless private targets are allowed.

    No proxy is taken from the environment (one could carry alerts elsewhere); certificates
    are checked against certifi's bundle.
    """
    manager = PoolManager(ca_certs=certifi.where())
    if not allow_private:
        manager.pool_classes_by_scheme = {"http": _GuardedHTTPPool, "https": _GuardedHTTPSPool}
    return manager
