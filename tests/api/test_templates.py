"""Coupon templates over the API: the portal's rules (validation, frozen terms once coupons
are out, status transitions) with the API's contract (Idempotency-Key replay and reuse,
problems naming the field, a store key reads but does not change)."""
from __future__ import annotations

from sqlalchemy import func, select

from core.db import db
from coupons.models import CouponTemplate, TemplateStatus
from tests.api.conftest import auth

PROBLEM = "application/problem+json"
NEW = {"name": "满200减30", "kind": "amount_off", "value": 3000, "min_spend_fen": 20000,
       "valid_from": "2025-07-01", "valid_until": "2025-07-31", "weekdays": [1, 2, 3, 4, 5],
       "hours_start": 660, "hours_end": 840, "total_stock": 500, "per_diner_limit": 2}


def _count() -> int:
    db.session.expire_all()
    return db.session.scalar(select(func.count(CouponTemplate.id)))


def test_create_get_update_pause_with_replay_and_key_reuse(client, tenant):
    before = _count()
    body = {**NEW, "store_ids": [tenant.shop.store.id]}
    made = client.post("/api/v1/templates", json=body, headers=auth(tenant.token, "t-1"))
    assert made.status_code == 201, made.get_data(as_text=True)
    t = made.get_json()
    assert (t["name"], t["kind"], t["value"], t["min_spend_fen"], t["cap_fen"]) == ("满200减30", "amount_off", 3000,
                                                                                    20000, None)
    assert t["weekdays"] == [1, 2, 3, 4, 5] and (t["hours_start"], t["hours_end"]) == (660, 840)
    assert t["store_ids"] == [tenant.shop.store.id] and t["status"] == "draft" and t["issued_count"] == 0
    assert t["valid_from"] == "2025-07-01" and t["funded_by"] == "merchant" and t["claimable"] is False
    again = client.post("/api/v1/templates", json=body, headers=auth(tenant.token, "t-1"))
    assert again.status_code == 201 and again.get_data() == made.get_data()
    assert again.headers["Idempotent-Replayed"] == "true"
    reused = client.post("/api/v1/templates", json={**body, "value": 4000}, headers=auth(tenant.token, "t-1"))
    assert reused.status_code == 422 and reused.get_json()["code"] == "idempotency-key-reused"
    assert _count() == before + 1
    db.session.expire_all()
    row = db.session.get(CouponTemplate, t["id"])
    assert row.merchant_id == tenant.shop.merchant.id and row.weekdays_mask == 0b0011111

    got = client.get(f"/api/v1/templates/{t['id']}", headers=auth(tenant.token))
    assert got.status_code == 200 and got.get_json() == t
    assert client.get(f"/api/v1/templates/{t['id']}", headers=auth(tenant.store_token)).status_code == 200

    # partial update: what is sent changes, the rest stays; null clears a nullable field
    upd = client.post(f"/api/v1/templates/{t['id']}", json={"name": "满200减40", "value": 4000,
                                                            "hours_start": None, "hours_end": None},
                      headers=auth(tenant.token, "u-1"))
    assert upd.status_code == 200, upd.get_data(as_text=True)
    u = upd.get_json()
    assert (u["name"], u["value"], u["hours_start"], u["min_spend_fen"]) == ("满200减40", 4000, None, 20000)
    assert u["store_ids"] == [tenant.shop.store.id] and u["weekdays"] == [1, 2, 3, 4, 5]
    assert client.post(f"/api/v1/templates/{t['id']}", json={"name": "满200减40", "value": 4000, "hours_start": None,
                                                             "hours_end": None},
                       headers=auth(tenant.token, "u-1")).get_data() == upd.get_data()
    everywhere = client.post(f"/api/v1/templates/{t['id']}", json={"store_ids": []}, headers=auth(tenant.token, "u-2"))
    assert everywhere.status_code == 200 and everywhere.get_json()["store_ids"] == []

    # status: draft → active → paused → active → ended, and ended is final
    for i, (status, code) in enumerate([("active", 200), ("paused", 200), ("paused", 200), ("draft", 400),
                                        ("active", 200), ("ended", 200), ("active", 400)]):
        resp = client.post(f"/api/v1/templates/{t['id']}/status", json={"status": status},
                           headers=auth(tenant.token, f"s-{i}"))
        assert resp.status_code == code, (status, resp.get_data(as_text=True))
        if code == 200:
            assert resp.get_json()["status"] == status
        else:
            assert resp.mimetype == PROBLEM and resp.get_json()["field"] == "status"
    db.session.expire_all()
    assert db.session.get(CouponTemplate, t["id"]).status == TemplateStatus.ended
    # the refusal is kept under its key as well
    replay = client.post(f"/api/v1/templates/{t['id']}/status", json={"status": "active"},
                         headers=auth(tenant.token, "s-6"))
    assert replay.status_code == 400 and replay.headers["Idempotent-Replayed"] == "true"

    listed = client.get("/api/v1/templates", headers=auth(tenant.token)).get_json()
    assert [x["id"] for x in listed["data"]] == [tenant.template_id, t["id"]] and listed["has_more"] is False
    ended = client.get("/api/v1/templates?status=ended", headers=auth(tenant.token)).get_json()
    assert [x["id"] for x in ended["data"]] == [t["id"]]
    page = client.get("/api/v1/templates?limit=1", headers=auth(tenant.token)).get_json()
    assert [x["id"] for x in page["data"]] == [tenant.template_id] and page["has_more"] is True


def test_terms_are_frozen_once_coupons_are_out(client, tenant):
    tenant.coupon()  # the fixture's template now has a coupon out
    url = f"/api/v1/templates/{tenant.template_id}"
    for i, change in enumerate([{"value": 2500}, {"min_spend_fen": 12000}, {"valid_until": "2099-01-01"},
                                {"kind": "voucher"}]):
        resp = client.post(url, json=change, headers=auth(tenant.token, f"f-{i}"))
        assert resp.status_code == 400 and resp.mimetype == PROBLEM, (change, resp.get_data(as_text=True))
        assert resp.get_json()["field"] == next(iter(change)) and resp.get_json()["detail"]
    resp = client.post(url, json={"name": "改个名字", "description": "周末也能用", "total_stock": 1000},
                       headers=auth(tenant.token, "f-ok"))
    assert resp.status_code == 200, resp.get_data(as_text=True)
    assert resp.get_json()["name"] == "改个名字" and resp.get_json()["value"] == 2000
    tenant.coupon()
    low = client.post(url, json={"total_stock": 1}, headers=auth(tenant.token, "f-low"))  # two are out
    assert low.status_code == 400 and low.get_json()["field"] == "total_stock"
    paused = client.post(f"{url}/status", json={"status": "paused"}, headers=auth(tenant.token, "f-pause"))
    assert paused.status_code == 200 and paused.get_json()["status"] == "paused"


def test_the_portals_validation_answers_400_with_the_field(client, tenant):
    cases = [  # body change, field
        ({"min_spend_fen": 0}, "min_spend_fen"),  # 满减 needs a threshold
        ({"min_spend_fen": 1000}, "min_spend_fen"),  # below the amount off
        ({"kind": "percent_off", "value": 85}, "cap_fen"),  # a percent needs a cap
        ({"kind": "percent_off", "value": 120, "cap_fen": 3000}, "value"),
        ({"valid_days": 30}, "valid_days"),  # dates and days at once
        ({"valid_from": None, "valid_until": None}, "valid_from"),
        ({"valid_until": "2025-06-01"}, "valid_until"),  # before the start
        ({"valid_from": "1999-12-31"}, "valid_from"),
        ({"weekdays": []}, "weekdays"),
        ({"hours_start": 600, "hours_end": None}, "hours_start"),
        ({"hours_start": 900, "hours_end": 600}, "hours_start"),
        ({"name": "   "}, "name"),
    ]
    before = _count()
    for i, (change, field) in enumerate(cases):
        resp = client.post("/api/v1/templates", json={**NEW, **change}, headers=auth(tenant.token, f"v-{i}"))
        assert resp.status_code == 400 and resp.mimetype == PROBLEM, (change, resp.get_data(as_text=True))
        assert resp.get_json()["field"] == field, (change, resp.get_json())
        assert resp.get_json()["type"] == "/api/v1/problems/invalid"
    ok = client.post("/api/v1/templates", json={**NEW, "kind": "percent_off", "value": 85, "cap_fen": 3000,
                                                "valid_from": None, "valid_until": None, "valid_days": 30,
                                                "status": "active", "claimable": True},
                     headers=auth(tenant.token, "v-ok"))
    assert ok.status_code == 201 and ok.get_json()["valid_days"] == 30 and ok.get_json()["status"] == "active"
    shapes = [  # out of the document's bounds: 422 before any rule
        {**NEW, "value": 0}, {**NEW, "value": 10**12}, {**NEW, "name": ""}, {**NEW, "name": "x" * 65},
        {**NEW, "name": "a\x00b"}, {**NEW, "weekdays": [0]}, {**NEW, "weekdays": [8]}, {**NEW, "total_stock": 0},
        {**NEW, "per_diner_limit": 101}, {**NEW, "status": "paused"}, {**NEW, "kind": "free_lunch"},
        {**NEW, "valid_from": "2025-02-30"}, {**NEW, "extra": 1}, {**NEW, "store_ids": [0]},
        {k: v for k, v in NEW.items() if k != "name"}, {**NEW, "hours_end": 1441}, {**NEW, "description": "x" * 501},
    ]
    for i, body in enumerate(shapes):
        resp = client.post("/api/v1/templates", json=body, headers=auth(tenant.token, f"x-{i}"))
        assert resp.status_code == 422 and resp.mimetype == PROBLEM, (body, resp.get_data(as_text=True))
    for i, body in enumerate([{"name": None}, {"value": None}, {"weekdays": None}, {"status": "paused"}]):
        resp = client.post(f"/api/v1/templates/{tenant.template_id}", json=body, headers=auth(tenant.token, f"n-{i}"))
        assert resp.status_code == 422 and resp.mimetype == PROBLEM, (body, resp.get_data(as_text=True))
    for bad in ({}, {"status": "gone"}, {"status": None}):
        resp = client.post(f"/api/v1/templates/{tenant.template_id}/status", json=bad,
                           headers=auth(tenant.token, f"b-{bad}"))
        assert resp.status_code == 422 and resp.mimetype == PROBLEM, bad
    nokey = client.post("/api/v1/templates", json=NEW, headers=auth(tenant.token))
    assert nokey.status_code == 400 and nokey.mimetype == PROBLEM
    for bad in ("limit=0", "limit=101", "starting_after=0", "status=gone", "nope=1"):
        resp = client.get(f"/api/v1/templates?{bad}", headers=auth(tenant.token))
        assert resp.status_code == 422 and resp.mimetype == PROBLEM, bad
    assert _count() == before + 1


def test_a_store_key_reads_but_does_not_change_templates(client, tenant, manager_token):
    elsewhere = client.post("/api/v1/templates", json={**NEW, "store_ids": [tenant.shop.other_store.id]},
                            headers=auth(tenant.token, "e-1")).get_json()
    listed = client.get("/api/v1/templates", headers=auth(tenant.store_token)).get_json()
    assert [t["id"] for t in listed["data"]] == [tenant.template_id]  # the other store's template is not its
    assert client.get(f"/api/v1/templates/{elsewhere['id']}", headers=auth(tenant.store_token)).status_code == 404
    before = _count()
    calls = [("/api/v1/templates", NEW), (f"/api/v1/templates/{tenant.template_id}", {"name": "门店改名"}),
             (f"/api/v1/templates/{tenant.template_id}/status", {"status": "paused"})]
    for i, (url, body) in enumerate(calls):
        resp = client.post(url, json=body, headers=auth(tenant.store_token, f"sk-{i}"))
        assert resp.status_code == 403 and resp.mimetype == PROBLEM, (url, resp.get_data(as_text=True))
        assert resp.get_json()["code"] == "forbidden"
    assert _count() == before
    db.session.expire_all()
    kept = db.session.get(CouponTemplate, tenant.template_id)
    assert kept.name != "门店改名" and kept.status == TemplateStatus.active
    assert client.get("/api/v1/templates", headers=auth(manager_token)).status_code == 403


def test_another_merchants_templates_and_stores_are_not_found(client, tenant, rival):
    theirs = f"/api/v1/templates/{rival.template_id}"
    assert client.get(theirs, headers=auth(tenant.token)).status_code == 404
    for i, (url, body) in enumerate([(theirs, {"name": "抢来的"}), (f"{theirs}/status", {"status": "ended"}),
                                     ("/api/v1/templates", {**NEW, "store_ids": [rival.shop.store.id]}),
                                     (f"/api/v1/templates/{tenant.template_id}",
                                      {"store_ids": [tenant.shop.store.id, rival.shop.store.id]})]):
        resp = client.post(url, json=body, headers=auth(tenant.token, f"r-{i}"))
        assert resp.status_code == 404 and resp.mimetype == PROBLEM, (url, resp.get_data(as_text=True))
    listed = client.get("/api/v1/templates", headers=auth(tenant.token)).get_json()
    assert rival.template_id not in {t["id"] for t in listed["data"]}
    db.session.expire_all()
    row = db.session.get(CouponTemplate, rival.template_id)
    assert row.name != "抢来的" and row.status == TemplateStatus.active
    assert [s.id for s in db.session.get(CouponTemplate, tenant.template_id).stores] == []
