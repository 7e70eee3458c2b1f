"""HTML forms to the API's schemas and back: the console validates exactly as the API does.

A form's text fields become the JSON shapes the schemas expect (numbers, lists, nulls); the
schema's messages, and the domain's own 422/409 answers, come back as errors by field, shown
beside the field that caused them.
"""
from __future__ import annotations

import re
from typing import Any, Callable

from flask import request
from marshmallow import Schema, ValidationError
from werkzeug.datastructures import MultiDict

from exceptions import Conflict, ValidationFailed

Errors = dict[str, list[str]]
INTEGER = re.compile(r"-?\d+")


def number(text: str) -> int | str | None:
    """A form's number: an int, None when left empty, else the text (the schema refuses it)."""
    text = text.strip()
    if not text:
        return None
    return int(text) if INTEGER.fullmatch(text) else text


def words(text: str) -> list[str]:
    """Tags and the like: separated by blanks or commas."""
    return [word for word in re.split(r"[\s,]+", text.strip()) if word]


def checked_ids(form: MultiDict, name: str) -> list[int | str]:
    return [number(value) for value in form.getlist(name) if value.strip()]


def flatten(messages: Any, prefix: str = "") -> Errors:
    """marshmallow's nested messages as {"field" or "field.0.sub": [message, ...]}; messages
    about the whole form (marshmallow's `_schema`) under "_form"."""
    if not isinstance(messages, dict):
        return {prefix or "_form": _texts(messages)}
    flat: Errors = {}
    for key, value in messages.items():
        name = "" if key == "_schema" else (f"{prefix}.{key}" if prefix else str(key))
        for field, texts in flatten(value, name or prefix).items():
            flat.setdefault(field, []).extend(texts)
    return flat


def _texts(messages: Any) -> list[str]:
    if isinstance(messages, list):
        return [str(message) for message in messages]
    return [str(messages)]


def load(schema: Schema, data: dict[str, Any]) -> tuple[dict[str, Any], Errors]:
    """The schema's result and no errors, or nothing and the errors by field."""
    try:
        return schema.load(data), {}
    except ValidationError as refused:
        return {}, flatten(refused.messages)


def load_page_query(schema: Schema, filters: dict[str, str],
                    **fixed: Any) -> tuple[dict[str, Any], Errors]:
    """A list page's query as the API's query schema loads it: its filters and the URL's
    `cursor`, those left empty left out, and `fixed` values."""
    given = {**filters, "cursor": request.args.get("cursor", "")}
    return load(schema, {name: value for name, value in given.items() if value} | fixed)


def attempt(action: Callable[[], Any], conflict_field: str = "_form") -> tuple[Any, Errors]:
    """Run a domain function; its 422 (by field) or 409 become form errors, not an error page.

    The domain refuses some things only it can judge (an unknown channel, a taken slug, a
    dependency cycle): the form shows those beside their fields too.
    """
    try:
        return action(), {}
    except ValidationFailed as refused:
        details = refused.details
        return None, flatten(details) if isinstance(details, dict) else {"_form": [str(details)]}
    except Conflict as refused:
        return None, {conflict_field: [str(refused.details or refused.message)]}
