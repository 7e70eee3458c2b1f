"""One-click acknowledgement links (SPEC §8): a signed token naming one incident.

The token is signed with SECRET_KEY (itsdangerous) and names the incident by its id and start,
so it can acknowledge that incident and no other, and the channel whose alert carried it (who
acknowledged). Whether it still works (the incident is open) is checked when it is used.
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib

from flask import current_app
from itsdangerous import BadSignature, URLSafeSerializer

from exceptions import NotFound
from models import Channel, Incident
from runtime import current_runtime

SALT = "incident-acknowledgement"
ACK_PATH = "/acknowledge/"
# Where `make run` serves; set PUBLIC_BASE_URL so links name the public host.
DEFAULT_BASE_URL = "http://127.0.0.1:5000"


class InvalidAckLink(NotFound):
    message = "This acknowledgement link is not valid"

    def __init__(self) -> None:
        super().__init__("The link was changed or cut short; use the link of the alert as sent.")


@dataclasses.dataclass(frozen=True)
class AckLink:
    """What a valid token says: the incident (id and start) and the channel that carried it."""

    incident_id: int
    started_at_us: int
    channel_id: int | None

    def names(self, incident: Incident) -> bool:
        return incident.id == self.incident_id and _microseconds(incident) == self.started_at_us


def _serializer() -> URLSafeSerializer:
    return _serializer_for(current_app.secret_key)


@functools.lru_cache(maxsize=8)
def _serializer_for(secret_key: str | bytes) -> URLSafeSerializer:
    # Built once per key: a monitor tick that opens many incidents signs a link for each alert.
    return URLSafeSerializer(secret_key, salt=SALT,
                             signer_kwargs={"digest_method": hashlib.sha256})


def _microseconds(incident: Incident) -> int:
    return int(incident.started_at.timestamp() * 1_000_000)


def ack_token(incident: Incident, channel: Channel | None) -> str:
    return _serializer().dumps([incident.id, _microseconds(incident),
                                channel.id if channel is not None else None])


def read_ack_token(token: str) -> AckLink:
    """The link a token stands for; 404 for anything this server did not sign."""
    try:
        values = _serializer().loads(token)
    except BadSignature:
        raise InvalidAckLink()
    if not (isinstance(values, list) and len(values) == 3
            and all(type(value) is int or value is None for value in values)
            and values[0] is not None and values[1] is not None):
        raise InvalidAckLink()
    return AckLink(*values)


def public_base_url() -> str:
    return current_runtime().settings.PUBLIC_BASE_URL.rstrip("/") or DEFAULT_BASE_URL


def ack_url(incident: Incident, channel: Channel | None) -> str:
    """The acknowledgement link an alert about `incident` to `channel` carries."""
    return f"{public_base_url()}{ACK_PATH}{ack_token(incident, channel)}"
