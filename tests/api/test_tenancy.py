"""A merchant key can neither see nor change another merchant's data on any route, and a
manager key reads no other region's statistics (issue 12).

The walk reads every operation from the live OpenAPI document, so a route added later is
walked too; a parameter the walk does not know (by name) fails it, so whoever adds one must
say here whether it names a tenant's thing. For each parameter that names one, the call
carries the rival's value there and the tenant's own everywhere else, and must be a 404 (or
403); the same call with the tenant's own values must succeed, so the refusal is for the
foreign id and not for a malformed request. Afterwards nothing of the rival's has changed.
The statistics (tag ``stats``) are a manager's only: a merchant's and a store's key meet 403s
there, and a manager key walks them with another region's circle, merchant, store, campaign
and channel instead."""
from __future__ import annotations

import re
import uuid
from datetime import date, timedelta

from sqlalchemy import func, select

from core.db import db
from core.txn import transaction
from coupons import services as coupon_svc
from coupons.models import Coupon, CouponTemplate, Redemption, RedemptionReversal, coupon_template_stores
from merchants.models import Store
from tests.api.conftest import Tenant, _tenant, auth
from tests.api.test_channels import make_channel
from tests.api.test_stats_api import make_campaign
from tests.support.coupons import make_template
from tests.support.residents import make_circle

ID_PARAMS = ("store_id", "code", "redemption_id", "template_id", "store_ids", "channel_id")  # a tenant's things
MANAGER_IDS = ("circle_id", "merchant_id", "store_id", "campaign_id", "channel_id")  # a region's things
MANAGER_ONLY = "stats"  # the tag of the operations only a manager key may call
OTHER_PARAMS = {  # parameters that name nothing of a tenant's: a fixed valid value (None: left out)
    "limit": 100,
    "starting_after": None,
    "bill_fen": 12800,  # above the fixtures' minimum spend
    "reason": "tenancy walk",
    # a template's terms (create, update), valid for a template no coupon of which is out
    "name": "巡查券", "kind": "amount_off", "value": 2000, "cap_fen": None, "min_spend_fen": 10000,
    "valid_from": "2025-06-01", "valid_until": "2025-06-30", "valid_days": None, "weekdays": [1, 2, 3, 4, 5, 6, 7],
    "hours_start": None, "hours_end": None, "total_stock": 100, "per_diner_limit": 1, "description": "tenancy walk",
    "claimable": False,
    "status": "active",  # a template's (a fresh one is active; active → active is allowed) and a list's filter
    # the statistics' range (the fixtures' numbers are today's) and their choices
    "from": (date.today() - timedelta(days=60)).isoformat(), "to": (date.today() + timedelta(days=1)).isoformat(),
    "cuisine": "sichuan", "grain": "day", "by": "store",
}
REFUSED = {403, 404}


def _redeem(client, tenant: Tenant) -> int:
    resp = client.post("/api/v1/redemptions", json={"code": tenant.coupon(), "bill_fen": 12800},
                       headers=auth(tenant.store_token, f"seed-{uuid.uuid4()}"))
    assert resp.status_code == 201, resp.get_data(as_text=True)
    return resp.get_json()["id"]


def _ids(client, tenant: Tenant, spare_codes: int = 0) -> dict:
    """A tenant's live things by parameter name, each a supplier. The tenant's own ``code`` is
    issued fresh on each use; the rival's come from coupons issued now (``spare_codes``), so
    its state can be taken before the walk. Either way a leak on a redemption would redeem."""
    redemption_id = _redeem(client, tenant)
    spares = iter([tenant.coupon() for _ in range(spare_codes)])
    channel_id = make_channel(tenant.shop.store)
    # the tenant's own template is a fresh one on each use (nothing issued: every term may
    # change); the rival's is its live one, with coupons out
    template = (lambda: tenant.template_id) if spare_codes else (lambda: make_template(tenant.shop).id)
    return {"store_id": lambda: tenant.shop.store.id, "code": (lambda: next(spares)) if spare_codes else tenant.coupon,
            "redemption_id": lambda: redemption_id, "template_id": template,
            "store_ids": lambda: [tenant.shop.store.id], "channel_id": lambda: channel_id}


def _operations(doc: dict):
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            yield method.upper(), path, op


def _params(doc: dict, op: dict) -> tuple[list[str], list[str], list[str], set[str]]:
    """The names an operation takes in its path, its query and its JSON body, and which of
    the query's and the body's are optional."""
    params = op.get("parameters", [])
    body = op.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema", {})
    if "$ref" in body:
        body = doc["components"]["schemas"][body["$ref"].rsplit("/", 1)[1]]
    query = [p for p in params if p["in"] == "query"]
    optional = {p["name"] for p in query if not p.get("required")} | (set(body.get("properties", {}))
                                                                       - set(body.get("required", [])))
    return ([p["name"] for p in params if p["in"] == "path"], [p["name"] for p in query],
            list(body.get("properties", {})), optional)


def _call(client, token: str, method: str, path: str, names, values: dict):
    _path_names, query_names, body_names, _optional = names
    url = re.sub(r"\{([^}]+)\}", lambda m: str(values[m.group(1)]), path)
    query = {n: values[n] for n in query_names if values[n] is not None}
    if method == "GET":
        return client.get(url, query_string=query, headers=auth(token))
    body = {n: values[n] for n in body_names if values[n] is not None}
    return client.post(url, query_string=query, json=body, headers=auth(token, f"walk-{uuid.uuid4()}"))


def _rival_state(rival: Tenant) -> dict:
    db.session.expire_all()
    stores = select(Store.id).where(Store.merchant_id == rival.shop.merchant.id)
    reds = select(Redemption.id, Redemption.reversed, Redemption.bill_fen).where(Redemption.store_id.in_(stores))
    return {
        "redemptions": sorted(db.session.execute(reds).all()),
        "reversals": db.session.scalar(select(func.count(RedemptionReversal.id)).where(
            RedemptionReversal.redemption_id.in_(reds.with_only_columns(Redemption.id)))),
        "coupons": sorted(db.session.execute(select(Coupon.short_code, Coupon.status).where(
            Coupon.template_id == rival.template_id)).all()),
        "templates": sorted(db.session.execute(select(
            CouponTemplate.id, CouponTemplate.name, CouponTemplate.value, CouponTemplate.status,
            CouponTemplate.description, CouponTemplate.updated_at).where(
            CouponTemplate.merchant_id == rival.shop.merchant.id)).all()),
        "template_stores": sorted(db.session.execute(select(coupon_template_stores).where(
            coupon_template_stores.c.store_id.in_(stores))).all()),
    }


def test_a_merchant_key_meets_only_404s_with_another_merchants_ids(client, tenant, rival):
    doc = client.get("/api/v1/openapi.json").get_json()
    own, foreign = _ids(client, tenant), _ids(client, rival, spare_codes=20)
    before = _rival_state(rival)
    rival_marks = [rival.shop.merchant.name, *(code for code, _status in before["coupons"])]
    walked, unknown = [], []
    for method, path, op in _operations(doc):
        names = _params(doc, op)
        everything = [n for group in names[:3] for n in group]
        strangers = [n for n in everything if n not in ID_PARAMS and n not in MANAGER_IDS and n not in OTHER_PARAMS]
        if strangers:
            unknown += [f"{method} {path}: {n}" for n in strangers]
            continue
        taken = [n for n in ID_PARAMS if n in everything]
        if MANAGER_ONLY in op.get("tags", []):  # not a merchant's at all, whatever it names
            values = {**OTHER_PARAMS, **dict.fromkeys(MANAGER_IDS), **{n: own[n]() for n in taken}}
            for token in (tenant.token, tenant.store_token):
                resp = _call(client, token, method, path, names, values)
                assert resp.status_code == 403, (method, path, resp.status_code, resp.get_data(as_text=True))
            walked.append((method, path, None))
            continue
        for name in taken:  # the rival's value in one place, the tenant's own everywhere else
            values = {**OTHER_PARAMS, **{n: own[n]() for n in taken}, name: foreign[name]()}
            resp = _call(client, tenant.token, method, path, names, values)
            assert resp.status_code in REFUSED, (method, path, name, resp.status_code, resp.get_data(as_text=True))
            assert resp.mimetype == "application/problem+json"
            walked.append((method, path, name))
        # the same call with the tenant's own values goes through: the refusals were for the ids
        resp = _call(client, tenant.token, method, path, names, {**OTHER_PARAMS, **{n: own[n]() for n in taken}})
        assert 200 <= resp.status_code < 300, (method, path, resp.status_code, resp.get_data(as_text=True))
        text = resp.get_data(as_text=True)
        assert not [mark for mark in rival_marks if mark in text], (method, path, text)
        walked.append((method, path, None))
        for name in (n for n in taken if n in names[3]):  # an optional id left out: still only its own
            resp = _call(client, tenant.token, method, path, names,
                         {**OTHER_PARAMS, **{n: own[n]() for n in taken}, name: None})
            assert resp.status_code < 300 or resp.status_code == 400, (method, path, name, resp.status_code)
            text = resp.get_data(as_text=True)
            assert not [mark for mark in rival_marks if mark in text], (method, path, name, text)
    assert not unknown, f"parameters the tenancy walk does not know (add them to ID_PARAMS or OTHER_PARAMS): {unknown}"
    assert {(m, p) for m, p, _ in walked} == {(m, p) for m, p, _ in _operations(doc)}  # every operation
    assert {n for _, _, n in walked} >= set(ID_PARAMS)  # each kind of id was tried somewhere
    assert _rival_state(rival) == before  # nothing of the rival's changed


def _region(circle, tenant: Tenant) -> dict:
    """A region's things by parameter name, each a supplier: the tenant's circle, merchant and
    store, a channel code of the store, a campaign of the merchant; today's numbers there."""
    channel_id = make_channel(tenant.shop.store)
    with transaction(db.session) as session:
        campaign_id = make_campaign(session, f"{tenant.shop.merchant.name}周末", merchant_id=tenant.shop.merchant.id)
        coupon = coupon_svc.issue_coupon(session, tenant.template_id, f"wm-region-{uuid.uuid4()}",
                                         store_id=tenant.shop.store.id, channel_id=channel_id, campaign_id=campaign_id)
        coupon_svc.redeem(session, coupon.short_code, tenant.shop.store.id, None, 12800, f"region-{uuid.uuid4()}")
    return {"circle_id": lambda: circle.id, "merchant_id": lambda: tenant.shop.merchant.id,
            "store_id": lambda: tenant.shop.store.id, "campaign_id": lambda: campaign_id,
            "channel_id": lambda: channel_id}


def test_a_manager_key_meets_only_404s_outside_its_regions(client, circle, tenant, manager_token):
    """The statistics for a manager of the tenant's city, walked with another city's ids: each
    is a 404; the manager's own go through, and no answer names the other city's things."""
    doc = client.get("/api/v1/openapi.json").get_json()
    with transaction(db.session) as session:
        elsewhere = make_circle(session)  # under another city
    stranger = _tenant(elsewhere, "远方食堂")
    own, foreign = _region(circle, tenant), _region(elsewhere, stranger)
    marks = [stranger.shop.merchant.name, stranger.shop.store.name, "远方食堂周末", elsewhere.name]
    operations = [(m, p, op) for m, p, op in _operations(doc) if MANAGER_ONLY in op.get("tags", [])]
    assert operations
    walked = []
    for method, path, op in operations:
        names = _params(doc, op)
        everything = [n for group in names[:3] for n in group]
        assert all(n in MANAGER_IDS or n in OTHER_PARAMS for n in everything), (method, path, everything)
        taken = [n for n in MANAGER_IDS if n in everything]
        for name in taken:
            values = {**OTHER_PARAMS, **{n: own[n]() for n in taken}, name: foreign[name]()}
            resp = _call(client, manager_token, method, path, names, values)
            assert resp.status_code == 404, (method, path, name, resp.status_code, resp.get_data(as_text=True))
            assert resp.mimetype == "application/problem+json"
            walked.append((method, path, name))
        for values in ({**OTHER_PARAMS, **{n: own[n]() for n in taken}},  # all its own
                       {**OTHER_PARAMS, **dict.fromkeys(taken), "cuisine": None}):  # nothing narrowed
            resp = _call(client, manager_token, method, path, names, values)
            assert resp.status_code == 200, (method, path, resp.status_code, resp.get_data(as_text=True))
            text = resp.get_data(as_text=True)
            assert not [mark for mark in marks if mark in text], (method, path, text)
        walked.append((method, path, None))
    assert {n for _, _, n in walked} >= set(MANAGER_IDS)
    stores = _call(client, manager_token, "GET", "/api/v1/stats/breakdown",
                   _params(doc, doc["paths"]["/api/v1/stats/breakdown"]["get"]),
                   {**OTHER_PARAMS, **dict.fromkeys(MANAGER_IDS), "cuisine": None}).get_json()["data"]
    assert [r["id"] for r in stores] == [tenant.shop.store.id]  # its own numbers are there; the other city's not


def test_the_walk_notices_a_parameter_it_does_not_know():
    """A new path parameter (or a query or body one) is reported, not silently walked past."""
    doc = {"paths": {"/api/v1/widgets/{widget_id}": {"get": {"parameters": [
        {"name": "widget_id", "in": "path", "required": True, "schema": {"type": "integer"}}]}}}}
    (_method, _path, op), = _operations(doc)
    path_names, _query, _body, _optional = _params(doc, op)
    assert [n for n in path_names if n not in ID_PARAMS and n not in OTHER_PARAMS] == ["widget_id"]
