"""Portal pages over the test client: template forms, the desk, reversal,
tenant isolation (another merchant's ids are 404) and CSRF."""
from __future__ import annotations

import re

import pytest
from sqlalchemy import select, update

from accounts.models import Role, User
from core.db import db
from coupons import services as svc
from coupons.models import Coupon, CouponStatus, CouponTemplate, Redemption
from tests.support.coupons import _password_hash, login, logout, make_template, post_form, tx

GOOD = {
    "name": "午市满100减20", "kind": "amount_off", "amount": "20", "min_spend": "100",
    "validity_mode": "days", "valid_days": "14", "weekdays": ["0", "1", "2", "3", "4"],
    "hours_start": "11:00", "hours_end": "14:00", "total_stock": "200", "per_diner_limit": "1",
    "status": "active",
}


def live_template(shop, **kw):
    """Redeemable right now, whatever the clock says."""
    base = dict(valid_from=None, valid_until=None, valid_days=7)
    base.update(kw)
    return make_template(shop, **base)


def issue(template, holder="wmAbCdEf123456"):
    with tx() as s:
        return svc.issue_coupon(s, template.id, holder)


def test_create_template_through_form(client, shop):
    login(client, shop.owner)
    resp = post_form(client, "/portal/coupons/new", {**GOOD, "store_ids": [str(shop.store.id)]})
    assert resp.status_code == 302
    t = db.session.scalar(select(CouponTemplate))
    assert (t.value, t.min_spend_fen, t.valid_days, t.weekdays_mask, t.hours_start, t.hours_end) == (
        2000, 10000, 14, 0b0011111, 660, 840)
    assert [s.id for s in t.stores] == [shop.store.id]
    page = client.get(resp.headers["Location"]).get_data(as_text=True)
    assert "满100减20" in page and "周一至周五" in page and "11:00-14:00" in page


def test_edit_and_percent_template(client, shop):
    login(client, shop.owner)
    t = make_template(shop)
    resp = post_form(client, f"/portal/coupons/{t.id}/edit", {
        **GOOD, "name": "八五折", "kind": "percent_off", "percent": "85", "amount": "", "cap": "30",
        "min_spend": "", "validity_mode": "range", "valid_from": "2025-06-01", "valid_until": "2025-06-30",
    })
    assert resp.status_code == 302, resp.get_data(as_text=True)
    db.session.expire_all()
    t = db.session.get(CouponTemplate, t.id)
    assert (t.kind.value, t.value, t.cap_fen, t.valid_days) == ("percent_off", 85, 3000, None)
    assert "8.5折 最高减30元" in client.get(f"/portal/coupons/{t.id}/preview").get_data(as_text=True)


@pytest.mark.parametrize(
    "changes, message",
    [
        (dict(amount="abc"), "请输入金额"),
        (dict(amount="20.123"), "最多两位小数"),
        (dict(min_spend="10"), "使用门槛不能低于减免金额"),
        (dict(kind="percent_off", percent="150"), "折扣须在 1 到 99 之间"),
        (dict(kind="percent_off", percent="85"), "折扣券须设置最高优惠金额"),
        (dict(validity_mode="range", valid_from="2025-07-01", valid_until="2025-06-01"), "结束日期不能早于开始日期"),
        (dict(validity_mode="range", valid_from="not-a-date"), "valid_from"),
        (dict(hours_start="25:99"), "11:00 的格式"),
        (dict(hours_start="15:00"), "开始须早于结束"),
        (dict(weekdays=[]), "至少选择一个可用日"),
        (dict(total_stock="-3"), "库存须大于 0"),
        (dict(per_diner_limit="x"), "per_diner_limit"),
        (dict(name=""), "name"),
        (dict(kind="bogus"), "kind"),
    ],
)
def test_bad_template_values_are_form_errors(client, shop, changes, message):
    login(client, shop.owner)
    resp = post_form(client, "/portal/coupons/new", {**GOOD, **changes})
    assert resp.status_code == 400
    body = resp.get_data(as_text=True)
    assert 'class="error"' in body or 'class="errors"' in body
    if not message.isascii():
        assert message in body
    assert db.session.scalar(select(CouponTemplate)) is None


def test_foreign_store_in_form_is_rejected(client, shop, rival):
    login(client, shop.owner)
    resp = post_form(client, "/portal/coupons/new", {**GOOD, "store_ids": [str(rival.store.id)]})
    assert resp.status_code == 400


def test_csrf_required(client, shop):
    login(client, shop.owner)
    assert client.post("/portal/coupons/new", data=GOOD).status_code == 400
    c = issue(live_template(shop))
    resp = client.post(f"/desk/c/{c.short_code}", data={"bill": "120", "idempotency_key": "k"})
    assert resp.status_code == 400
    db.session.expire_all()
    assert db.session.get(Coupon, c.id).status == CouponStatus.issued


def test_tenant_isolation(client, shop, rival):
    t = live_template(shop)
    c = issue(t)
    with tx() as s:
        res = svc.redeem(s, c.short_code, shop.store.id, shop.cashier.id, 12000, "k")
    login(client, rival.owner)
    for url in (f"/portal/coupons/{t.id}/edit", f"/portal/coupons/{t.id}/preview",
                f"/portal/dashboard?store={shop.store.id}", f"/desk/c/{c.short_code}",
                f"/desk/r/{res.redemption_id}"):
        assert client.get(url).status_code == 404, url
    for url, data in ((f"/portal/coupons/{t.id}/status", {"status": "ended"}),
                      (f"/portal/coupons/{t.id}/edit", GOOD),
                      (f"/desk/r/{res.redemption_id}/reverse", {})):
        assert post_form(client, url, data, token_url="/desk").status_code == 404, url
    page = client.get("/portal/coupons/").get_data(as_text=True)
    assert t.name not in page
    db.session.expire_all()
    assert db.session.get(CouponTemplate, t.id).status.value == "active"


def test_a_cashier_sees_only_their_tills_redemptions(client, shop):
    """A cashier of another store, or one without a store, gets 404 — never "no filter"."""
    c = issue(live_template(shop))
    with tx() as s:
        res = svc.redeem(s, c.short_code, shop.store.id, shop.cashier.id, 12000, "k")
    login(client, shop.cashier)
    assert client.get(f"/desk/r/{res.redemption_id}").status_code == 200
    for store_id in (shop.other_store.id, None):
        with tx() as s:
            s.execute(update(User).where(User.id == shop.cashier.id).values(store_id=store_id))
        assert client.get(f"/desk/r/{res.redemption_id}").status_code == 404, store_id


def test_an_owner_who_has_not_enrolled_has_no_coupon_form(client):
    with tx() as s:
        user = User(username="not-enrolled", password_hash=_password_hash(), role=Role.owner)
        s.add(user)
    login(client, user)
    assert client.get("/portal/coupons/new").status_code == 404


def test_roles(client, shop):
    login(client, shop.cashier)
    assert client.get("/portal/coupons/").status_code == 403
    assert client.get("/desk").status_code == 200
    logout(client)
    assert client.get("/desk").status_code == 302  # to the login page


def test_desk_redeem_flow(client, shop):
    c = issue(live_template(shop))
    login(client, shop.cashier)
    # typing the code (any case, with a dash) lands on the coupon's page
    resp = post_form(client, "/desk", {"code": svc.format_code(c.short_code).lower()})
    assert resp.status_code == 302 and resp.headers["Location"].endswith(f"/desk/c/{c.short_code}")
    page = client.get(f"/desk/c/{c.short_code}").get_data(as_text=True)
    assert "wm***56" in page and "wmAbCdEf123456" not in page  # diner masked
    key = re.search(r'name="idempotency_key"[^>]*value="([^"]+)"', page).group(1)
    token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page).group(1)
    form = {"bill": "128.50", "idempotency_key": key, "csrf_token": token}
    first = client.post(f"/desk/c/{c.short_code}", data=form)
    assert first.status_code == 302
    again = client.post(f"/desk/c/{c.short_code}", data=form)  # a double tap
    assert again.headers["Location"] == first.headers["Location"]
    result = client.get(first.headers["Location"]).get_data(as_text=True)
    assert "核销成功" in result and "108.50" in result
    assert len(db.session.scalars(select(Redemption)).all()) == 1
    # a new attempt (new key) is told when and where it was used
    other = client.post(f"/desk/c/{c.short_code}", data={**form, "idempotency_key": "fresh"})
    assert other.status_code == 409 and "已于" in other.get_data(as_text=True)
    assert shop.store.name in other.get_data(as_text=True)


def test_desk_shows_errors(client, shop):
    c = issue(live_template(shop, store_ids=[shop.other_store.id]))
    login(client, shop.cashier)
    page = client.get(f"/desk/c/{c.short_code}").get_data(as_text=True)
    assert "不能在本店使用" in page
    c2 = issue(live_template(shop))
    page = client.get(f"/desk/c/{c2.short_code}").get_data(as_text=True)
    token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page).group(1)
    resp = client.post(f"/desk/c/{c2.short_code}", data={"bill": "50", "idempotency_key": "k", "csrf_token": token})
    assert resp.status_code == 409 and "消费满 100 元才能使用" in resp.get_data(as_text=True)
    resp = client.post(f"/desk/c/{c2.short_code}", data={"bill": "abc", "idempotency_key": "k", "csrf_token": token})
    assert resp.status_code == 400 and "请输入金额" in resp.get_data(as_text=True)


def test_desk_throttles_wrong_codes(client, shop):
    login(client, shop.cashier)
    for _ in range(svc.WRONG_CODE_LIMIT):
        assert client.get("/desk/c/ABCDEFGHJK").status_code == 404
    assert client.get("/desk/c/ABCDEFGHJK").status_code == 429
    assert post_form(client, "/desk", {"code": "ABCDEFGHJK"}).status_code == 429


def test_owner_reverses_from_result_page(client, shop):
    c = issue(live_template(shop))
    with tx() as s:
        res = svc.redeem(s, c.short_code, shop.store.id, shop.cashier.id, 12000, "k")
    login(client, shop.cashier)
    assert "撤销核销" not in client.get(f"/desk/r/{res.redemption_id}").get_data(as_text=True)
    logout(client)
    owner = client
    login(owner, shop.owner)
    url = f"/desk/r/{res.redemption_id}"
    assert "撤销核销" in owner.get(url).get_data(as_text=True)
    resp = post_form(owner, f"{url}/reverse", {"reason": "金额输错"}, token_url=url)
    assert resp.status_code == 302
    assert "核销已撤销" in owner.get(url).get_data(as_text=True)
    db.session.expire_all()
    assert db.session.get(Coupon, c.id).status == CouponStatus.issued
