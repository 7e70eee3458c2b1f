"""Removing secrets from text and structures before they reach a log line or Sentry (§7).

Secrets: API keys (`hbm_…`), Authorization / X-Api-Key values, passwords and DSN keys in URLs
(`scheme://user:password@host`), `password=` / `secret=` / `token=` style pairs, and the
values of fields named like a secret (a channel's `secret`, `headers` such as Authorization).
"""
from __future__ import annotations

import re
from typing import Any

REDACTED = "[redacted]"

SECRET_FIELD = re.compile(
    r"(pass(word)?|passwd|pwd|secret|token|api[-_]?key|authorization|auth|cookie|dsn|"
    r"signature|credential|private[-_]?key|session)", re.IGNORECASE)

_PATTERNS: list[tuple[re.Pattern[str], str]] = [
    # Our API keys: hbm_<prefix>_<secret>.
    (re.compile(r"hbm_[A-Za-z0-9]+_[A-Za-z0-9_\-]+"), f"hbm_{REDACTED}"),
    # Credentials in URLs: everything between :// and @ (user:password, Sentry DSN keys).
    (re.compile(r"(?i)\b([a-z][a-z0-9+.\-]*://)[^/\s@'\"]+@"), rf"\1{REDACTED}@"),
    # Authorization headers, whatever the scheme.
    (re.compile(r"(?i)\b(authorization|x-api-key)((?:\\?['\"])?\s*[:=]\s*(?:\\?['\"])?)"
                r"(?:(bearer|basic|token)\s+)?[^\s'\",}\\]+"), rf"\1\2{REDACTED}"),
    (re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=\-]{8,}"), rf"\1 {REDACTED}"),
    # key=value and "key": "value" pairs whose key names a secret.
    (re.compile(r"(?i)(\b[\w\-]*(?:password|passwd|secret|token|api[-_]?key|dsn)"
                r"(?:\\?['\"])?\s*[:=]\s*(?:\\?['\"])?)[^\s'\",&}\\]+"), rf"\1{REDACTED}"),
]


def scrub_text(text: str) -> str:
    """The text with every recognisable secret replaced by [redacted]."""
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def scrub_data(value: Any, _depth: int = 0) -> Any:
    """A copy of a JSON-like structure: secret-named fields redacted, strings scrubbed."""
    if _depth > 20:
        return value
    if isinstance(value, dict):
        return {key: (REDACTED if isinstance(key, str) and SECRET_FIELD.search(key)
                      and value[key] not in (None, "", [], {})
                      else scrub_data(value[key], _depth + 1))
                for key in value}
    if isinstance(value, (list, tuple)):
        # Header lists come as [name, value] pairs.
        if len(value) == 2 and isinstance(value[0], str) and SECRET_FIELD.search(value[0]):
            return [value[0], REDACTED]
        return [scrub_data(item, _depth + 1) for item in value]
    if isinstance(value, str):
        return scrub_text(value)
    return value
