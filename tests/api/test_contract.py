"""The API's contract: schemathesis generates requests from the app's own OpenAPI document
(``/api/v1/openapi.json``) for every operation, valid and invalid ones, and sends them with a
merchant key (the statistics, a manager's only, with the manager key of the tenant's city) to
the running app over seeded data. Whatever it sends, the answer is no 5xx, has a status the
document declares, the declared content type, and a body the declared schema accepts.

Generated values rarely hit a real coupon, store or redemption, so the hooks below swap in
the tenant's own ones for some draws (hypothesis picks which): the 200/201 paths get
exercised, not just the 404s. Examples are few and derandomized, so CI sees the same run."""
from __future__ import annotations

import copy
import traceback
import uuid
from collections import Counter
from datetime import date, timedelta

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.parameters import ParameterLocation
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from core.db import db
from core.txn import transaction
from tests.api.conftest import auth
from tests.api.test_channels import make_channel
from tests.api.test_stats_api import make_campaign
from tests.support.coupons import make_template

MAX_EXAMPLES = 20  # per operation and mode: the whole walk stays well under a minute per backend
REAL_WEIGHT = 3  # a known parameter takes a real value 3 times in 4, so every success path is met
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
MANAGER_ONLY = "/api/v1/stats/"  # the statistics: called with the manager key


def _seed(tenant, client) -> dict[str, list]:
    """The tenant's real values by parameter name: coupons (one redeemed and one reversed
    through the API), its stores, its redemptions, bills its coupons apply to."""
    codes = [tenant.coupon() for _ in range(8)]
    made = []
    for i, code in enumerate(codes[:2]):
        resp = client.post("/api/v1/redemptions", json={"code": code, "bill_fen": 12000},
                           headers=auth(tenant.store_token, f"seed-{i}"))
        assert resp.status_code == 201, resp.get_data(as_text=True)
        made.append(resp.get_json()["id"])
    resp = client.post(f"/api/v1/redemptions/{made[1]}/reverse", json={}, headers=auth(tenant.token, "seed-rev"))
    assert resp.status_code == 200, resp.get_data(as_text=True)
    stores = [tenant.shop.store.id, tenant.shop.other_store.id]
    templates = [tenant.template_id, *(make_template(tenant.shop, name=f"契约券{i}").id for i in range(3))]
    channels = [make_channel(tenant.shop.store), make_channel(tenant.shop.other_store, "桌贴", kind="table")]
    with transaction(db.session) as session:
        campaign = make_campaign(session, "契约活动", merchant_id=tenant.shop.merchant.id)
    today = date.today()
    return {"code": codes, "store_id": stores, "redemption_id": made,
            "bill_fen": [12800, 50000],  # above the template's minimum spend
            "template_id": templates, "channel_id": channels, "store_ids": [[], [stores[0]], stores],
            # the statistics' range (any from with any to is a valid one) and the manager's own ids
            "from": [(today - timedelta(days=d)).isoformat() for d in (30, 400)],
            "to": [(today + timedelta(days=d)).isoformat() for d in (0, 1)],
            "circle_id": [tenant.shop.store.circle_id], "merchant_id": [tenant.shop.merchant.id],
            "campaign_id": [campaign]}


# Whole bodies the rules accept, for operations whose fields depend on each other (a
# template's terms): one of these for some draws, so the success path is met there too.
VALID_BODIES = {
    ("POST", "/api/v1/templates"): [
        {"name": "契约满减", "kind": "amount_off", "value": 2000, "min_spend_fen": 10000,
         "valid_from": "2025-06-01", "valid_until": "2025-06-30"},
        {"name": "契约折扣", "kind": "percent_off", "value": 85, "cap_fen": 3000, "valid_days": 30,
         "weekdays": [6, 7], "hours_start": 660, "hours_end": 840, "status": "active"},
    ],
    ("POST", "/api/v1/templates/{template_id}"): [{"name": "契约改名"}, {"description": "周末可用", "claimable": True}],
}


_ABSENT = object()


def _declared(doc: dict, operation, container: str) -> set[str]:
    """The names an operation declares for its query or its JSON body, from the document."""
    raw = doc["paths"][operation.path][operation.method.lower()]
    if container == "query":
        return {p["name"] for p in raw.get("parameters", []) if p["in"] == "query"}
    body = raw.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema", {})
    if "$ref" in body:
        body = doc["components"]["schemas"][body["$ref"].rsplit("/", 1)[1]]
    return set(body.get("properties", {}))


def _with_real(values: dict[str, list], container, declared: set[str] = frozenset()):
    """A strategy: ``container`` as generated, with each known key (generated, or declared and
    left out) mostly replaced by one of the tenant's real values, else kept as it was."""
    if not isinstance(container, dict):
        return st.just(container)
    known = [k for k in values if k in container or k in declared]
    if not known:
        return st.just(container)
    choices = {k: st.one_of(*[st.sampled_from(values[k])] * REAL_WEIGHT, st.just(container.get(k, _ABSENT)))
               for k in known}
    return st.fixed_dictionaries(choices).map(
        lambda chosen: {**{k: v for k, v in container.items() if k not in chosen},
                        **{k: v for k, v in chosen.items() if v is not _ABSENT}})


@pytest.fixture
def api_schema(app, client, tenant, rival):
    rival.coupon()  # another merchant's data in the same circle, never to be seen
    values = _seed(tenant, client)
    loaded = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", app)
    doc = client.get("/api/v1/openapi.json").get_json()

    @loaded.hook
    def flatmap_path_parameters(context, path_parameters):
        return _with_real(values, path_parameters)

    @loaded.hook
    def flatmap_query(context, query):
        return _with_real(values, query, _declared(doc, context.operation, "query"))

    @loaded.hook
    def flatmap_body(context, body):
        real = _with_real(values, body, _declared(doc, context.operation, "body"))
        whole = VALID_BODIES.get((context.operation.method.upper(), context.operation.path))
        return st.one_of(st.sampled_from(whole).map(copy.deepcopy), real) if whole else real

    return loaded


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=str)
def test_every_operation_keeps_its_contract(api_schema, tenant, manager_token, mode):
    """Each operation of the document in turn (schemathesis's pytest loader for a fixture's
    schema does not run under pytest 9, so the operations' strategies are driven here)."""
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) >= 7  # the document really was read
    broken = []
    seen: dict[str, Counter] = {}
    for operation in operations:
        statuses = seen.setdefault(operation.label, Counter())

        @settings(max_examples=MAX_EXAMPLES, derandomize=True, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck), phases=[Phase.explicit, Phase.generate, Phase.shrink])
        @given(case=operation.as_strategy(generation_mode=mode))
        def call(case):
            headers = dict(case.headers or {})
            headers.update(auth(manager_token if case.path.startswith(MANAGER_ONLY) else tenant.token))
            if case.method.upper() == "POST" and not (case.meta and case.meta.is_negative_at(ParameterLocation.HEADER)):
                headers["Idempotency-Key"] = f"contract-{uuid.uuid4()}"  # each generated call its own effect
            case.headers = headers
            response = case.call()
            statuses[response.status_code] += 1
            case.validate_response(response, checks=CHECKS)

        try:
            call()
        except Exception as exc:  # noqa: BLE001 - every operation is tried, all failures reported
            broken.append(f"{operation.label}:\n{''.join(traceback.format_exception(exc))}")
    assert not broken, "\n\n".join(broken)
    if mode == GenerationMode.POSITIVE:  # the seeds reached every operation's success path
        assert all(any(200 <= s < 300 for s in statuses) for statuses in seen.values()), seen
