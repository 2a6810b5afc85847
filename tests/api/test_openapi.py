"""The API's OpenAPI document as served: a valid OpenAPI 3.1 document (issue 12: "the
document validates as OpenAPI 3.1"), generated from the routes, so every API route is in it."""
from __future__ import annotations

import re

from openapi_spec_validator import OpenAPIV31SpecValidator, validate

API_PREFIX = "/api/v1/"
NOT_OPERATIONS = {"/api/v1/openapi.json"}  # the document itself (and spectree's pages under /docs) are no operations


def test_the_document_validates_as_openapi_3_1(client):
    resp = client.get("/api/v1/openapi.json")
    assert resp.status_code == 200 and resp.mimetype == "application/json"
    doc = resp.get_json()
    assert doc["openapi"].startswith("3.1.")
    validate(doc, cls=OpenAPIV31SpecValidator)  # raises with the first violation


def test_every_api_route_is_in_the_document(app, client):
    doc = client.get("/api/v1/openapi.json").get_json()
    documented = {(path, method.upper()) for path, ops in doc["paths"].items() for method in ops}
    routed = set()
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith(API_PREFIX) or rule.rule in NOT_OPERATIONS or rule.rule.startswith("/api/v1/docs"):
            continue
        path = re.sub(r"<(?:[^:>]+:)?([^>]+)>", r"{\1}", rule.rule)  # <int:id> -> {id}
        routed |= {(path, m) for m in rule.methods - {"HEAD", "OPTIONS"}}
    assert routed == documented


def test_every_operation_is_secured_and_every_mutation_takes_an_idempotency_key(client):
    doc = client.get("/api/v1/openapi.json").get_json()
    assert doc["security"] == [{"bearer": []}]
    assert doc["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            assert "401" in op["responses"], (method, path)
            headers = {p["name"] for p in op.get("parameters", []) if p["in"] == "header"}
            assert ("Idempotency-Key" in headers) == (method == "post"), (method, path)
            for status, answer in op["responses"].items():
                if int(status) >= 400:
                    assert list(answer["content"]) == ["application/problem+json"], (method, path, status)
