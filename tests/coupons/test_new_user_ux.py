"""What new users tripped over (issue 10): ending a template asks first; the owner lifts the
desk's wrong-code lock; the welcome page looks like the portal."""
from __future__ import annotations

from core.db import db
from coupons import services as svc
from coupons.models import CouponTemplate
from tests.support.coupons import login, logout, make_template, post_form, tx


def live_template(shop, **kw):
    base = dict(valid_from=None, valid_until=None, valid_days=7)
    base.update(kw)
    return make_template(shop, **base)


def _status(template_id: int) -> str:
    db.session.expire_all()
    return db.session.get(CouponTemplate, template_id).status.value


def test_ending_a_template_asks_for_confirmation_first(client, shop):
    t = live_template(shop)
    with tx() as s:
        svc.issue_coupon(s, t.id, "wmAbCdEf123456")
    login(client, shop.owner)
    page = client.get("/portal/coupons/").get_data(as_text=True)
    assert f'href="/portal/coupons/{t.id}/end"' in page  # 结束 is a link to the question
    # posting "ended" without the confirmation only asks
    resp = post_form(client, f"/portal/coupons/{t.id}/status", {"status": "ended"}, token_url="/portal/coupons/")
    assert resp.status_code == 302 and resp.headers["Location"].endswith(f"/portal/coupons/{t.id}/end")
    assert _status(t.id) == "active"
    confirm = client.get(f"/portal/coupons/{t.id}/end")
    text = confirm.get_data(as_text=True)
    assert confirm.status_code == 200 and "不能恢复" in text and "已领取的 1 张" in text
    assert 'name="confirmed" value="1"' in text
    resp = post_form(client, f"/portal/coupons/{t.id}/status", {"status": "ended", "confirmed": "1"},
                     token_url=f"/portal/coupons/{t.id}/end")
    assert resp.status_code == 302 and _status(t.id) == "ended"
    # pausing needs no question
    t2 = live_template(shop, name="第二张")
    post_form(client, f"/portal/coupons/{t2.id}/status", {"status": "paused"}, token_url="/portal/coupons/")
    assert _status(t2.id) == "paused"


def test_end_confirmation_is_tenant_scoped(client, shop, rival):
    t = live_template(shop)
    login(client, rival.owner)
    assert client.get(f"/portal/coupons/{t.id}/end").status_code == 404


def test_owner_lifts_the_desk_lock_and_valid_codes_work_again(client, shop):
    t = live_template(shop)
    with tx() as s:
        good = svc.issue_coupon(s, t.id, "wmAbCdEf123456")
    login(client, shop.cashier)
    for _ in range(svc.WRONG_CODE_LIMIT):
        assert client.get("/desk/c/ABCDEFGHJK").status_code == 404
    locked = client.get(f"/desk/c/{good.short_code}")
    assert locked.status_code == 429 and "请店主" in locked.get_data(as_text=True)
    logout(client)

    login(client, shop.owner)
    desk = client.get(f"/desk?store_id={shop.store.id}").get_data(as_text=True)
    assert 'data-testid="desk-locked"' in desk and "1 个核销台" in desk
    resp = post_form(client, "/desk/unlock", {"store_id": str(shop.store.id)}, token_url="/desk")
    assert resp.status_code == 302
    assert "已解除 1 个核销台的锁定" in client.get(resp.headers["Location"]).get_data(as_text=True)
    assert 'data-testid="desk-locked"' not in client.get(f"/desk?store_id={shop.store.id}").get_data(as_text=True)
    logout(client)

    login(client, shop.cashier)
    assert client.get(f"/desk/c/{good.short_code}").status_code == 200
    # the count starts again from zero: one more miss does not lock
    assert client.get("/desk/c/ABCDEFGHJK").status_code == 404
    assert client.get(f"/desk/c/{good.short_code}").status_code == 200


def test_only_the_stores_owner_lifts_its_lock(client, shop, rival, redis_conn):
    for _ in range(svc.WRONG_CODE_LIMIT):
        svc.record_wrong_code(redis_conn, shop.cashier.id, shop.store.id)
    login(client, rival.owner)
    resp = post_form(client, "/desk/unlock", {"store_id": str(shop.store.id)}, token_url="/desk")
    assert resp.status_code == 404
    assert svc.desk_throttled(redis_conn, shop.cashier.id, shop.store.id)
    logout(client)
    login(client, shop.cashier)
    resp = post_form(client, "/desk/unlock", {"store_id": str(shop.store.id)}, token_url="/desk")
    assert resp.status_code == 403
    assert svc.desk_throttled(redis_conn, shop.cashier.id, shop.store.id)
