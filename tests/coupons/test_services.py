"""Templates, discount math, issuing limits, every redemption error, idempotency, reversal."""
from __future__ import annotations

from dataclasses import replace
from datetime import date, datetime, timedelta, timezone

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from core.db import db
from core.errors import NotFound
from coupons import services as svc
from coupons.models import (
    Coupon,
    CouponKind,
    CouponStatus,
    CouponTemplate,
    Redemption,
    RedemptionReversal,
    TemplateStatus,
)
from tests.support.coupons import NOW, make_template, spec, tx


def issue(template, holder="wm_diner_001", now=NOW):
    with tx():
        return svc.issue_coupon(db.session, template.id, holder, now=now)


def redeem(shop, coupon, bill=12000, key="k1", now=NOW, store=None, code=None):
    with tx():
        return svc.redeem(db.session, code or coupon.short_code, (store or shop.store).id,
                          shop.cashier.id, bill, key, now)


# ---------------------------------------------------------------- templates


@pytest.mark.parametrize(
    "changes, field",
    [
        (dict(name=" "), "name"),
        (dict(value=0), "value"),
        (dict(min_spend_fen=0), "min_spend_fen"),  # 满减 needs a threshold
        (dict(min_spend_fen=1000), "min_spend_fen"),  # threshold below the amount off
        (dict(kind=CouponKind.percent_off, value=100, cap_fen=3000), "value"),
        (dict(kind=CouponKind.percent_off, value=85, cap_fen=None), "cap_fen"),
        (dict(valid_until=date(2025, 5, 1)), "valid_until"),
        (dict(valid_from=None, valid_until=None), "valid_from"),
        (dict(valid_days=7), "valid_days"),  # both validity modes at once
        (dict(valid_from=None, valid_until=None, valid_days=0), "valid_days"),
        (dict(weekdays_mask=0), "weekdays_mask"),
        (dict(hours_start=14 * 60, hours_end=11 * 60), "hours_start"),
        (dict(hours_start=660, hours_end=None), "hours_start"),
        (dict(total_stock=0), "total_stock"),
        (dict(per_diner_limit=0), "per_diner_limit"),
    ],
)
def test_template_validation(shop, changes, field):
    with pytest.raises(svc.TemplateError) as err, tx():
        svc.create_template(db.session, shop.merchant.id, spec(**changes))
    assert field in err.value.errors
    assert str(err.value.errors[field])  # a readable message


def test_template_schema_checks_hold_without_the_service(shop):
    """The rules live in the schema too: a bypassing write fails."""
    with pytest.raises(IntegrityError), tx():
        db.session.add(CouponTemplate(merchant_id=shop.merchant.id, name="bad", kind=CouponKind.percent_off,
                                      value=150, cap_fen=100, valid_days=3))
        db.session.flush()


def test_template_stores_must_belong_to_merchant(shop, rival):
    with pytest.raises(svc.TemplateError) as err, tx():
        svc.create_template(db.session, shop.merchant.id, spec(store_ids=[rival.store.id]))
    assert "store_ids" in err.value.errors


def test_terms_frozen_once_issued(shop):
    t = make_template(shop)
    issue(t)
    with tx():
        t = svc.get_template(db.session, t.id, shop.merchant.id)
        base = svc.TemplateSpec.from_template(t)
        with pytest.raises(svc.TemplateError) as err:
            svc.update_template(db.session, t, replace(base, value=3000))
        assert "value" in err.value.errors
        svc.update_template(db.session, t, replace(base, name="午市满减", status=TemplateStatus.paused))
    assert t.name == "午市满减" and t.status == TemplateStatus.paused
    with pytest.raises(svc.TemplateError), tx():
        svc.update_template(db.session, t, replace(base, status=TemplateStatus.draft))


def test_tenant_lookup(shop, rival):
    t = make_template(shop)
    with pytest.raises(NotFound):  # another merchant's template is not found, like a missing one
        svc.get_template(db.session, t.id, rival.merchant.id)
    with pytest.raises(NotFound):
        svc.get_template(db.session, t.id + 1000, shop.merchant.id)
    assert svc.get_template(db.session, t.id, shop.merchant.id).id == t.id


def test_where_a_template_applies(shop, rival):
    open_ended = dict(valid_from=None, valid_until=None, valid_days=7)
    everywhere = make_template(shop, name="全店通用", **open_ended)
    one_store = make_template(shop, name="本店专享", store_ids=[shop.store.id], **open_ended)
    ended = make_template(shop, name="六月券", valid_until=date(2025, 6, 30))
    paused = make_template(shop, name="暂停的券", status=TemplateStatus.paused)
    assert svc.applies_at(everywhere, shop.store) and svc.applies_at(everywhere, shop.other_store)
    assert svc.applies_at(one_store, shop.store) and not svc.applies_at(one_store, shop.other_store)
    assert not svc.applies_at(everywhere, rival.store)  # another merchant's store

    ids = lambda ts: [t.id for t in ts]  # noqa: E731
    assert ids(svc.templates_for_store(db.session, shop.other_store)) == [everywhere.id, ended.id]
    assert ids(svc.templates_for_store(db.session, shop.store, active_on=date(2025, 7, 1))) == [
        everywhere.id, one_store.id]
    assert paused.id not in ids(svc.templates_for_store(db.session, shop.store))

    where = svc.stores_for_templates(db.session, [everywhere, one_store])
    assert [s.id for s in where[everywhere.id]] == sorted([shop.store.id, shop.other_store.id])
    assert [s.id for s in where[one_store.id]] == [shop.store.id]


# ---------------------------------------------------------------- math and labels


@pytest.mark.parametrize(
    "kind, value, cap, min_spend, bill, expected",
    [
        (CouponKind.amount_off, 2000, None, 10000, 12000, 2000),
        (CouponKind.percent_off, 85, 3000, 0, 10000, 1500),  # 八五折
        (CouponKind.percent_off, 85, 3000, 0, 50000, 3000),  # capped
        (CouponKind.percent_off, 88, 3000, 0, 999, 119),  # 119.88 fen -> 119 (floor)
        (CouponKind.voucher, 5000, None, 0, 3000, 3000),  # never more than the bill
        (CouponKind.voucher, 5000, None, 0, 8000, 5000),
    ],
)
def test_discount_math(kind, value, cap, min_spend, bill, expected):
    t = spec(kind=kind, value=value, cap_fen=cap, min_spend_fen=min_spend)
    assert svc.compute_discount(t, bill) == expected
    assert isinstance(svc.compute_discount(t, bill), int)


def test_headlines(app):
    assert svc.headline(spec()) == "满100减20"
    assert svc.headline(spec(kind=CouponKind.percent_off, value=85, cap_fen=3000)) == "8.5折 最高减30元"
    assert svc.headline(spec(kind=CouponKind.percent_off, value=80, cap_fen=2550)) == "8折 最高减25.50元"
    assert svc.headline(spec(kind=CouponKind.voucher, value=2000, min_spend_fen=0)) == "20元代金券"
    assert svc.weekdays_text(0b0011111) == "周一至周五"


def test_percent_off_headline_in_english(app):
    """折 counts what you pay (8.5折 = 85%); English says what comes off."""
    with app.test_request_context("/?lang=en"):
        assert svc.headline(spec(kind=CouponKind.percent_off, value=85, cap_fen=3000)) == "15% off (max ¥30 off)"


# ---------------------------------------------------------------- issuing


def test_short_code_format_and_entropy(shop):
    import math

    assert len(svc.CODE_ALPHABET) ** svc.CODE_LENGTH >= 2**40
    assert math.log2(len(svc.CODE_ALPHABET)) * svc.CODE_LENGTH >= 50
    t = make_template(shop, total_stock=None, per_diner_limit=50)
    codes = {issue(t).short_code for _ in range(50)}
    assert len(codes) == 50
    for code in codes:
        assert len(code) == 10 and set(code) <= set(svc.CODE_ALPHABET)
    code = next(iter(codes))
    messy = svc.format_code(code).lower().replace("0", "o").replace("1", "l")
    assert svc.normalize_code(messy) == code
    assert svc.find_coupon(db.session, messy).short_code == code


def test_validity_range_and_days(shop):
    t = make_template(shop)
    c = issue(t)
    assert c.valid_from == datetime(2025, 5, 31, 16, 0, tzinfo=timezone.utc)  # 6-01 00:00 Shanghai
    assert c.valid_until == datetime(2025, 6, 30, 16, 0, tzinfo=timezone.utc)  # end of 6-30
    t2 = make_template(shop, valid_from=None, valid_until=None, valid_days=7)
    c2 = issue(t2)
    assert c2.valid_until - c2.valid_from == timedelta(days=7) and c2.valid_from == NOW


def test_stock_and_per_diner_limit(shop):
    t = make_template(shop, total_stock=2, per_diner_limit=2)
    issue(t, "a")
    issue(t, "a")
    with pytest.raises(svc.IssueError) as err:
        issue(t, "a")
    assert err.value.code == "limit"
    with pytest.raises(svc.IssueError) as err:
        issue(t, "b")
    assert err.value.code == "sold_out"
    db.session.expire_all()
    assert db.session.get(CouponTemplate, t.id).issued_count == 2


def test_inactive_template_not_issued(shop):
    t = make_template(shop, status=TemplateStatus.draft)
    with pytest.raises(svc.IssueError) as err:
        issue(t)
    assert err.value.code == "inactive"


# ---------------------------------------------------------------- redemption


def test_redeem_happy_path(shop):
    t = make_template(shop)
    c = issue(t)
    res = redeem(shop, c, bill=12345)
    assert (res.bill_fen, res.discount_fen, res.payable_fen, res.replayed) == (12345, 2000, 10345, False)
    db.session.expire_all()
    coupon = db.session.get(Coupon, c.id)
    assert coupon.status == CouponStatus.redeemed and coupon.redeemed_store_id == shop.store.id


def test_retried_confirm_returns_same_result(shop):
    c = issue(make_template(shop))
    first = redeem(shop, c, key="tap-1")
    again = redeem(shop, c, key="tap-1", bill=99999)
    assert again.replayed and again.redemption_id == first.redemption_id
    assert again.discount_fen == first.discount_fen and again.bill_fen == 12000
    assert db.session.scalar(select(func.count(Redemption.id))) == 1


def test_already_redeemed_says_when_and_where(shop):
    c = issue(make_template(shop))
    redeem(shop, c, key="a")
    with pytest.raises(svc.RedemptionError) as err:
        redeem(shop, c, key="b")
    assert err.value.code == "already_redeemed"
    assert shop.store.name in err.value.message and "2025-06-11 12:30" in err.value.message


@pytest.mark.parametrize(
    "template_kw, now, bill, code",
    [
        ({}, datetime(2025, 6, 30, 16, 0, tzinfo=timezone.utc), 12000, "expired"),
        ({}, datetime(2025, 5, 31, 15, 59, tzinfo=timezone.utc), 12000, "not_yet_valid"),
        (dict(weekdays_mask=0b1100000), NOW, 12000, "outside_hours"),  # weekends only
        (dict(hours_start=17 * 60, hours_end=21 * 60), NOW, 12000, "outside_hours"),
        ({}, NOW, 9999, "below_min_spend"),
        ({}, NOW, 0, "bad_bill"),
    ],
)
def test_redemption_errors(shop, template_kw, now, bill, code):
    c = issue(make_template(shop, **template_kw))
    with pytest.raises(svc.RedemptionError) as err:
        redeem(shop, c, bill=bill, now=now)
    assert err.value.code == code
    assert err.value.message
    db.session.expire_all()
    assert db.session.get(Coupon, c.id).status == CouponStatus.issued


def test_weekday_lunch_ok(shop):
    c = issue(make_template(shop, weekdays_mask=0b0011111, hours_start=11 * 60, hours_end=14 * 60))
    assert redeem(shop, c).discount_fen == 2000


def test_wrong_store_and_not_found(shop, rival):
    c = issue(make_template(shop, store_ids=[shop.other_store.id]))
    with pytest.raises(svc.RedemptionError) as err:
        redeem(shop, c)
    assert err.value.code == "wrong_store" and shop.other_store.name in err.value.message
    with pytest.raises(svc.RedemptionError) as err:
        redeem(shop, c, store=rival.store)
    assert err.value.code == "wrong_store"
    with pytest.raises(svc.RedemptionError) as err:
        redeem(shop, c, code="ZZZZZZZZZZ")
    assert err.value.code == "not_found"
    # scoped to the merchant: another merchant's desk doesn't even see it
    with pytest.raises(svc.RedemptionError) as err, tx():
        svc.redeem(db.session, c.short_code, rival.store.id, rival.cashier.id, 12000, "x", NOW,
                   merchant_id=rival.merchant.id)
    assert err.value.code == "not_found"


# ---------------------------------------------------------------- reversal


def test_reversal_within_ten_minutes(shop):
    c = issue(make_template(shop))
    res = redeem(shop, c, key="a")
    with tx():
        svc.reverse(db.session, res.redemption_id, shop.owner, NOW + timedelta(minutes=9), "输错金额")
    db.session.expire_all()
    assert db.session.get(Coupon, c.id).status == CouponStatus.issued
    assert db.session.get(Redemption, res.redemption_id).reversed
    assert db.session.scalar(select(func.count(RedemptionReversal.id))) == 1
    with pytest.raises(svc.ReversalError) as err, tx():
        svc.reverse(db.session, res.redemption_id, shop.owner, NOW + timedelta(minutes=9))
    assert err.value.code == "already_reversed"
    # the coupon can be used again; the history stays
    again = redeem(shop, c, key="b", bill=20000)
    assert again.redemption_id != res.redemption_id
    assert db.session.scalar(select(func.count(Redemption.id))) == 2


def test_reversal_after_ten_minutes_or_by_others(shop, rival):
    c = issue(make_template(shop))
    res = redeem(shop, c)
    for user, code in ((shop.cashier, "forbidden"), (rival.owner, "not_found")):
        with pytest.raises(svc.ReversalError) as err, tx():
            svc.reverse(db.session, res.redemption_id, user, NOW + timedelta(minutes=1))
        assert err.value.code == code
    with pytest.raises(svc.ReversalError) as err, tx():
        svc.reverse(db.session, res.redemption_id, shop.owner, NOW + timedelta(minutes=10, seconds=1))
    assert err.value.code == "too_late"


def test_live_redemption_unique_in_schema(shop):
    """Even a write that skips the conditional update can't record a second live redemption."""
    c = issue(make_template(shop))
    res = redeem(shop, c)
    with pytest.raises(IntegrityError), tx():
        db.session.add(Redemption(coupon_id=c.id, idempotency_key="sneaky", store_id=shop.store.id,
                                  cashier_id=shop.cashier.id, bill_fen=100, discount_fen=0))
        db.session.flush()
    assert res


# ---------------------------------------------------------------- throttling and stats


def test_desk_throttle(shop, redis_conn):
    for _ in range(svc.WRONG_CODE_LIMIT - 1):
        svc.record_wrong_code(redis_conn, shop.cashier.id, shop.store.id)
    assert not svc.desk_throttled(redis_conn, shop.cashier.id, shop.store.id)
    svc.record_wrong_code(redis_conn, shop.cashier.id, shop.store.id)
    assert svc.desk_throttled(redis_conn, shop.cashier.id, shop.store.id)
    assert not svc.desk_throttled(redis_conn, shop.cashier.id, shop.other_store.id)
    assert 0 < redis_conn.ttl(f"linli:desk:wrong:{shop.cashier.id}:{shop.store.id}") <= svc.WRONG_CODE_WINDOW


def test_stats(shop, rival):
    t1 = make_template(shop, total_stock=None, per_diner_limit=10)
    t2 = make_template(shop, name="八五折", kind=CouponKind.percent_off, value=85, cap_fen=3000,
                       min_spend_fen=0)
    make_template(rival)
    coupons = [issue(t1, "d1") for _ in range(3)] + [issue(t2, "d1")]
    redeem(shop, coupons[0], key="a", bill=12000)
    redeem(shop, coupons[1], key="b", bill=15000, store=shop.other_store)
    redeem(shop, coupons[3], key="c", bill=10000)
    late = NOW + timedelta(hours=12)  # 00:30 on 6-12 in Shanghai: the next local day
    r = redeem(shop, coupons[2], key="d", bill=20000, now=late)
    with tx():
        svc.reverse(db.session, r.redemption_id, shop.owner, late)
    stats = {s.name: s for s in svc.template_stats(db.session, shop.merchant.id)}
    assert set(stats) == {"满100减20", "八五折"}
    s1 = stats["满100减20"]
    assert (s1.issued, s1.redeemed, s1.discount_fen, s1.bill_fen) == (3, 2, 4000, 27000)
    assert abs(s1.rate - 2 / 3) < 1e-9
    here = {s.name: s for s in svc.template_stats(db.session, shop.merchant.id, shop.store.id)}
    assert here["满100减20"].redeemed == 1 and here["八五折"].discount_fen == 1500
    rows = svc.recent_redemptions(db.session, shop.merchant.id)
    assert len(rows) == 4 and rows[0][0].reversed
