"""Recording delivery outcomes: the one-statement PostgreSQL path against the ORM path."""
from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import select, update

from channels import create_channel
from database import db
from delivery_outcomes import Outcome, write_outcomes, write_outcomes_postgres
from models import Alert, DeliveryAttempt
from outbox import enqueue_alert

pytestmark = pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)

T0 = dt.datetime(2030, 1, 1, tzinfo=dt.timezone.utc)
LEASE = T0 + dt.timedelta(seconds=60)
LATER = T0 + dt.timedelta(seconds=90)
ALERT_STATE = ("state", "attempt_count", "last_error", "delivered_at", "next_attempt_at",
               "claimed_until")
ATTEMPT = ("attempted_at", "outcome", "http_status", "error", "duration_ms")


def attempt(outcome: str, http_status: int | None, error: str | None) -> dict:
    return {"attempted_at": T0 + dt.timedelta(seconds=1), "outcome": outcome,
            "http_status": http_status, "error": error, "duration_ms": 12}


# (values, attempt, lease): what Deliverer._send and Deliverer._run_batch produce.
CASES = {
    "delivered": ({"state": "delivered", "delivered_at": T0 + dt.timedelta(seconds=1),
                   "last_error": None, "attempt_count": 3}, attempt("delivered", 200, None),
                  LEASE),
    "failed": ({"state": "failed", "last_error": "HTTP 404", "attempt_count": 3},
               attempt("permanent_error", 404, "HTTP 404"), LEASE),
    "dead": ({"state": "dead", "last_error": "timed out", "attempt_count": 3},
             attempt("transient_error", None, "timed out"), LEASE),
    "retried": ({"last_error": "HTTP 503", "next_attempt_at": LATER, "attempt_count": 3},
                attempt("transient_error", 503, "HTTP 503"), LEASE),
    "released unsent": ({}, None, LEASE),
    "released until the breaker's recovery": ({"next_attempt_at": LATER}, None, LEASE),
    "claim lost meanwhile": ({"state": "delivered", "delivered_at": T0, "last_error": None,
                              "attempt_count": 3}, attempt("delivered", 200, None),
                             LEASE + dt.timedelta(microseconds=1)),
}


def claimed_alerts(count: int) -> list[int]:
    channel = create_channel({"name": "hook", "kind": "webhook",
                              "url": "https://hooks.example.com/x"}, T0)
    alerts = [enqueue_alert(channel, "application.down", None, None, None, T0, 86400)
              for _ in range(count)]
    db.session.flush()
    ids = [alert.id for alert in alerts]
    db.session.execute(update(Alert).where(Alert.id.in_(ids))
                       .values(claimed_until=LEASE, attempt_count=2, last_error="earlier"))
    db.session.commit()
    return ids


def recorded(alert_id: int) -> tuple[dict, list[dict]]:
    alert = db.session.get(Alert, alert_id)
    attempts = db.session.execute(select(DeliveryAttempt)
                                  .where(DeliveryAttempt.alert_id == alert_id)).scalars()
    return ({name: getattr(alert, name) for name in ALERT_STATE},
            [{name: getattr(row, name) for name in ATTEMPT} for row in attempts])


def outcome(alert_id: int, case: str) -> Outcome:
    values, made, lease = CASES[case]
    return Outcome(alert_id, lease, values, made and {**made, "alert_id": alert_id})


def test_one_statement_records_every_outcome_as_the_orm_path_does(app):
    with app.app_context():
        ids = claimed_alerts(2 * len(CASES))
        by_orm, by_statement = ids[:len(CASES)], ids[len(CASES):]
        write_outcomes([outcome(alert_id, case) for alert_id, case in zip(by_orm, CASES)])
        with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            write_outcomes_postgres(connection, [outcome(alert_id, case)
                                                 for alert_id, case in zip(by_statement, CASES)])
        db.session.expire_all()
        for case, orm_id, statement_id in zip(CASES, by_orm, by_statement):
            assert recorded(statement_id) == recorded(orm_id), case
        delivered, delivered_attempts = recorded(by_statement[0])
        assert delivered["state"] == "delivered" and delivered["claimed_until"] is None
        assert [a["outcome"] for a in delivered_attempts] == ["delivered"]
        stale, stale_attempts = recorded(by_statement[-1])
        assert stale["state"] == "pending" and stale["claimed_until"] == LEASE
        assert len(stale_attempts) == 1  # the attempt happened, whoever holds the claim
        released, _ = recorded(by_statement[list(CASES).index("released unsent")])
        assert released["last_error"] == "earlier" and released["attempt_count"] == 2
