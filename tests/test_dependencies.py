"""§8 Dependencies: a child's alerts are held while an application it depends on is down."""
from __future__ import annotations

from tests.helpers import assert_envelope
from tests.incident_helpers import events, make_application, make_channel, open_incident


def silence(anonymous, runtime, clock, *uuids) -> None:
    for uuid in uuids:
        anonymous.get(f"/ping/{uuid}")
    clock.advance(seconds=91)
    runtime.monitor.tick()


def test_a_child_down_while_its_parent_is_down_is_suppressed(api, anonymous, runtime, clock,
                                                            sink):
    channel = make_channel(api, "ops", sink)
    parent = make_application(api, name="db", channels=[channel])["uuid"]
    child = make_application(api, name="etl", channels=[channel], depends_on=parent)["uuid"]
    assert api.get(f"/api/v1/applications/{child}").json()["depends_on"] == parent
    silence(anonymous, runtime, clock, parent, child)  # both go down in the same tick
    incident = open_incident(api, child)
    assert (incident["suppressed_by"], incident["alerted_at"]) == (parent, None)
    assert [payload["application"]["uuid"] for payload in
            [item["payload"] for item in api.get("/api/v1/alerts").json()["items"]]] == [parent]


def test_the_childs_alert_goes_when_the_parent_recovers_and_it_is_still_down(
        api, anonymous, runtime, clock, sink):
    channel = make_channel(api, "ops", sink)
    grandparent = make_application(api, name="net", channels=[channel])["uuid"]
    parent = make_application(api, name="db", depends_on=grandparent, channels=[channel])["uuid"]
    child = make_application(api, name="etl", channels=[channel], depends_on=parent)["uuid"]
    silence(anonymous, runtime, clock, grandparent)
    clock.advance(seconds=1)
    anonymous.get(f"/ping/{child}/fail")
    assert open_incident(api, child)["suppressed_by"] == grandparent  # transitively
    anonymous.get(f"/ping/{grandparent}")
    clock.advance(seconds=2)
    runtime.monitor.tick()
    assert [event for event, _ in events(api)] == ["application.down", "application.up",
                                                   "application.down"]
    assert open_incident(api, child)["alerted_at"] is not None
    anonymous.get(f"/ping/{child}")
    assert events(api)[-1][0] == "application.up"


def test_a_child_that_recovers_before_its_parent_sends_nothing(api, anonymous, runtime, clock,
                                                              sink):
    channel = make_channel(api, "ops", sink)
    parent = make_application(api, name="db", channels=[channel])["uuid"]
    child = make_application(api, name="etl", channels=[channel], depends_on=parent)["uuid"]
    silence(anonymous, runtime, clock, parent)
    anonymous.get(f"/ping/{child}/fail")
    anonymous.get(f"/ping/{child}")
    anonymous.get(f"/ping/{parent}")
    clock.advance(seconds=2)
    runtime.monitor.tick()
    assert [event for event, _ in events(api)] == ["application.down", "application.up"]


def test_a_dependency_cycle_or_on_itself_is_refused(api):
    a = make_application(api, name="a")["uuid"]
    b = make_application(api, name="b", depends_on=a)["uuid"]
    c = make_application(api, name="c", depends_on=b)["uuid"]
    for uuid, parent in ((a, c), (a, a)):
        answer = api.patch(f"/api/v1/applications/{uuid}", json={"depends_on": parent})
        assert "depends_on" in assert_envelope(answer, 422, "VALIDATION_ERROR")["details"]
    unknown = api.patch(f"/api/v1/applications/{a}",
                        json={"depends_on": "9b0c0fa4-5ae6-4cf2-8d0e-9c1b5e7bd111"})
    assert "depends_on" in assert_envelope(unknown, 422, "VALIDATION_ERROR")["details"]
    assert api.patch(f"/api/v1/applications/{c}", json={"depends_on": None}).json()[
        "depends_on"] is None
    assert api.patch(f"/api/v1/applications/{a}", json={"depends_on": c}).status_code == 200


def test_deleting_a_parent_releases_what_it_held(api, anonymous, runtime, clock, sink):
    channel = make_channel(api, "ops", sink)
    parent = make_application(api, name="db", channels=[channel])["uuid"]
    child = make_application(api, name="etl", channels=[channel], depends_on=parent)["uuid"]
    silence(anonymous, runtime, clock, parent, child)
    api.delete(f"/api/v1/applications/{parent}")
    clock.advance(seconds=2)
    runtime.monitor.tick()
    assert [payload["application"]["uuid"] for payload in
            [item["payload"] for item in api.get("/api/v1/alerts").json()["items"]]] == [
        child, parent]  # newest first
