"""§6.1: every change between up and down is one incident boundary; at most one incident is
open per application at a time, enforced by the database itself."""
from __future__ import annotations

import pytest
from sqlalchemy import exc as sa_exc
from sqlalchemy import func, select

from database import db
from models import Incident


def _open_incidents(app, uuid: str) -> int:
    from models import Application
    with app.app_context():
        count = db.session.execute(
            select(func.count(Incident.id)).join(Application,
                                                 Application.id == Incident.application_id)
            .where(Application.uuid == uuid, Incident.resolved_at.is_(None))).scalar_one()
        db.session.remove()
    return count


def test_down_then_paused_then_pinged_then_failed_keeps_one_open_incident(app, api, anonymous,
                                                                          application, clock):
    uuid = application["uuid"]
    assert anonymous.get(f"/ping/{uuid}/fail").status_code == 200  # down: incident opens
    assert api.post(f"/api/v1/applications/{uuid}/pause").status_code == 200
    clock.advance(seconds=60)
    assert anonymous.get(f"/ping/{uuid}").status_code == 200  # resumes: up
    clock.advance(seconds=60)
    response = anonymous.get(f"/ping/{uuid}/fail")  # down again
    assert response.status_code == 200, response.text
    assert api.get(f"/api/v1/applications/{uuid}").json()["status"] == "down"
    assert _open_incidents(app, uuid) == 1


def test_the_database_refuses_a_second_open_incident(app, application, clock):
    from models import Application
    with app.app_context():
        application_id = db.session.execute(select(Application.id).where(
            Application.uuid == application["uuid"])).scalar_one()
        db.session.add(Incident(application_id=application_id, reason="failed",
                                started_at=clock.now()))
        db.session.commit()
        db.session.add(Incident(application_id=application_id, reason="missed",
                                started_at=clock.now()))
        with pytest.raises(sa_exc.IntegrityError):
            db.session.commit()
        db.session.rollback()
        # Resolved incidents are history: any number of them may sit beside the open one.
        db.session.add_all([Incident(application_id=application_id, reason="failed",
                                     started_at=clock.now(), resolved_at=clock.now())
                            for _ in range(2)])
        db.session.commit()
        db.session.remove()
