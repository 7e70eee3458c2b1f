"""The Healthchecks management API's requests and answers, as its documentation gives them.

Requests are validated with Healthchecks' own rules (strict types, its bounds, unknown fields
ignored); the answers' schemas describe them in /openapi.json. How a check maps onto an
application is healthchecks_mapping.py.
"""
from __future__ import annotations

from marshmallow import EXCLUDE, Schema, ValidationError, fields, validate

from schemas import SLUG_MAX_LENGTH, TAG_PATTERN, InputSchema, validate_cron, validate_timezone

MIN_SECONDS, MAX_SECONDS = 60, 31_536_000  # one minute, 365 days: timeout and grace
UNIQUE_FIELDS = ("name", "slug", "tags", "timeout", "grace")
MAX_TAGS = 50
# Keyword filtering of pings and of email pings is not offered here: a client may send these
# fields with their defaults (as clients that send whole checks back do), and is told so
# otherwise, rather than having a filter silently ignored.
KEYWORD_FIELDS = {"subject": "", "subject_fail": "", "start_kw": "", "success_kw": "",
                  "failure_kw": "", "filter_subject": False, "filter_body": False,
                  "filter_http_body": False, "filter_default_fail": False}
NOT_OFFERED = "Keyword filtering is not offered by this server; only the default is accepted."


class StrictBoolean(fields.Boolean):
    """true or false, nothing that merely looks like one (Healthchecks' strict typing)."""

    def _deserialize(self, value, attr, data, **kwargs):
        if not isinstance(value, bool):
            raise self.make_error("invalid", input=value)
        return value


def _validate_tags(value: str) -> None:
    tags = value.split()
    if len(tags) > MAX_TAGS:
        raise ValidationError(f"At most {MAX_TAGS} tags.")
    if not all(validate.Regexp(TAG_PATTERN).regex.match(tag) for tag in tags):
        raise ValidationError("Tags are words of at most 64 characters, separated by spaces.")


def is_cron_expression(schedule: str) -> bool:
    """Healthchecks' own test: one line of five fields is cron, anything else OnCalendar."""
    return "\n" not in schedule.strip() and len(schedule.split()) == 5


def _validate_schedule(value: str) -> None:
    if not is_cron_expression(value):
        raise ValidationError("Only five-field cron expressions are supported here, "
                              "not systemd OnCalendar expressions.")
    validate_cron(value)


def _only_default(default):
    def check(value) -> None:
        if value != default:
            raise ValidationError(NOT_OFFERED)
    return check


SECONDS = validate.Range(min=MIN_SECONDS, max=MAX_SECONDS)


class CheckSpecSchema(InputSchema):
    """The body of create and update: every field optional, unknown fields ignored."""

    class Meta:
        unknown = EXCLUDE

    name = fields.String(validate=validate.Length(max=100))
    slug = fields.String(validate=[validate.Length(max=SLUG_MAX_LENGTH),
                                   validate.Regexp(r"^[a-z0-9_-]*$",
                                                   error="Does not match pattern.")])
    tags = fields.String(validate=_validate_tags, metadata={
        "description": "Space-separated tags."})
    desc = fields.String(validate=validate.Length(max=2000))
    timeout = fields.Integer(strict=True, validate=SECONDS)
    grace = fields.Integer(strict=True, validate=SECONDS)
    schedule = fields.String(validate=[validate.Length(max=100), _validate_schedule], metadata={
        "description": "A five-field cron expression; it takes precedence over timeout."})
    tz = fields.String(validate=[validate.Length(max=64), validate_timezone])
    manual_resume = StrictBoolean()
    methods = fields.String(validate=validate.OneOf(("", "POST")))
    channels = fields.String(metadata={
        "description": '"*" for every channel, "" for none, or channel ids or names, '
                       "comma-separated."})
    unique = fields.List(fields.String(validate=validate.OneOf(UNIQUE_FIELDS)), metadata={
        "description": "Update the first check whose listed fields all match instead of "
                       "creating one (200 instead of 201)."})
    subject = fields.String(validate=_only_default(""))
    subject_fail = fields.String(validate=_only_default(""))
    start_kw = fields.String(validate=_only_default(""))
    success_kw = fields.String(validate=_only_default(""))
    failure_kw = fields.String(validate=_only_default(""))
    filter_subject = StrictBoolean(validate=_only_default(False))
    filter_body = StrictBoolean(validate=_only_default(False))
    filter_http_body = StrictBoolean(validate=_only_default(False))
    filter_default_fail = StrictBoolean(validate=_only_default(False))
    api_key = fields.String(load_only=True, metadata={
        "description": "The API key, when not sent in the X-Api-Key header."})


class ChecksQuerySchema(InputSchema):
    tag = fields.List(fields.String(validate=validate.Length(max=200)), metadata={
        "description": "Only checks with every tag given."})
    slug = fields.String(validate=validate.Length(max=200))


UNIX_TIME = validate.Range(min=0, max=10_000_000_000)


class FlipsQuerySchema(InputSchema):
    seconds = fields.Integer(validate=validate.Range(min=0, max=MAX_SECONDS))
    start = fields.Integer(validate=UNIX_TIME, metadata={"description": "UNIX time"})
    end = fields.Integer(validate=UNIX_TIME, metadata={"description": "UNIX time"})


class CheckSchema(Schema):
    """A check; read-only keys get `unique_key` instead of `uuid`, the URLs and `channels`."""

    name = fields.String()
    slug = fields.String()
    tags = fields.String()
    desc = fields.String()
    grace = fields.Integer()
    n_pings = fields.Integer()
    status = fields.String(validate=validate.OneOf(
        ("new", "started", "up", "grace", "down", "paused")), metadata={
        "description": "`started` in API v1 only."})
    started = fields.Boolean()
    last_ping = fields.String(allow_none=True)
    next_ping = fields.String(allow_none=True)
    manual_resume = fields.Boolean()
    methods = fields.String()
    subject = fields.String()
    subject_fail = fields.String()
    start_kw = fields.String()
    success_kw = fields.String()
    failure_kw = fields.String()
    filter_subject = fields.Boolean()
    filter_body = fields.Boolean()
    filter_http_body = fields.Boolean()
    filter_default_fail = fields.Boolean()
    badge_url = fields.String()
    last_duration = fields.Integer(metadata={"description": "Seconds; only when known."})
    unique_key = fields.String()
    uuid = fields.String()
    ping_url = fields.String()
    update_url = fields.String()
    pause_url = fields.String()
    resume_url = fields.String()
    channels = fields.String()
    timeout = fields.Integer(metadata={"description": "Checks without a schedule."})
    schedule = fields.String(metadata={"description": "Checks with a schedule."})
    tz = fields.String()


CheckListSchema = Schema.from_dict({"checks": fields.List(fields.Nested(CheckSchema))},
                                   name="CheckList")


class PingSchema(Schema):
    type = fields.String(validate=validate.OneOf(("success", "start", "fail", "log", "ign")))
    date = fields.String()
    n = fields.Integer()
    scheme = fields.String()
    remote_addr = fields.String(allow_none=True)
    method = fields.String()
    ua = fields.String()
    rid = fields.String(allow_none=True)
    duration = fields.Float(metadata={"description": "Seconds; only for the end of a run."})
    body_url = fields.String(allow_none=True)


PingListSchema = Schema.from_dict({"pings": fields.List(fields.Nested(PingSchema))},
                                  name="PingList")


class FlipSchema(Schema):
    timestamp = fields.String()
    up = fields.Integer(validate=validate.OneOf((0, 1)))


FlipListSchema = Schema.from_dict({"flips": fields.List(fields.Nested(FlipSchema))},
                                  name="FlipList")


class IntegrationSchema(Schema):
    id = fields.String()
    name = fields.String()
    kind = fields.String()


IntegrationListSchema = Schema.from_dict(
    {"channels": fields.List(fields.Nested(IntegrationSchema))}, name="IntegrationList")


class BadgeUrlsSchema(Schema):
    svg = fields.String()
    svg3 = fields.String()
    json = fields.String()
    json3 = fields.String()
    shields = fields.String()
    shields3 = fields.String()


BadgeListSchema = Schema.from_dict(
    {"badges": fields.Dict(keys=fields.String(), values=fields.Nested(BadgeUrlsSchema))},
    name="BadgeList")
