"""The POS's coupon calls: lookup, redeem, reverse, list — with Stripe's idempotency contract
(a retry replays the first answer, another body under the same key is a 422, fifty racing
requests under one key make one effect) and problem documents for every refusal."""
from __future__ import annotations

import threading

from limits import parse as parse_limit
from sqlalchemy import func, select

from core.db import db
from coupons.models import Coupon, CouponStatus, Redemption
from integrations.models import ApiAction, IdempotencyRecord
from tests.api.conftest import auth

PROBLEM = "application/problem+json"


def test_lookup_prices_the_bill_and_names_the_rule(client, tenant):
    code = tenant.coupon()
    resp = client.get(f"/api/v1/coupons/{code}?bill_fen=12800", headers=auth(tenant.store_token))
    assert resp.status_code == 200, resp.get_data(as_text=True)
    body = resp.get_json()
    assert body["redeemable"] is True and body["discount_fen"] == 2000 and body["payable_fen"] == 10800
    assert body["template"]["min_spend_fen"] == 10000
    low = client.get(f"/api/v1/coupons/{code}?bill_fen=5000", headers=auth(tenant.store_token)).get_json()
    assert low["redeemable"] is False and low["reason"] == "below_min_spend" and low["message"]
    # a merchant key must say where
    resp = client.get(f"/api/v1/coupons/{code}", headers=auth(tenant.token))
    assert resp.status_code == 400 and resp.mimetype == PROBLEM and resp.get_json()["field"] == "store_id"
    ok = client.get(f"/api/v1/coupons/{code}?store_id={tenant.shop.other_store.id}", headers=auth(tenant.token))
    assert ok.status_code == 200 and ok.get_json()["redeemable"] is True


def test_redeem_once_per_key_and_replay(client, tenant):
    code = tenant.coupon()
    body = {"code": code, "bill_fen": 12800}
    first = client.post("/api/v1/redemptions", json=body, headers=auth(tenant.store_token, "k-1"))
    assert first.status_code == 201, first.get_data(as_text=True)
    again = client.post("/api/v1/redemptions", json=body, headers=auth(tenant.store_token, "k-1"))
    assert again.status_code == 201 and again.get_data() == first.get_data()
    assert again.headers["Idempotent-Replayed"] == "true"
    # the same key with another bill is refused, and redeems nothing
    other = client.post("/api/v1/redemptions", json={**body, "bill_fen": 20000},
                        headers=auth(tenant.store_token, "k-1"))
    assert other.status_code == 422 and other.get_json()["code"] == "idempotency-key-reused"
    # another key on the used coupon: refused by the coupon's rule, with where and when
    used = client.post("/api/v1/redemptions", json=body, headers=auth(tenant.store_token, "k-2"))
    assert used.status_code == 409 and used.mimetype == PROBLEM
    assert used.get_json()["reason"] == "already_redeemed"
    # ...and that refusal is itself kept: the retry gets the same answer
    assert client.post("/api/v1/redemptions", json=body,
                       headers=auth(tenant.store_token, "k-2")).get_data() == used.get_data()
    db.session.expire_all()
    assert db.session.scalar(select(func.count(Redemption.id))) == 1
    red = db.session.scalar(select(Redemption))
    assert red.cashier_id is None and red.store_id == tenant.shop.store.id and red.discount_fen == 2000
    assert db.session.scalar(select(ApiAction.action)) == "redeem"


def test_fifty_concurrent_requests_with_one_key_make_one_effect(app, backend, tenant):
    code = tenant.coupon()
    body = {"code": code, "bill_fen": 15000}
    answers: list = [None] * 50
    barrier = threading.Barrier(50)

    def run(i: int) -> None:
        client = app.test_client()
        barrier.wait()
        resp = client.post("/api/v1/redemptions", json={**body, "store_id": tenant.shop.store.id},
                           headers=auth(tenant.token, "race"))
        answers[i] = (resp.status_code, resp.get_data())

    threads = [threading.Thread(target=run, args=(i,)) for i in range(50)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert all(a is not None for a in answers)
    assert {status for status, _ in answers} == {201}, {a[0] for a in answers}
    assert len({data for _, data in answers}) == 1  # the same response, byte for byte
    db.session.expire_all()
    assert db.session.scalar(select(func.count(Redemption.id))) == 1
    assert db.session.scalar(select(func.count(IdempotencyRecord.id))) == 1
    assert db.session.scalar(select(Coupon.status).where(Coupon.short_code == code)) == CouponStatus.redeemed


def test_reverse_within_the_window_gives_the_coupon_back(client, tenant):
    code = tenant.coupon()
    red = client.post("/api/v1/redemptions", json={"code": code, "bill_fen": 12000},
                      headers=auth(tenant.store_token, "r-1")).get_json()
    till = client.post(f"/api/v1/redemptions/{red['id']}/reverse", json={}, headers=auth(tenant.store_token, "t-1"))
    assert till.status_code == 403 and till.mimetype == PROBLEM  # as at the desk: the owner reverses, not a till
    rev = client.post(f"/api/v1/redemptions/{red['id']}/reverse", json={"reason": "输错金额"},
                      headers=auth(tenant.token, "rev-1"))
    assert rev.status_code == 200, rev.get_data(as_text=True)
    assert rev.get_json()["status"] == "reversed" and rev.get_json()["reversible_until"] is None
    nul = client.post(f"/api/v1/redemptions/{red['id']}/reverse", json={"reason": "a\x00b"},
                      headers=auth(tenant.token, "rev-0"))
    assert nul.status_code == 422 and nul.mimetype == PROBLEM
    twice = client.post(f"/api/v1/redemptions/{red['id']}/reverse", json={}, headers=auth(tenant.token, "rev-2"))
    assert twice.status_code == 409 and twice.get_json()["reason"] == "already_reversed"
    db.session.expire_all()
    assert db.session.scalar(select(Coupon.status).where(Coupon.short_code == code)) == CouponStatus.issued
    listed = client.get("/api/v1/redemptions", headers=auth(tenant.token)).get_json()
    assert [r["status"] for r in listed["data"]] == ["reversed"] and listed["has_more"] is False


def test_pages_by_cursor(client, tenant):
    for i in range(3):
        client.post("/api/v1/redemptions", json={"code": tenant.coupon(), "bill_fen": 12000},
                    headers=auth(tenant.store_token, f"p-{i}"))
    first = client.get("/api/v1/redemptions?limit=2", headers=auth(tenant.token)).get_json()
    assert len(first["data"]) == 2 and first["has_more"] is True
    rest = client.get(f"/api/v1/redemptions?limit=2&starting_after={first['data'][-1]['id']}",
                      headers=auth(tenant.token)).get_json()
    assert len(rest["data"]) == 1 and rest["has_more"] is False
    for bad in ("limit=0", "limit=101", "limit=x", "starting_after=-1", "starting_after=99999999999", "nope=1"):
        resp = client.get(f"/api/v1/redemptions?{bad}", headers=auth(tenant.token))
        assert resp.status_code == 422 and resp.mimetype == PROBLEM, bad


def test_bad_requests_are_problems_not_500s(client, tenant):
    code = tenant.coupon()
    cases = [
        ({"code": code, "bill_fen": 0}, "k1", 422),
        ({"code": code, "bill_fen": 10**12}, "k2", 422),
        ({"code": "x" * 33, "bill_fen": 12000}, "k3", 422),
        ({"code": code, "bill_fen": 12000, "extra": 1}, "k4", 422),
        ({"code": "NOSUCHCODE", "bill_fen": 12000}, "k5", 404),
        ({"code": "AB\x00CD", "bill_fen": 12000}, "k6", 422),  # PostgreSQL stores no NUL: refused up front
        ({"code": code, "bill_fen": 12000}, None, 400),  # no Idempotency-Key
        ({"code": code, "bill_fen": 12000}, "k" * 256, 400),
    ]
    for body, key, status in cases:
        resp = client.post("/api/v1/redemptions", json=body, headers=auth(tenant.store_token, key))
        assert resp.status_code == status and resp.mimetype == PROBLEM, (body, key, resp.get_data(as_text=True))
        assert resp.get_json()["type"].startswith("/api/v1/problems/")
    garbage = client.post("/api/v1/redemptions", data=b"{not json", headers={
        **auth(tenant.store_token, "g"), "Content-Type": "application/json"})
    assert garbage.status_code in (400, 422) and garbage.mimetype == PROBLEM
    assert client.get("/api/v1/stores", headers={"Authorization": "Bearer lk_nope_x"}).status_code == 401
    assert client.get("/api/v1/stores").headers["WWW-Authenticate"].startswith("Bearer")
    en = client.get("/api/v1/stores", headers={"Accept-Language": "en"}).get_json()
    assert en["status"] == 401


def test_keys_see_their_own_only(client, tenant, rival, manager_token):
    mine = client.get("/api/v1/stores", headers=auth(tenant.token)).get_json()
    assert {s["id"] for s in mine["data"]} == {tenant.shop.store.id, tenant.shop.other_store.id}
    one = client.get("/api/v1/stores", headers=auth(tenant.store_token)).get_json()
    assert [s["id"] for s in one["data"]] == [tenant.shop.store.id]
    assert client.get(f"/api/v1/stores/{rival.shop.store.id}", headers=auth(tenant.token)).status_code == 404
    assert client.get(f"/api/v1/stores/{tenant.shop.other_store.id}",
                      headers=auth(tenant.store_token)).status_code == 404
    theirs = rival.coupon()
    assert client.get(f"/api/v1/coupons/{theirs}", headers=auth(tenant.store_token)).status_code == 404
    resp = client.post("/api/v1/redemptions", json={"code": theirs, "bill_fen": 12000},
                       headers=auth(tenant.store_token, "steal"))
    assert resp.status_code == 404
    assert client.get("/api/v1/stores", headers=auth(manager_token)).status_code == 403


def test_a_key_past_its_rate_gets_429_with_retry_after(app, client, tenant, rival):
    limiter, _rate = app.extensions["api_limiter"]
    app.extensions["api_limiter"] = (limiter, parse_limit("2/minute"))
    try:
        assert [client.get("/api/v1/stores", headers=auth(tenant.token)).status_code for _ in range(3)] == [200, 200, 429]
        resp = client.get("/api/v1/stores", headers=auth(tenant.token))
        assert resp.status_code == 429 and resp.mimetype == PROBLEM
        assert 1 <= int(resp.headers["Retry-After"]) <= 60 and resp.get_json()["retry_after"] >= 1
        # per key: the rival's POS is not slowed by ours
        assert client.get("/api/v1/stores", headers=auth(rival.token)).status_code == 200
    finally:
        app.extensions["api_limiter"] = (limiter, _rate)
