"""§4 /openapi.json: every route the app serves is described, from the request schemas."""
from __future__ import annotations

from openapi import openapi_path

IGNORED_METHODS = {"HEAD", "OPTIONS"}


def served_operations(app) -> set[tuple[str, str]]:
    return {(openapi_path(rule.rule), method.lower())
            for rule in app.url_map.iter_rules() if rule.endpoint != "static"
            for method in rule.methods - IGNORED_METHODS}


def documented_operations(document) -> set[tuple[str, str]]:
    return {(path, method) for path, operations in document["paths"].items()
            for method in operations if method.upper() not in IGNORED_METHODS}


def test_every_served_route_is_documented_and_nothing_else(app, anonymous):
    document = anonymous.get("/openapi.json").json()
    assert document["openapi"].startswith("3.")
    served = served_operations(app)
    assert served - documented_operations(document) == set(), "routes missing from OPERATIONS"
    assert documented_operations(document) - served == set(), "documented routes not served"


def test_request_bodies_come_from_the_validating_schemas(anonymous):
    document = anonymous.get("/openapi.json").json()
    create = document["paths"]["/api/v1/applications"]["post"]
    body_ref = create["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    application_in = document["components"]["schemas"][body_ref.rsplit("/", 1)[1]]
    assert application_in["required"] == ["name"]
    assert application_in["properties"]["period_seconds"]["minimum"] == 1
    heartbeat = document["paths"]["/api/v1/applications/{uuid}/heartbeats"]["post"]
    heartbeat_ref = heartbeat["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    heartbeat_in = document["components"]["schemas"][heartbeat_ref.rsplit("/", 1)[1]]
    assert heartbeat_in["properties"]["status"]["enum"] == ["ok", "fail", "start", "log"]
    query = {p["name"] for p in document["paths"]["/api/v1/errors"]["get"]["parameters"]}
    assert {"error_type", "resolved", "since", "until", "limit", "cursor", "format"} <= query


def test_patch_bodies_take_any_subset_of_the_fields(anonymous):
    document = anonymous.get("/openapi.json").json()
    for path, name in (("/api/v1/applications/{uuid}", "ApplicationChange"),
                       ("/api/v1/channels/{channel_id}", "ChannelChange")):
        body = document["paths"][path]["patch"]["requestBody"]["content"]["application/json"]
        assert body["schema"] == {"$ref": f"#/components/schemas/{name}"}
        assert "required" not in document["components"]["schemas"][name]
    assert "uuid" not in document["components"]["schemas"]["ApplicationChange"]["properties"]


def test_error_responses_use_the_envelope(anonymous):
    document = anonymous.get("/openapi.json").json()
    envelope = document["components"]["schemas"]["ErrorEnvelope"]
    assert envelope["required"] == ["error"]
    get_error = document["paths"]["/api/v1/errors/{error_id}"]["get"]
    assert {"401", "403", "404", "500", "503"} <= set(get_error["responses"])
    for status in ("401", "404", "500"):
        schema = get_error["responses"][status]["content"]["application/json"]["schema"]
        assert schema == {"$ref": "#/components/schemas/ErrorEnvelope"}
    assert get_error["parameters"][0] == {"in": "path", "name": "error_id", "required": True,
                                          "schema": {"type": "integer"}}
    assert get_error["security"]
    assert "security" not in document["paths"]["/ping/{uuid}"]["get"]


def test_docs_page_lists_every_operation(anonymous):
    response = anonymous.get("/docs")
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/html")
    document = anonymous.get("/openapi.json").json()
    for path in document["paths"]:
        assert f"<code>{path}</code>" in response.text
    assert "<script" not in response.text and "http://" not in response.text.replace(
        'href="/openapi.json"', "")
